"""Runs an experiment's grid: prepares each dataset once, then trains every cell that has no
finished result yet, a few at a time in child processes, with progress and an ETA.

A cell is finished when its run directory holds one run's outputs (train/outputs.py) whose
metrics.json records the cell's job config (read with today's defaults, so a config key added
since, at its default, does not re-run the grid; tracking settings, which change no result, are
not compared); a cell whose config changed since, or whose outputs were left half-written by an
interrupted run, is run again. Each child's output goes to the cell's train.log, so a failure
can be read there; a failed cell is reported and the rest go on. Every cell is a tracked run
(train/tracking.py) in the experiment named after the report.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgqe_dist.config import ConfigError, JobConfig, TrackingConfig, from_dict, to_dict
from mgqe_dist.report.experiment import Experiment, job_for
from mgqe_dist.train.outputs import METRICS_FILE, RunOutputError, read_run_metrics
from mgqe_dist.train.tracking import create_experiments


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""

    study: str
    variant: str
    seed: int
    job: JobConfig

    @property
    def name(self) -> str:
        """study/variant/seed, for progress lines."""
        return f"{self.study} / {self.variant} / seed {self.seed}"

    @property
    def metrics_path(self) -> Path:
        """Where the finished run's metrics are."""
        return Path(self.job.output_dir) / METRICS_FILE

    def finished(self) -> dict[str, Any] | None:
        """The run's metrics if it finished with exactly this cell's config, else None."""
        try:
            metrics = read_run_metrics(Path(self.job.output_dir))
        except (OSError, RunOutputError):
            return None
        try:
            recorded = from_dict(metrics["config"], where=str(self.metrics_path))
        except (KeyError, TypeError, ConfigError):
            return None
        return metrics if _results_config(recorded) == _results_config(self.job) else None


def grid_cells(exp: Experiment) -> list[Cell]:
    """Every cell: table variants and the loss and code figures' variants with every seed,
    figure-6-only variants with size_seeds; seed by seed, so that a stopped grid has every
    cell at least once before any twice."""
    cells: dict[tuple[str, str, int], Cell] = {}
    for study in exp.studies:
        plan = [(v, exp.seeds) for v in exp.table_variants]
        if study.id == exp.loss_study:
            plan += [(v, exp.seeds) for v in exp.loss_variants]
        if study.id == exp.code_study:
            plan += [(v, exp.seeds) for v in exp.code_variants]
        if study.id in exp.size_studies:
            plan += [(v, exp.size_seeds) for s in exp.size_series for v in s.variants]
        for variant, seeds in plan:
            for seed in seeds:
                if (study.id, variant, seed) not in cells:
                    job = job_for(exp, study, variant, seed)
                    cells[study.id, variant, seed] = Cell(study.id, variant, seed, job)
    return sorted(cells.values(), key=lambda cell: cell.seed)


def prepare_data(exp: Experiment, cells: list[Cell]) -> None:
    """Generate missing synthetic sources and prepare every distinct dataset once, before any
    cell trains (cells would otherwise race to prepare the same directory)."""
    from data_pipeline.prepare import prepare
    from mgqe_dist.cli import main as cli_main

    for study in exp.studies:
        if not study.synth:
            continue
        source = next(c.job.data.source for c in cells if c.study == study.id)
        if not Path(source).exists():
            print(f"{study.id}: generating {source} (mgqe-dist synth {' '.join(study.synth)})")
            if cli_main(["synth", source, *study.synth]) != 0:
                raise ValueError(f"{study.id}: could not generate {source}")
    done: set[str] = set()
    for cell in cells:
        data = cell.job.data
        if data.prepared_dir not in done:
            prepare(data, cell.job.seed)
            done.add(data.prepared_dir)


def run_cells(cells: list[Cell], jobs: int, threads: int) -> list[Cell]:
    """Train the unfinished cells, `jobs` at a time with `threads` torch threads each; returns
    the cells that failed."""
    todo = [c for c in cells if c.finished() is None]
    create_experiments(c.job for c in todo)  # an unusable store fails before any cell starts
    print(f"grid: {len(cells)} cells, {len(cells) - len(todo)} finished, {len(todo)} to run")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    running: dict[subprocess.Popen[bytes], tuple[Cell, float]] = {}
    failed: list[Cell] = []
    started, finished = time.time(), 0
    queue = list(todo)
    while queue or running:
        while queue and len(running) < jobs:
            cell = queue.pop(0)
            running[_launch(cell, env)] = (cell, time.time())
        time.sleep(0.5)
        for process in [p for p in running if p.poll() is not None]:
            cell, began = running.pop(process)
            finished += 1
            eta = (time.time() - started) / finished * (len(todo) - finished) / 60
            status = _summary(cell) if process.returncode == 0 else None
            if status is None:
                failed.append(cell)
                status = f"FAILED (exit {process.returncode}; see {_log(cell)})"
            print(
                f"[{finished}/{len(todo)}] {cell.name}: {status} ({time.time() - began:.0f} s; "
                f"~{eta:.0f} min left)",
                flush=True,
            )
    return failed


def _launch(cell: Cell, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `mgqe-dist train` on the cell's resolved job, written next to its results."""
    out = Path(cell.job.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = out / "job.json"
    spec.write_text(json.dumps(to_dict(cell.job), indent=2) + "\n")
    log = _log(cell).open("wb")
    command = [sys.executable, "-m", "mgqe_dist.report.run_cell", str(spec)]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def _results_config(job: JobConfig) -> JobConfig:
    """The config a cell's results depend on: all but where the run is tracked."""
    return dataclasses.replace(job, tracking=TrackingConfig())


def _log(cell: Cell) -> Path:
    return Path(cell.job.output_dir) / "train.log"


def _summary(cell: Cell) -> str | None:
    metrics = cell.finished()
    if metrics is None:
        return None
    values = " ".join(
        f"{key} {metrics[key]:.4f}" for key in ("hr@10", "ndcg@10", "rmse") if key in metrics
    )
    return f"{values}, size {metrics['size_pct_of_full']:.1f}%"
