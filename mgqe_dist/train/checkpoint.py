"""Checkpoints of a sharded run.

torch.distributed.checkpoint writes the sharded model and optimizer state (each rank its own
shards, so a run can resume on a different number of workers); rank 0 adds progress.json (epoch,
step, history, the job config and data checksums) and the best unsharded model so far. Loading
refuses a checkpoint of another job or dataset and names what differs.

Trust model: whoever can write the run directory decides what a resumed run starts from (its
weights, optimizer state and progress), but loading never runs code from it. The checkpoint's
pickled .metadata is read through an allow-list of torch.distributed.checkpoint's metadata
classes, torch dtypes and Size (containers, strings and numbers need none); its non-tensor
entries (optimizer settings, torch.save bytes inside the shard files) and best_model.pt are read
weights-only; shard files must lie in the checkpoint directory; progress.json is JSON. Anything
else is refused with a CheckpointError naming the file. torch.distributed.checkpoint's own
reader and planner would unpickle both .metadata and those entries unrestricted. A checksum
beside the files would not help: whoever can write them can rewrite it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.planner import ReadItem
from torchrec.optim.keyed import CombinedOptimizer

from data_pipeline.files import atomic_path, write_json_atomic
from mgqe_dist.config import JobConfig, to_dict
from mgqe_dist.run_record import versions
from mgqe_dist.train.data import PreparedData
from mgqe_dist.train.distributed import FUSED_OPTIMIZER, Progress, State, progress_from_dict
from mgqe_dist.train.outputs import load_weights

PROGRESS_FILE = "progress.json"
BEST_MODEL_FILE = "best_model.pt"
METADATA_FILE = ".metadata"
# The globals a checkpoint's .metadata may name; torch dtypes are allowed too (_MetadataUnpickler).
METADATA_GLOBALS = frozenset(
    {
        *(("torch.distributed.checkpoint.metadata", name) for name in dcp_metadata.__all__),
        ("torch.distributed.checkpoint.metadata", "_MEM_FORMAT_ENCODING"),
        ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
        ("torch", "Size"),
        ("torch.serialization", "_get_layout"),  # how a torch.layout pickles
        ("pathlib", "PosixPath"),  # StorageMeta.checkpoint_id
    }
)
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
    _load_sharded(state, directory)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optim"])
    best = directory / BEST_MODEL_FILE
    best_state = None
    if dist.get_rank() == 0 and best.exists():
        best_state = load_weights(best, CheckpointError)
    return progress_from_dict(record["progress"]), best_state


def _load_sharded(state: dict[str, Any], directory: Path) -> None:
    """Load the checkpoint's shards into `state` in place, refusing anything but data (see the
    module docstring)."""
    reader = _VerifiedReader(directory)
    reader.read_metadata()  # refused here with its reason; dcp.load would wrap it in its own
    try:
        dcp.load(state, storage_reader=reader, planner=_WeightsOnlyPlanner(directory))
    except dcp.CheckpointException as exc:
        for error, _ in exc.failures.values():
            if isinstance(error, CheckpointError):
                raise error from None
        raise


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles METADATA_GLOBALS and torch dtypes only; any other global is refused unbuilt."""

    def find_class(self, module: str, name: str) -> Any:
        dtype = module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)
        if dtype or (module, name) in METADATA_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not a checkpoint metadata type")


class _VerifiedReader(dcp.FileSystemReader):
    """FileSystemReader whose .metadata goes through _MetadataUnpickler and may only name shard
    files inside the checkpoint directory."""

    # No **kwargs: dcp.load would then retry a refused read as a per-rank file (dcp.save writes
    # one global .metadata) and replace the reason by its own.
    def read_metadata(self) -> dcp.Metadata:
        """The checkpoint's metadata, or CheckpointError naming what is refused."""
        path = Path(self.path) / METADATA_FILE
        with open(path, "rb") as handle:
            try:
                metadata = _MetadataUnpickler(handle).load()
            except Exception as exc:  # untrusted bytes: any failure to parse is a refusal
                raise CheckpointError(f"{path}: refused to unpickle it: {exc}") from None
        if not isinstance(metadata, dcp.Metadata):
            raise CheckpointError(
                f"{path} holds a {type(metadata).__name__}, not checkpoint metadata"
            )
        outside = {i.relative_path for i in metadata.storage_data.values()} - {
            p.name for p in Path(self.path).iterdir()
        }
        if outside:
            raise CheckpointError(f"{path} names shard files not in {self.path}: {sorted(outside)}")
        metadata.storage_meta = metadata.storage_meta or dcp_metadata.StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class _WeightsOnlyPlanner(dcp.DefaultLoadPlanner):
    """DefaultLoadPlanner that reads non-tensor entries weights-only (its own unpickles them
    unrestricted)."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        """Put one non-tensor entry into the state being loaded."""
        fqn = read_item.dest_index.fqn
        try:
            entry = torch.load(value, weights_only=True)
        except Exception:  # damaged or hostile: any failure to parse it is a refusal
            raise CheckpointError(
                f"{self.directory}: entry {fqn!r} holds more than plain data; refused to load it"
            ) from None
        set_element(self.original_state_dict, self.mappings[fqn], entry)


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
    if missing or not (directory / METADATA_FILE).is_file():
        absent = missing or [METADATA_FILE]
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
