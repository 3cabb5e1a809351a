"""`prepare` throughput and peak memory against a plain pyarrow group_by count, in one run.

For each size, a synthetic power-law log (`mgqe-dist synth`, fixed users/items so only the row
count changes) is prepared by the real pipeline, and the same files are read and counted per
user and per item by single-process pyarrow (the baseline). Each runs in a child process;
peak memory is the largest sum of RSS over the child's whole process tree (Ray workers and
raylet included; shared object-store pages may count more than once, so it is an upper bound).

    .venv/bin/python -m benchmarks.pipeline [--rows 10000000 100000000] [--users 1000000]
        [--items 1000000] [--work-dir /tmp/mgqe-pipeline-bench]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from data_pipeline.prepare import prepare
from data_pipeline.stats import load_stats
from mgqe_dist.config import DataConfig

SAMPLE_SECONDS = 0.2


def baseline(log_dir: Path) -> None:
    """Single-process pyarrow: read user and item ids of every file, count per id."""
    table = pq.read_table(log_dir, columns=["user_id", "item_id"])
    for column in ("user_id", "item_id"):
        table.group_by(column).aggregate([([], "count_all")])


def pipeline(log_dir: Path, out: Path) -> None:
    """The real `prepare` on the log (both passes, vocabularies, split files)."""
    prepare(DataConfig(source=str(log_dir), prepared_dir=str(out)), seed=0, force=True)


def measure(args: list[str]) -> tuple[float, float]:
    """Run this module as a child with `args`; wall seconds and peak process-tree RSS (GiB)."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "benchmarks.pipeline", *args])
    root, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(_rss(p) for p in tree))
        except psutil.NoSuchProcess:
            pass
        time.sleep(SAMPLE_SECONDS)
    if child.returncode:
        raise RuntimeError(f"child {args} failed with exit code {child.returncode}")
    return time.perf_counter() - started, peak / 2**30


def _rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_info().rss)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0


def synthesize(rows: int, users: int, items: int, log_dir: Path) -> float:
    """Write the log unless an identical one is there; returns seconds spent writing."""
    record = log_dir / "_synth.json"
    wanted = {"rows": rows, "users": users, "items": items}
    if record.exists():
        spec_made = json.loads(record.read_text())["spec"]
        if {key: spec_made[key] for key in wanted} == wanted:
            return 0.0
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mgqe_dist.cli", "synth", str(log_dir), "--files", "16"]
        + [f"--{key}={value}" for key, value in wanted.items()],
        check=True,
    )
    return time.perf_counter() - started


def main() -> None:
    """Synthesize, then time baseline and pipeline per size; print rates, memory and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/mgqe-pipeline-bench"))
    parser.add_argument("--child", choices=["baseline", "pipeline"], help=argparse.SUPPRESS)
    parser.add_argument("--log-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "baseline":
        return baseline(args.log_dir)
    if args.child == "pipeline":
        return pipeline(args.log_dir, args.work_dir / "prepared")
    lines = []
    for rows in args.rows:
        log_dir = args.work_dir / f"log-{rows}"
        made = synthesize(rows, args.users, args.items, log_dir)
        size = sum(f.stat().st_size for f in log_dir.glob("*.parquet")) / 2**30
        base_s, base_gib = measure(["--child", "baseline", "--log-dir", str(log_dir)])
        pipe_s, pipe_gib = measure(
            ["--child", "pipeline", "--log-dir", str(log_dir), "--work-dir", str(args.work_dir)]
        )
        features = load_stats(args.work_dir / "prepared")["features"]
        vocab = "/".join(f"{features[c]['num_ids']:,}" for c in ("user_id", "item_id"))
        shutil.rmtree(args.work_dir / "prepared", ignore_errors=True)
        lines.append(
            f"  {rows / 1e6:6.0f}M rows ({size:.2f} GiB Parquet, synth {made:.0f} s, "
            f"users/items seen {vocab}): "
            f"pyarrow group_by {rows / base_s / 1e6:6.2f}M rows/s peak {base_gib:5.2f} GiB | "
            f"prepare {rows / pipe_s / 1e6:6.2f}M rows/s peak {pipe_gib:5.2f} GiB | "
            f"throughput ratio prepare/pyarrow {base_s / pipe_s:5.2f}"
        )
    print(
        f"prepare vs pyarrow group_by count, {args.users:,} users, {args.items:,} items, "
        f"{psutil.cpu_count()} cores, pyarrow {pa.__version__}"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
