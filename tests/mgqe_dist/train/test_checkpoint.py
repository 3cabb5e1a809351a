"""Checkpoints on a one-process gloo group: round trip, and forged files refused unrun."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist

from mgqe_dist.config import load_job
from mgqe_dist.train.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from mgqe_dist.train.distributed import Progress
from tests.conftest import Payload, write_job

DATA = SimpleNamespace(stats={"checksums": {"train.parquet": "abc"}})


class _Adam(torch.optim.Adam):
    """The CombinedOptimizer surface that checkpoints use, without TorchRec."""

    optimizers: tuple = ()


@pytest.fixture(autouse=True)
def _one_process_group(tmp_path: Path) -> Iterator[None]:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _trained() -> tuple[torch.nn.Linear, _Adam]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = _Adam(model.parameters(), lr=0.1)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    return model, optimizer


def _write(tmp_path: Path, model: torch.nn.Module, optimizer: _Adam) -> Path:
    job = load_job(write_job(tmp_path))
    directory = tmp_path / "checkpoint"
    progress = Progress(epoch=2, step=7)
    write_checkpoint(directory, progress, model.state_dict(), model, optimizer, job, DATA)
    return directory


def _read(tmp_path: Path, directory: Path, model: torch.nn.Module, optimizer: _Adam) -> Progress:
    job = load_job(write_job(tmp_path))
    progress, _ = read_checkpoint(directory, model, optimizer, job, DATA)
    return progress


def test_checkpoint_round_trips(tmp_path: Path) -> None:
    model, optimizer = _trained()
    directory = _write(tmp_path, model, optimizer)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    moments = optimizer.state[model.weight]["exp_avg"].clone()
    with torch.no_grad():
        model.weight.zero_()
    optimizer.state[model.weight]["exp_avg"].zero_()
    progress = _read(tmp_path, directory, model, optimizer)
    assert (progress.epoch, progress.step) == (2, 7)
    torch.testing.assert_close(model.state_dict(), saved)
    torch.testing.assert_close(optimizer.state[model.weight]["exp_avg"], moments)


def test_forged_metadata_is_refused_and_never_run(tmp_path: Path) -> None:
    model, optimizer = _trained()
    directory = _write(tmp_path, model, optimizer)
    marker = tmp_path / "code-ran"
    (directory / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(CheckpointError, match=r"\.metadata: refused to unpickle it: .*open"):
        _read(tmp_path, directory, model, optimizer)
    assert not marker.exists()


def test_forged_entry_in_a_shard_file_is_refused_and_never_run(tmp_path: Path) -> None:
    # Non-tensor entries (here an optimizer setting) are torch.save bytes inside __0_0.distcp.
    model, optimizer = _trained()
    marker = tmp_path / "code-ran"
    optimizer.param_groups[0]["note"] = Payload(marker)
    directory = _write(tmp_path, model, optimizer)
    with pytest.raises(CheckpointError, match=r"entry 'optim.param_groups.0.note' holds more"):
        _read(tmp_path, directory, model, optimizer)
    assert not marker.exists()


def test_metadata_naming_a_file_outside_the_checkpoint_is_refused(tmp_path: Path) -> None:
    model, optimizer = _trained()
    directory = _write(tmp_path, model, optimizer)
    forged = (directory / ".metadata").read_bytes().replace(b"__0_0.distcp", b"../00.distcp")
    (directory / ".metadata").write_bytes(forged)
    with pytest.raises(CheckpointError, match=r"names shard files not in .*\['\.\./00\.distcp'\]"):
        _read(tmp_path, directory, model, optimizer)


def test_tampered_best_model_is_a_checkpoint_error(tmp_path: Path) -> None:
    model, optimizer = _trained()
    directory = _write(tmp_path, model, optimizer)
    marker = tmp_path / "code-ran"
    torch.save({"weight": Payload(marker)}, directory / "best_model.pt")
    with pytest.raises(CheckpointError, match=r"best_model\.pt is not a weights-only model state"):
        _read(tmp_path, directory, model, optimizer)
    assert not marker.exists()
