"""Checkpoints of a sharded run.

torch.distributed.checkpoint writes the sharded model and optimizer state (each rank its own
shards, so a run can resume on a different number of workers); rank 0 adds progress.json (epoch,
step, history, the job config and data checksums) and the best unsharded model so far. Loading
refuses a checkpoint of another job or dataset and names what differs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torchrec.optim.keyed import CombinedOptimizer

from data_pipeline.files import atomic_path, write_json_atomic
from mgqe_dist.config import JobConfig, to_dict
from mgqe_dist.run_record import versions
from mgqe_dist.train.data import PreparedData
from mgqe_dist.train.distributed import FUSED_OPTIMIZER, Progress, State, progress_from_dict

PROGRESS_FILE = "progress.json"
BEST_MODEL_FILE = "best_model.pt"
# Settings that may change between a run and its resumption: where it runs, not what it learns.
RESUMABLE_CHANGES = ("trainer", "output_dir")


class CheckpointError(ValueError):
    """A checkpoint is incomplete or belongs to another job or dataset."""


def write_checkpoint(
    directory: Path,
    progress: Progress,
    best_state: State | None,
    model: nn.Module,
    optimizer: CombinedOptimizer,
    job: JobConfig,
    data: PreparedData,
) -> None:
    """Every rank writes its shards to `directory`; rank 0 also writes progress and best model."""
    dcp.save(_state(model, optimizer), checkpoint_id=directory)
    if dist.get_rank() != 0:
        return
    if best_state is not None:
        with atomic_path(directory / BEST_MODEL_FILE) as tmp:
            torch.save(best_state, tmp)
    record = {
        "progress": dataclasses.asdict(progress),
        "world_size": dist.get_world_size(),
        "config": to_dict(job),
        "data_checksums": data.stats["checksums"],
        "versions": versions(),
    }
    write_json_atomic(record, directory / PROGRESS_FILE)


def read_checkpoint(
    directory: Path,
    model: nn.Module,
    optimizer: CombinedOptimizer,
    job: JobConfig,
    data: PreparedData,
) -> tuple[Progress, State | None]:
    """Load a checkpoint into the (sharded) model and optimizer; returns progress and, on rank
    0, the best model so far."""
    record = _read_record(directory)
    _check_same_run(record, job, data, directory)
    # Lazily created optimizer state (Adam's moments) must exist to be loaded in place.
    for name, part in optimizer.optimizers:
        if name != FUSED_OPTIMIZER:
            part.init_state()
    state = _state(model, optimizer)
    dcp.load(state, checkpoint_id=directory)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optim"])
    best = directory / BEST_MODEL_FILE
    best_state = None
    if dist.get_rank() == 0 and best.exists():
        best_state = torch.load(best, weights_only=True)
    return progress_from_dict(record["progress"]), best_state


def _state(model: nn.Module, optimizer: CombinedOptimizer) -> dict[str, Any]:
    return {"model": model.state_dict(), "optim": optimizer.state_dict()}


def _read_record(directory: Path) -> dict[str, Any]:
    path = directory / PROGRESS_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: no {PROGRESS_FILE}; not a complete checkpoint")
    record: dict[str, Any] = json.loads(path.read_text())
    missing = [
        f"__{rank}_0.distcp"
        for rank in range(record["world_size"])
        if not (directory / f"__{rank}_0.distcp").is_file()
    ]
    if missing or not (directory / ".metadata").is_file():
        absent = missing or [".metadata"]
        raise CheckpointError(f"{directory}: incomplete checkpoint, missing {absent}")
    return record


def _check_same_run(
    record: dict[str, Any], job: JobConfig, data: PreparedData, directory: Path
) -> None:
    saved, current = record["config"], json.loads(json.dumps(to_dict(job)))
    differs = sorted(
        key
        for key in set(saved) | set(current)
        if key not in RESUMABLE_CHANGES and saved.get(key) != current.get(key)
    )
    if differs:
        raise CheckpointError(
            f"{directory} was written by a different job: {differs} differ; resume with the "
            f"job spec of that run, or start a new run in another output_dir"
        )
    if record["data_checksums"] != data.stats["checksums"]:
        raise CheckpointError(
            f"{directory} was trained on different prepared data (checksums differ from "
            f"{job.data.prepared_dir}/stats.json)"
        )
