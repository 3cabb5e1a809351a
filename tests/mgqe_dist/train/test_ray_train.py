"""Ray Train: 2 sharded workers on a local Ray cluster; a killed worker and a stopped run both
resume from the last checkpoint and end where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import TINY_JOB
from tests.mgqe_dist.train.test_tracking import tracked_runs

# Epochs long enough to kill a worker mid-run; a checkpoint every 10 steps (about 3 per epoch).
SETTINGS = [
    "trainer.num_workers=2",
    "trainer.checkpoint_every_steps=10",
    "train.epochs=2",
    "train.early_stopping_patience=0",
]


def _job(tmp_path: Path, tiny_job: Path, name: str) -> Path:
    """The tiny job on the shared prepared data, writing to its own output directory."""
    prepared = tiny_job.parent / "prepared"
    text = TINY_JOB.format(root=tiny_job.parent).replace(
        f'output_dir = "{tiny_job.parent}/run"', f'output_dir = "{tmp_path / name}"'
    )
    assert str(prepared) in text
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def _args(job: Path, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "mgqe_dist.cli", "train", str(job), *extra]
    for item in SETTINGS:
        args += ["--set", item]
    return args


def _train(job: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        _args(job, *extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _finish(process: subprocess.Popen, timeout: float = 400) -> int:
    _, err = process.communicate(timeout=timeout)
    if process.returncode:
        sys.stderr.write(err[-4000:])
    return process.returncode


def _kill_a_worker_after_first_checkpoint(storage: Path, process: subprocess.Popen) -> None:
    """SIGKILL one Ray Train worker process once a checkpoint has been registered."""
    deadline = time.time() + 300
    while not (storage / "train" / "checkpoint_manager_snapshot.json").exists():
        assert process.poll() is None and time.time() < deadline, "no checkpoint was written"
        time.sleep(0.2)
    workers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "RayTrainWorker" in " ".join(p.info["cmdline"] or [])
    ]
    assert workers, "no Ray Train worker process found"
    os.kill(workers[-1].pid, signal.SIGKILL)


def _metrics(job: Path, name: str) -> dict:
    return json.loads((job.parent / name / "metrics.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, tiny_job: Path) -> dict:
    root = tmp_path_factory.mktemp("uninterrupted")
    job = _job(root, tiny_job, "run")
    assert _finish(_train(job)) == 0
    return _metrics(job, "run")


def _assert_same_run(resumed: dict, reference: dict) -> None:
    """Same seed and data: resuming replays the same samples from the same state, so the run
    ends where the uninterrupted one does (float noise only)."""
    assert resumed["best_epoch"] == reference["best_epoch"]
    for got, want in zip(resumed["history"], reference["history"], strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4)
    assert resumed["hr@10"] == pytest.approx(reference["hr@10"], abs=1e-6)
    assert resumed["ndcg@10"] == pytest.approx(reference["ndcg@10"], abs=1e-4)


def test_two_workers_shard_tables_and_record_it(uninterrupted: dict, mlflow_store: str) -> None:
    trainer = uninterrupted["trainer"]
    assert trainer["num_workers"] == 2 and trainer["backend"] == "gloo"
    assert set(trainer["sharding_plan"]) == {"users_table", "items_table"}
    assert trainer["resumed_from"] is None
    assert len(uninterrupted["history"]) == 2
    # Tracked once, by the `train` process, with rank 0's epochs and files.
    [run] = tracked_runs(mlflow_store, Path(uninterrupted["config"]["output_dir"]))
    history = MlflowClient(mlflow_store).get_metric_history(run.info.run_id, "epoch/loss")
    assert [m.value for m in history] == [r["loss"] for r in uninterrupted["history"]]
    assert run.info.status == "FINISHED" and run.data.params["trainer.num_workers"] == "2"


def test_killed_worker_resumes_from_checkpoint(
    tmp_path: Path, tiny_job: Path, uninterrupted: dict
) -> None:
    job = _job(tmp_path, tiny_job, "run")
    process = _train(job)
    _kill_a_worker_after_first_checkpoint(tmp_path / "run" / "ray", process)
    assert _finish(process) == 0
    metrics = _metrics(job, "run")
    assert metrics["trainer"]["resumed_from"] is not None
    _assert_same_run(metrics, uninterrupted)


def test_stopped_run_resumes_by_hand(tmp_path: Path, tiny_job: Path, uninterrupted: dict) -> None:
    job = _job(tmp_path, tiny_job, "run")
    process = _train(job, "--set", "trainer.max_failures=0")
    _kill_a_worker_after_first_checkpoint(tmp_path / "run" / "ray", process)
    assert _finish(process) != 0  # no restarts allowed: the run stops
    assert not (tmp_path / "run" / "metrics.json").exists()

    again = subprocess.run(_args(job), capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr  # nothing is overwritten

    assert _finish(_train(job, "--resume")) == 0
    metrics = _metrics(job, "run")
    assert metrics["trainer"]["resumed_from"] is not None
    _assert_same_run(metrics, uninterrupted)
