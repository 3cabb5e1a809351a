"""`evaluate`: re-evaluate a finished training run, or a serving artifact exported from one.

The model is evaluated by its training task's own evaluation (train/tasks.py, chosen by the
run's recorded job: ranking HR/NDCG, RMSE, next-item ranking) on the prepared data it was
trained on, which must still be the same data (its stats.json checksums equal the run's
record). Re-evaluating a finished run's test split therefore reproduces metrics.json's test
numbers exactly when it runs on the device the run was evaluated on: `device`, CPU by default,
must be CUDA for a run trained locally on a GPU (metrics.json's `device`); sharded runs were
evaluated on CPU (rank 0 evaluates an unsharded CPU copy). An artifact serves the same
embeddings bit for bit (full, SQ, DPQ, MGQE), so its numbers match too.

`max_users` evaluates a sample of the split's users drawn uniformly with the job's seed (the
same users every time): model ids are frequency-ranked, so the first N users would be the most
active ones, not a sample.

The result is written as JSON (atomically) next to the model, `eval-<split>.json` (or
`eval-<split>-<N>-users.json` for a sample), or to `out`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from data_pipeline.files import write_json_atomic
from mgqe_dist.config import JobConfig, from_dict
from mgqe_dist.models import Recommender
from mgqe_dist.run_record import versions
from mgqe_dist.serve.artifact import MANIFEST, ArtifactError, load_artifact, load_run
from mgqe_dist.train.data import Interactions, PreparedData
from mgqe_dist.train.outputs import METRICS_FILE, RunOutputError
from mgqe_dist.train.record import load_job_data
from mgqe_dist.train.run import resolve_device
from mgqe_dist.train.tasks import SPLITS, build_task

# As train.device: "auto" takes the GPU when there is one.
DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class Saved:
    """A trained model read back from a run or artifact directory, with what evaluating it
    needs: the job it was trained with, where its prepared data is, the checksums that data had
    at training, and the metrics recorded then."""

    kind: str  # "run" or "artifact"
    model: Recommender
    config: dict[str, Any]
    prepared_path: str
    checksums: dict[str, str]
    recorded: dict[str, Any]


def evaluate_saved(
    path: str | Path,
    split: str = "test",
    max_users: int | None = None,
    device: str = "cpu",
    out: str | Path | None = None,
) -> tuple[dict[str, Any], Path]:
    """Evaluate the run or artifact at `path` on `split`; returns the record and where it was
    written (see the module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if max_users is not None and max_users < 1:
        raise ValueError(f"--max-users must be >= 1, got {max_users}")
    if device not in DEVICES:
        raise ValueError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    root = Path(path)
    target = resolve_device(device)
    saved = load_saved(root)
    job = from_dict(saved.config, where=str(root))
    job = dataclasses.replace(
        job, data=dataclasses.replace(job.data, prepared_dir=saved.prepared_path)
    )
    data = _same_data(job, saved)
    if max_users is not None:
        data = sample_users(data, split, max_users, job.seed)
    task = build_task(job, data)
    started = time.time()
    metrics = task.evaluate(saved.model.to(target), split)
    if not metrics:
        raise ValueError(f"{saved.prepared_path}: the {split} split has no rows to evaluate")
    recorded = None if max_users is not None else _recorded(saved.recorded, split, metrics)
    record = {
        "evaluated": str(root.resolve()),
        "kind": saved.kind,
        "split": split,
        "metrics": metrics,
        "sample": None if max_users is None else {"max_users": max_users, "seed": job.seed},
        "recorded": recorded,
        "same_as_recorded": None if recorded is None else recorded == metrics,
        "device": str(target),
        "seconds": round(time.time() - started, 2),
        "data": {"prepared_path": saved.prepared_path, "checksums": saved.checksums},
        "versions": versions(),
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    sample = "" if max_users is None else f"-{max_users}-users"
    written = Path(out) if out is not None else root / f"eval-{split}{sample}.json"
    write_json_atomic(record, written)
    return record, written


def load_saved(root: Path) -> Saved:
    """The model and records of an artifact (a directory with manifest.json) or a finished
    run (one with metrics.json), each verified by its own loader."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    if (root / MANIFEST).is_file():
        served = load_artifact(root)
        source = served.manifest.get("source")
        if not isinstance(source, dict) or not {"config", "prepared_path"} <= set(source):
            raise ArtifactError(
                f"{root / MANIFEST} records no job config or prepared data (exported by an "
                f"older mgqe-dist); export the run again"
            )
        return Saved(
            "artifact",
            served.model,
            source["config"],
            source["prepared_path"],
            served.manifest.get("data_checksums", {}),
            source.get("metrics", {}),
        )
    if not (root / METRICS_FILE).is_file():
        raise RunOutputError(
            f"{root} is neither a finished training run (no {METRICS_FILE}) nor a serving "
            f"artifact (no {MANIFEST})"
        )
    _, metrics, model = load_run(root)
    try:
        config, data = metrics["config"], metrics["data"]
        return Saved("run", model, config, data["prepared_path"], data["checksums"], metrics)
    except (KeyError, TypeError):
        raise RunOutputError(
            f"{root / METRICS_FILE} records no config or prepared data: not written by `train`"
        ) from None


def sample_users(data: PreparedData, split: str, count: int, seed: int) -> PreparedData:
    """`data` with the held-out rows of `split` cut to `count` of its users, drawn uniformly
    with `seed`; the other splits (masked or used for histories) stay whole."""
    held: Interactions = getattr(data, split)
    users = torch.unique(held.users)
    if count >= len(users):
        return data
    order = torch.randperm(len(users), generator=torch.Generator().manual_seed(seed))
    keep = torch.isin(held.users, users[order[:count]])
    targets = None if held.targets is None else held.targets[keep]
    cut: dict[str, Any] = {split: Interactions(held.users[keep], held.items[keep], targets)}
    return dataclasses.replace(data, **cut)


def summary_line(record: dict[str, Any], written: Path) -> str:
    """What `mgqe-dist evaluate` prints: the metrics, how they compare with the run's record,
    and where they were written."""
    metrics = " ".join(f"{key} {_value(value)}" for key, value in record["metrics"].items())
    if record["sample"] is not None:
        sample = record["sample"]
        note = f"a sample of at most {sample['max_users']} users, seed {sample['seed']}"
    elif record["same_as_recorded"]:
        note = "the same as recorded at training"
    else:
        recorded = " ".join(f"{k} {_value(v)}" for k, v in (record["recorded"] or {}).items())
        note = f"training recorded {recorded or 'nothing comparable'}"
    return f"{record['split']} {metrics} ({note}) -> {written}"


def _same_data(job: JobConfig, saved: Saved) -> PreparedData:
    """The job's prepared data (verified against its stats.json), refused unless it is the
    data the model was trained on."""
    data = load_job_data(job)
    if data.stats["checksums"] != saved.checksums:
        raise ValueError(
            f"{saved.prepared_path} is not the prepared data this model was trained on (its "
            f"checksums differ from the {saved.kind}'s record: prepared again since?); its "
            f"metrics would not be comparable"
        )
    return data


def _recorded(
    recorded: dict[str, Any], split: str, metrics: dict[str, float]
) -> dict[str, Any] | None:
    """The values recorded at training for the keys of `metrics` (valid ones prefixed)."""
    prefix = "valid_" if split == "valid" else ""
    found = {key: recorded[prefix + key] for key in metrics if prefix + key in recorded}
    return found or None


def _value(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)
