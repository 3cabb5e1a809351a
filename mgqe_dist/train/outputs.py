"""A training run's outputs: model.pt, model.json and metrics.json, written and read as one unit.

A run directory holds other files too (train.log, job.json, ray/ checkpoints, a feature_repo/),
so the three cannot be swapped in as a directory of their own. metrics.json is the commit
instead: the weights and the model spec are written first (each atomically), then metrics.json,
which records their sha256. A run killed while writing over an earlier run leaves weights or a
spec that differ from what the metrics.json on disk records, and every reader refuses such a
directory (RunOutputError) instead of mixing a new model with old metrics.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from data_pipeline.files import atomic_path, sha256_file, write_json_atomic

METRICS_FILE, MODEL_FILE, SPEC_FILE = "metrics.json", "model.pt", "model.json"
# The files whose sha256 metrics.json records, in metrics.json's "outputs".
COMMITTED = (SPEC_FILE, MODEL_FILE)


class RunOutputError(ValueError):
    """A run directory whose outputs are missing, unreadable or not from one and the same run."""


def write_run_outputs(
    out: Path, state: Mapping[str, torch.Tensor], spec: Mapping[str, Any], metrics: Mapping
) -> dict[str, Any]:
    """Write the model's state (`model.pt`), the spec that rebuilds it (`model.json`) and, last,
    metrics.json with their checksums, which it returns; nothing else in `out` is touched."""
    with atomic_path(out / MODEL_FILE) as tmp:
        torch.save({name: value.cpu() for name, value in state.items()}, tmp)
    write_json_atomic(spec, out / SPEC_FILE)
    record = {**metrics, "outputs": {name: sha256_file(out / name) for name in COMMITTED}}
    write_json_atomic(record, out / METRICS_FILE)
    return record


def load_weights(path: Path, error: type[Exception]) -> dict[str, torch.Tensor]:
    """A model state saved with torch.save, read weights-only; a damaged or hostile file (any
    failure to parse it) is refused as `error` naming the file."""
    try:
        state: dict[str, torch.Tensor] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise error(
            f"{path} is not a weights-only model state (damaged, or it holds objects other "
            f"than tensors); refused to load it"
        ) from None
    return state


def read_run_metrics(run_dir: Path) -> dict[str, Any]:
    """metrics.json of a finished run, once model.json and model.pt are checked to be the files
    it records (see the module docstring)."""
    for name in (*COMMITTED, METRICS_FILE):
        if not (run_dir / name).is_file():
            raise RunOutputError(f"{run_dir / name} is missing: not a finished training run")
    path = run_dir / METRICS_FILE
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunOutputError(f"{path} is not valid JSON ({exc})") from None
    recorded = metrics.get("outputs") if isinstance(metrics, dict) else None
    if not isinstance(recorded, dict):
        raise RunOutputError(
            f"{path} records no checksums of {' and '.join(COMMITTED)} (written by an older "
            f"mgqe-dist, or not by `train`), so they cannot be told from another run's; train "
            f"the run again"
        )
    for name in COMMITTED:
        if sha256_file(run_dir / name) != recorded.get(name):
            raise RunOutputError(
                f"{run_dir / name} is not the file {path} records: a training run was "
                f"interrupted while writing over this one (or the file was changed); train the "
                f"run again"
            )
    return metrics
