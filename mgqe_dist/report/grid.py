"""Runs an experiment's grid: prepares each dataset once, then trains every cell that has no
finished result yet, a few at a time in child processes, with progress and an ETA: a line per
finished cell, under a bar of the whole grid when the output is a terminal.

A cell is finished when its run directory holds one run's outputs (train/outputs.py) whose
metrics.json records the cell's job config (read with today's defaults, so a config key added
since, at its default, does not re-run the grid), or when the experiment's committed
results.json holds a run of the cell that records that config: run directories are not
committed, so a fresh checkout resumes from the report instead of training everything again.
A cell whose config changed since, or whose outputs were left half-written by an interrupted
run (and that has no committed run), is run again. Each child's output goes
to the cell's train.log, so a failure can be read there; a failed cell is reported and the
rest go on. Tracking settings, which change no result, are not compared. Every cell is a
tracked run (train/tracking.py) in the experiment named after the report.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgqe_dist.config import ConfigError, JobConfig, TrackingConfig, from_dict, to_dict
from mgqe_dist.progress import Progress
from mgqe_dist.report.experiment import Experiment, committed_results, job_for
from mgqe_dist.train.outputs import METRICS_FILE, RunOutputError, read_run_metrics
from mgqe_dist.train.tracking import create_experiments


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""

    study: str
    variant: str
    seed: int
    job: JobConfig
    # The cell's run in the committed results.json, if there is one (see the module docstring).
    committed: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        """study/variant/seed, for progress lines."""
        return f"{self.study} / {self.variant} / seed {self.seed}"

    @property
    def metrics_path(self) -> Path:
        """Where the finished run's metrics are."""
        return Path(self.job.output_dir) / METRICS_FILE

    def finished(self) -> dict[str, Any] | None:
        """The run's metrics if it finished with exactly this cell's config (its run directory,
        else its committed run), else None."""
        return self.run_dir_metrics() or self.committed_metrics()

    def run_dir_metrics(self) -> dict[str, Any] | None:
        """The metrics of the run directory if it holds this cell's finished run, else None."""
        try:
            metrics = read_run_metrics(Path(self.job.output_dir))
        except (OSError, RunOutputError):
            return None
        return metrics if records_job(metrics, self.job, str(self.metrics_path)) else None

    def committed_metrics(self) -> dict[str, Any] | None:
        """The committed run of this cell if it records this cell's config, else None."""
        run = self.committed
        if run is None or not records_job(run, self.job, "committed results.json"):
            return None
        return {k: v for k, v in run.items() if k not in ("study", "variant")}


def records_job(metrics: Mapping[str, Any], job: JobConfig, where: str) -> bool:
    """Whether a run's recorded config, read with today's defaults, is `job` (tracking
    settings aside)."""
    try:
        recorded = from_dict(metrics["config"], where=where)
    except (KeyError, TypeError, ConfigError):
        return False
    return _results_config(recorded) == _results_config(job)


def committed_runs(exp: Experiment) -> dict[tuple[str, str, int], dict[str, Any]]:
    """The runs of the experiment's committed results.json by (study, variant, seed); none when
    it is missing or unreadable (the grid then trains what its run directories lack)."""
    runs = committed_results(exp).get("runs", [])
    try:
        return {(r["study"], r["variant"], int(r["seed"])): r for r in runs}
    except (KeyError, TypeError, ValueError):
        return {}


def grid_cells(exp: Experiment) -> list[Cell]:
    """Every cell: table variants and the loss and code figures' variants with every seed,
    figure-6-only variants with size_seeds; seed by seed, so that a stopped grid has every
    cell at least once before any twice, and within a seed the tables' cells before the
    figure-6-only ones."""
    cells: dict[tuple[str, str, int], Cell] = {}
    committed = committed_runs(exp)
    for study in exp.studies:
        plan = [(v, exp.seeds) for v in exp.table_variants]
        if study.id in exp.loss_studies:
            plan += [(v, exp.seeds) for v in exp.loss_variants]
        if study.id == exp.code_study:
            plan += [(v, exp.seeds) for v in exp.code_variants]
        if study.id in exp.size_studies:
            plan += [(v, exp.size_seeds) for s in exp.size_series for v in s.variants]
        for variant, seeds in plan:
            for seed in seeds:
                key = (study.id, variant, seed)
                if key not in cells:
                    job = job_for(exp, study, variant, seed)
                    cells[key] = Cell(*key, job, committed.get(key))
    in_tables = set(exp.table_variants)
    return sorted(cells.values(), key=lambda cell: (cell.seed, cell.variant not in in_tables))


def prepare_data(exp: Experiment, cells: list[Cell]) -> None:
    """Generate missing synthetic sources and prepare every distinct dataset once, before any
    cell trains (cells would otherwise race to prepare the same directory)."""
    from data_pipeline.prepare import prepare
    from mgqe_dist.synth_command import synthesize

    for study in exp.studies:
        if not study.synth:
            continue
        source = next(c.job.data.source for c in cells if c.study == study.id)
        if not Path(source).exists():
            print(f"{study.id}: generating {source} (mgqe-dist synth {' '.join(study.synth)})")
            try:
                synthesize([source, *study.synth])
            except (argparse.ArgumentError, ValueError) as exc:
                raise ValueError(f"{study.id}: could not generate {source}: {exc}") from exc
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
    print(estimate(cells, todo, jobs), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    running: dict[subprocess.Popen[bytes], tuple[Cell, float]] = {}
    failed: list[Cell] = []
    started, finished = time.time(), 0
    queue = list(todo)
    with Progress(len(todo), "grid", "cells") as progress:
        while queue or running:
            while queue and len(running) < jobs:
                cell = queue.pop(0)
                running[_launch(cell, env)] = (cell, time.time())
            time.sleep(0.5)
            progress.advance(0)  # a bar's clock keeps running while cells train
            for process in [p for p in running if p.poll() is not None]:
                cell, began = running.pop(process)
                finished += 1
                eta = (time.time() - started) / finished * (len(todo) - finished) / 60
                status = _summary(cell) if process.returncode == 0 else None
                if status is None:
                    failed.append(cell)
                    status = f"FAILED (exit {process.returncode}; see {_log(cell)})"
                progress.write(
                    f"[{finished}/{len(todo)}] {cell.name}: {status} "
                    f"({time.time() - began:.0f} s; ~{eta:.0f} min left)"
                )
                progress.advance(1, status=f"{len(failed)} failed" if failed else None)
    return failed


def estimate(cells: list[Cell], todo: list[Cell], jobs: int) -> str:
    """The estimated compute of the unfinished cells, from the run time of finished ones: the
    same study and variant's mean, else the study's mean (a cell without either is counted
    apart)."""
    by_cell: dict[tuple[str, str], list[float]] = {}
    by_study: dict[str, list[float]] = {}
    for cell in cells:
        metrics = cell.finished()
        if metrics is not None:
            by_cell.setdefault((cell.study, cell.variant), []).append(metrics["wall_seconds"])
            by_study.setdefault(cell.study, []).append(metrics["wall_seconds"])
    seconds, unknown = 0.0, 0
    for cell in todo:
        known = by_cell.get((cell.study, cell.variant)) or by_study.get(cell.study)
        if known:
            seconds += sum(known) / len(known)
        else:
            unknown += 1
    text = f"estimated: {seconds / 3600:.1f} CPU-h for {len(todo) - unknown} cells"
    text += f" (~{seconds / 3600 / max(jobs, 1):.1f} h at {jobs} at a time)"
    if unknown:
        text += f"; {unknown} cells of studies with no finished cell yet not estimated"
    return text


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
