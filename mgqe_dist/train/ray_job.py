"""`train` with trainer.num_workers >= 1: a Ray Train TorchTrainer whose workers run ShardedRun.

Checkpoints live in <output_dir>/ray/train (Ray Train's storage): every worker writes its shards
to a local directory and reports it, and Ray merges them into one checkpoint directory. After a
worker or node dies Ray restarts the worker group from the latest checkpoint (FailureConfig);
a stopped run continues with `--resume`, which Ray Train restores from the same storage.
Paths are made absolute so workers on any node find the data (use shared storage on clusters).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import ray.train
import torch
import torch.distributed as dist
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from mgqe_dist.config import JobConfig, from_dict, to_dict
from mgqe_dist.models import model_tables
from mgqe_dist.submit import RAY_ENV_VARS
from mgqe_dist.train.data import load_prepared
from mgqe_dist.train.factory import PAIRWISE_TABLES
from mgqe_dist.train.outputs import read_run_metrics
from mgqe_dist.train.record import load_job_data

RUN_NAME = "train"
SNAPSHOT = "checkpoint_manager_snapshot.json"


def storage_dir(job: JobConfig) -> Path:
    """Where Ray Train keeps this job's checkpoints."""
    return Path(job.output_dir).resolve() / "ray"


def train_distributed(job: JobConfig, resume: bool = False) -> dict[str, Any]:
    """Train with job.trainer.num_workers Ray Train workers; returns the run's metrics."""
    started = time.time()
    if model_tables(job.model.name) != PAIRWISE_TABLES or job.train.loss != "log":
        raise ValueError(
            f"trainer.num_workers >= 1 trains (user, item) models with log loss; "
            f"{job.model.name!r} with {job.train.loss} loss trains locally (num_workers = 0)"
        )
    job = _absolute_paths(job)
    storage = storage_dir(job)
    has_checkpoints = (storage / RUN_NAME / SNAPSHOT).exists()
    if has_checkpoints and not resume:
        raise ValueError(
            f"{job.output_dir} holds checkpoints of an earlier run ({storage}); pass --resume "
            f"to continue it, or delete {storage} to start over"
        )
    if resume and not has_checkpoints:
        raise ValueError(f"--resume: no checkpoints of this job in {storage}")
    load_job_data(job)  # verify the data here, before any worker starts
    _init_ray()
    cfg = job.trainer
    use_gpu = _use_gpu(job.train.device)
    print(
        f"training {job.model.name} with {job.embedding.kind} embeddings on {cfg.num_workers} "
        f"Ray Train workers ({'nccl' if use_gpu else 'gloo'}); checkpoints in {storage}",
        flush=True,
    )
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"job": to_dict(job), "started": started},
        scaling_config=ScalingConfig(
            num_workers=cfg.num_workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": cfg.cpus_per_worker},
        ),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(
            name=RUN_NAME,
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    trainer.fit()
    return read_run_metrics(Path(job.output_dir))


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: build, shard, restore the latest checkpoint if any, train."""
    from mgqe_dist.train.checkpoint import read_checkpoint, write_checkpoint
    from mgqe_dist.train.distributed import Progress, ShardedRun, State

    for noisy in ("torchrec", "fbgemm_gpu"):  # per-table kernel arguments at INFO level
        logging.getLogger(noisy).setLevel(logging.WARNING)
    job = from_dict(config["job"])
    context = ray.train.get_context()
    use_gpu = _use_gpu(job.train.device)
    device = torch.device(f"cuda:{context.get_local_rank()}" if use_gpu else "cpu")
    data = load_prepared(job.data.prepared_dir, verify=context.get_world_rank() == 0)
    run = ShardedRun(job, data, device)
    resumed = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            run.progress, run.best_state = read_checkpoint(
                Path(directory), run.model, run.optimizer, job, data
            )
        resumed = {"epoch": run.progress.epoch, "step": run.progress.step}
        if context.get_world_rank() == 0:
            print(
                f"resumed from {checkpoint.path}: epoch {resumed['epoch']} step {resumed['step']}",
                flush=True,
            )

    def save(progress: Progress, best: State | None, model: Any, optimizer: Any) -> None:
        with tempfile.TemporaryDirectory() as directory:
            write_checkpoint(Path(directory), progress, best, model, optimizer, job, data)
            metrics = {"epoch": progress.epoch, "step": progress.step}
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(directory))

    run.train(save)
    run.finish(
        config["started"],
        {
            "device": str(device),
            "trainer": {
                "num_workers": context.get_world_size(),
                "backend": "nccl" if use_gpu else "gloo",
                "sharding_plan": run.plan(),
                "embedding_optimizer": job.trainer.embedding_optimizer,
                "resumed_from": resumed,
                "node_ids": _node_ids(),
            },
        },
    )


def _node_ids() -> list[str]:
    """Ray node of every rank (collective: all ranks call it)."""
    mine = ray.get_runtime_context().get_node_id()
    every: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(every, mine)
    return [str(node) for node in every]


def _init_ray() -> None:
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):  # inside `mgqe-dist submit`: join that cluster
        ray.init()
    else:
        # The dashboard serves the state API, which Ray Train's placement-group cleaner polls
        # (without it, it warns every second).
        ray.init(include_dashboard=True, runtime_env={"env_vars": RAY_ENV_VARS})


def _use_gpu(device: str) -> bool:
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def _absolute_paths(job: JobConfig) -> JobConfig:
    data = dataclasses.replace(job.data, prepared_dir=str(Path(job.data.prepared_dir).resolve()))
    return dataclasses.replace(job, output_dir=str(Path(job.output_dir).resolve()), data=data)
