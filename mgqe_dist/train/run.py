"""`train`: one local training run from a job spec to metrics.json and a saved model.

The entry is thin: it wires data, model factory, training loop and evaluation, each of which
receives only its own config section, then records config, seed, versions and data checksums
next to the metrics.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from mgqe_dist.config import JobConfig, to_dict
from mgqe_dist.models import Recommender
from mgqe_dist.run_record import versions
from mgqe_dist.size import embedding_modules, full_embedding_model_bits, model_serving_bits
from mgqe_dist.train.data import PreparedData
from mgqe_dist.train.factory import build_from_spec, model_spec
from mgqe_dist.train.loop import TrainResult, train_epochs
from mgqe_dist.train.outputs import METRICS_FILE, write_run_outputs
from mgqe_dist.train.tasks import SPLITS, Evaluate, build_task, load_task_data


def train_job(job: JobConfig, resume: bool = False) -> dict[str, Any]:
    """Train and evaluate the job's model; writes metrics.json, model.pt and model.json (the
    spec that rebuilds the model, for export) to job.output_dir.

    trainer.num_workers = 0 trains here; N >= 1 runs N sharded Ray Train workers, which
    checkpoint, so only they can `resume` a stopped run.
    """
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
    device = _device(job.train.device)
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
        model, task.objective, job.train, job.seed, validate, task.select_by, task.maximize
    )
    extra = {"device": str(device)}
    return finish_run(job, data, spec, model, task.evaluate, result, started, extra)


def load_job_data(job: JobConfig) -> PreparedData:
    """The job's verified prepared data, saying loudly when it was generated."""
    data = load_task_data(job)
    if data.stats["origin"]["synthetic"]:
        print(
            "NOTE: this dataset was GENERATED (MovieLens-1M was not found); metrics are not "
            "MovieLens-1M results.",
            flush=True,
        )
    return data


def finish_run(
    job: JobConfig,
    data: PreparedData,
    spec: dict[str, Any],
    model: Recommender,
    evaluate: Evaluate,
    result: TrainResult,
    started: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Finalize the trained (best-validation) model, evaluate it on valid and test, and write
    model.pt, model.json and metrics.json to job.output_dir as one unit (train/outputs.py);
    `extra` joins the metrics."""
    train_seconds = time.time() - started
    for table in embedding_modules(model):
        table.finalize()  # post-training steps, e.g. SQ quantization, before final evaluation
    valid, test = (evaluate(model, split) for split in SPLITS)
    size_bits = model_serving_bits(model)
    full_bits = full_embedding_model_bits(model)
    metrics = {
        **test,
        **{f"valid_{key}": value for key, value in valid.items()},
        "model_size_bits": size_bits,
        "full_model_size_bits": full_bits,
        "size_pct_of_full": 100.0 * size_bits / full_bits,
        "embedding": job.embedding.kind,
        "model": job.model.name,
        "seed": job.seed,
        **extra,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "history": result.history,
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.time() - started, 1),
        "config": to_dict(job),
        "versions": versions(),
        "data": {
            "prepared_dir": job.data.prepared_dir,
            "prepared_path": str(Path(job.data.prepared_dir).resolve()),
            "origin": data.stats["origin"],
            "checksums": data.stats["checksums"],
            "rows": data.stats["rows"],
        },
    }
    out = Path(job.output_dir)
    record = write_run_outputs(out, model.state_dict(), spec, metrics)
    print(
        "test "
        + " ".join(f"{key} {value:.4g}" for key, value in test.items())
        + f" | size {metrics['size_pct_of_full']:.1f}% of full | {metrics['wall_seconds']} s | "
        f"{out / METRICS_FILE}",
        flush=True,
    )
    return record


def _device(name: str) -> torch.device:
    """Resolve train.device; asking for CUDA without a GPU is an error, not a silent fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError('train.device = "cuda" but no CUDA device is available')
    return torch.device(name)
