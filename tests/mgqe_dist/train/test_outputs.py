"""A run's model.pt, model.json and metrics.json: written as one unit, refused when mixed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from mgqe_dist.train import outputs
from mgqe_dist.train.outputs import RunOutputError, read_run_metrics, write_run_outputs


def _write(run: Path, value: float) -> dict[str, Any]:
    return write_run_outputs(run, {"w": torch.tensor([value])}, {"spec": value}, {"hr": value})


def test_outputs_read_back_with_their_checksums(tmp_path: Path) -> None:
    written = _write(tmp_path, 1.0)
    assert read_run_metrics(tmp_path) == written
    assert written["hr"] == 1.0 and set(written["outputs"]) == {"model.json", "model.pt"}


def test_a_write_killed_before_metrics_leaves_a_run_that_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, 1.0)
    (tmp_path / "train.log").write_text("kept")
    real = outputs.write_json_atomic

    def killed_at_metrics(data: Any, path: Path) -> Path:
        if path.name == "metrics.json":
            raise KeyboardInterrupt  # the process dies between the model and its metrics
        return real(data, path)

    monkeypatch.setattr(outputs, "write_json_atomic", killed_at_metrics)
    with pytest.raises(KeyboardInterrupt):
        _write(tmp_path, 2.0)
    assert json.loads((tmp_path / "metrics.json").read_text())["hr"] == 1.0  # the old metrics
    with pytest.raises(RunOutputError, match=r"model.json is not the file .*metrics.json records"):
        read_run_metrics(tmp_path)
    assert (tmp_path / "train.log").read_text() == "kept"


def test_metrics_without_checksums_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, 1.0)
    (tmp_path / "metrics.json").write_text(json.dumps({"hr": 1.0}))
    with pytest.raises(RunOutputError, match=r"records no checksums of model\.json and model\.pt"):
        read_run_metrics(tmp_path)


def test_a_missing_output_is_named(tmp_path: Path) -> None:
    _write(tmp_path, 1.0)
    (tmp_path / "model.pt").unlink()
    with pytest.raises(RunOutputError, match=r"model.pt is missing: not a finished training run"):
        read_run_metrics(tmp_path)
