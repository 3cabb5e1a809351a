"""One real training epoch of `mgqe-dist train` per embedding kind, as a ratio to full
embeddings (FE): the cost a user sees, with the trainer's loop, data, negative sampler, loss
and optimiser, not only the embedding module.

GMF on the job specs `jobs/ml1m_gmf_<kind>.toml` (MovieLens-1M from ../shared/data/ml-1m,
prepared first if needed), each run for one epoch in this process. The figure is the epoch's
training time (validation excluded), the fastest of `--repeats` runs.

    .venv/bin/python -m benchmarks.train_epoch [--repeats 1] [--kinds fe,mgqe]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
from pathlib import Path

import ray
import torch

from data_pipeline.prepare import prepare
from mgqe_dist.config import load_job
from mgqe_dist.train.run import train_job

KINDS = ("fe", "lrf", "sq", "dpq", "mgqe", "mgqe_unshared", "mgqe_var_d")


def epoch_seconds(kind: str, out: Path) -> tuple[float, bool]:
    """Training seconds of one epoch of jobs/ml1m_gmf_<kind>.toml, and whether the data was
    generated (MovieLens-1M absent)."""
    job = load_job(
        f"jobs/ml1m_gmf_{kind}.toml",
        ["train.epochs=1", "train.progress_updates=0", f"output_dir={out / kind}"],
    )
    with contextlib.redirect_stdout(io.StringIO()):
        metrics = train_job(job)
    return float(metrics["history"][0]["train_seconds"]), bool(
        metrics["data"]["origin"]["synthetic"]
    )


def main() -> None:
    """Prepare MovieLens-1M if needed, time one epoch per kind, print seconds and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    kinds = ["fe", *(k for k in args.kinds.split(",") if k != "fe")]
    first = load_job(f"jobs/ml1m_gmf_{kinds[0]}.toml")
    prepare(first.data, first.seed)
    ray.shutdown()  # the local cluster prepare started would compete with training for CPU
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            runs = [epoch_seconds(kind, Path(tmp)) for _ in range(args.repeats)]
            seconds[kind] = min(s for s, _ in runs)
            synthetic = runs[0][1]
    data = "GENERATED stand-in (MovieLens-1M not found)" if synthetic else "MovieLens-1M"
    print(
        f"GMF, one training epoch per kind ({data}), fastest of {args.repeats}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    for kind, value in seconds.items():
        print(f"  {kind:<14}{value:8.1f} s   ratio to FE {value / seconds['fe']:5.2f}")


if __name__ == "__main__":
    main()
