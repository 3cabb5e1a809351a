"""What a finished training run records: the final evaluation of its best model, and its
metrics (config, seed, versions, data checksums, sizes) written beside the model as one unit.

Shared by the local trainer (run.py) and the sharded one (distributed.py). It lives apart from
run.py, the entry that launches the sharded trainer, so that the sharded trainer does not
import its own launcher back (an import circle).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mgqe_dist.config import JobConfig, to_dict
from mgqe_dist.models import Recommender
from mgqe_dist.run_record import versions
from mgqe_dist.size import embedding_modules, full_embedding_model_bits, model_serving_bits
from mgqe_dist.train.data import PreparedData
from mgqe_dist.train.loop import TrainResult
from mgqe_dist.train.outputs import METRICS_FILE, write_run_outputs
from mgqe_dist.train.tasks import SPLITS, Evaluate, load_task_data


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
