"""`train`: one local training run from a job spec to metrics.json and a saved model.

The entry is thin: it wires data, model factory, training loop and evaluation, each of which
receives only its own config section, then records config, seed, versions and data checksums
next to the metrics. Tracking (train/tracking.py) opens before training and logs each epoch and
the finished run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mgqe_dist.config import JobConfig
from mgqe_dist.train.factory import build_from_spec, model_spec
from mgqe_dist.train.loop import train_epochs
from mgqe_dist.train.record import finish_run, load_job_data
from mgqe_dist.train.tasks import build_task
from mgqe_dist.train.tracking import track_run


def train_job(job: JobConfig, resume: bool = False) -> dict[str, Any]:
    """Train and evaluate the job's model; writes metrics.json, model.pt and model.json (the
    spec that rebuilds the model, for export) to job.output_dir, and logs the run to the job's
    tracking backends.

    trainer.num_workers = 0 trains here; N >= 1 runs N sharded Ray Train workers, which
    checkpoint, so only they can `resume` a stopped run.
    """
    with track_run(job) as tracking:
        record = _train(job, resume, tracking.log_epoch)
        tracking.log_run(record, Path(job.output_dir))
    return record


def _train(
    job: JobConfig, resume: bool, on_epoch: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """The run's metrics.json record; `on_epoch` gets each local epoch's record as it ends."""
    if job.trainer.num_workers > 0:
        from mgqe_dist.train.ray_job import train_distributed

        return train_distributed(job, resume)
    if resume:
        raise ValueError(
            "--resume needs trainer.num_workers >= 1: the local trainer does not checkpoint"
        )
    started = time.time()
    data = load_job_data(job)
    torch.manual_seed(job.seed)
    device = resolve_device(job.train.device)
    spec = model_spec(job.model, job.embedding, data)
    model = build_from_spec(spec).to(device)
    print(
        f"training {job.model.name} with {job.embedding.kind} embeddings on "
        f"{len(data.train)} interactions ({data.num_users} users, {data.num_items} items) "
        f"on {device}",
        flush=True,
    )

    task = build_task(job, data)

    def validate() -> dict[str, float]:
        if task.select_by is None:
            return {}
        return {f"valid_{k}": v for k, v in task.evaluate(model, "valid").items()}

    result = train_epochs(
        model,
        task.objective,
        job.train,
        job.seed,
        validate,
        task.select_by,
        task.maximize,
        on_epoch=on_epoch,
    )
    extra = {"device": str(device)}
    return finish_run(job, data, spec, model, task.evaluate, result, started, extra)


def resolve_device(name: str) -> torch.device:
    """Resolve train.device; asking for CUDA without a GPU is an error, not a silent fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError('train.device = "cuda" but no CUDA device is available')
    return torch.device(name)
