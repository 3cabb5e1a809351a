"""Shared fixtures: a tiny generated log, its prepared dataset (real Ray), job specs, a
hostile pickle payload, and an MLflow store of the session's own (never ./mlruns)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from data_pipeline.prepare import prepare
from mgqe_dist.config import JobConfig, load_job

TINY_JOB = """
name = "tiny"
output_dir = "{root}/run"
seed = 0

[data]
source = "{root}/missing-ml-1m"
if_missing = "synthesize"
prepared_dir = "{root}/prepared"
synth_users = 120
synth_items = 200
synth_rows = 4000

[embedding]
kind = "mgqe"
dim = 16
num_subspaces = 8
num_centroids = [16, 4]

[train]
epochs = 2
batch_size = 512
"""


class Payload:
    """A hostile pickle's stand-in: unpickled unrestricted, it creates `marker` (any code could
    run instead); a test plants it and asserts that the marker never appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def write_job(root: Path, text: str = TINY_JOB) -> Path:
    """Write a job spec whose paths all live under `root`."""
    path = root / "job.toml"
    path.write_text(text.format(root=root))
    return path


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Every run the tests train (in-process or in children, which inherit the environment) is
    tracked in this session's MLflow store; the URI is yielded."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    yield uri
    if before is None:
        del os.environ["MLFLOW_TRACKING_URI"]
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture(scope="session", autouse=True)
def _ray_shutdown():
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="session")
def tiny_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared tiny dataset (generated log) and the job spec that points at it."""
    root = tmp_path_factory.mktemp("tiny")
    path = write_job(root)
    job: JobConfig = load_job(path)
    prepare(job.data, job.seed)
    return path
