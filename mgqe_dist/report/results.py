"""Collects the finished cells of a grid into results.json and summarises them per cell: mean,
sample standard deviation and standard error of the mean over seeds of every metric."""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgqe_dist.report.derived import code_figure_data, table_shapes
from mgqe_dist.report.experiment import Column, Experiment, Table, committed_results
from mgqe_dist.report.grid import Cell


@dataclass(frozen=True)
class Summary:
    """A metric of one (study, variant) over its finished seeds."""

    mean: float
    std: float
    n: int

    @property
    def se(self) -> float:
        """Standard error of the mean (std / sqrt(n)); nan below two seeds."""
        return self.std / math.sqrt(self.n) if self.n > 1 else math.nan

    def text(self, digits: int = 4, scale: float = 1.0) -> str:
        """Mean ± standard error as text, values times `scale`, e.g. 7.88 ± 0.05 (the mean alone
        for one seed, "—" for none)."""
        if not self.n:
            return "—"
        spread = f" ± {scale * self.se:.{digits}f}" if self.n > 1 else ""
        return f"{scale * self.mean:.{digits}f}{spread}"


def collect(exp: Experiment, cells: list[Cell], quick: bool) -> dict[str, Any]:
    """results.json: every finished run's metrics (config, loss history and table shapes
    included), from its run directory or, where that is absent, from the committed
    results.json; which cells are missing; Fig. 8's data (derived.py); the compute used."""
    runs, missing = [], []
    for cell in cells:
        metrics = cell.run_dir_metrics()
        if metrics is not None:
            metrics = {**metrics, "tables": table_shapes(cell.job.output_dir)}
        else:
            metrics = cell.committed_metrics()
        if metrics is None:
            missing.append(cell.name)
            continue
        runs.append({**metrics, "study": cell.study, "variant": cell.variant, "seed": cell.seed})
    seconds = sum(r["wall_seconds"] for r in runs)
    results = {
        "experiment": exp.name,
        "quick": quick,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seeds": list(exp.seeds),
        "studies": {
            s.id: {"title": s.title, "job": s.job, "set": list(s.set)} for s in exp.studies
        },
        "cells": len(cells),
        "missing": missing,
        "compute": {
            "runs": len(runs),
            "run_seconds_total": round(seconds, 1),
            "run_hours_total": round(seconds / 3600, 2),
            "devices": sorted({str(r.get("device")) for r in runs}),
            "cpu_count": os.cpu_count(),
        },
        "runs": runs,
    }
    if exp.code_study:
        previous = committed_results(exp).get("code_figure")
        results["code_figure"] = code_figure_data(exp, cells, previous)
    return results


def summarize(
    results: Mapping[str, Any],
    study: str,
    variant: str,
    metric: str,
    seeds: Sequence[int] | None = None,
) -> Summary:
    """Mean and sample std of `metric` over the finished seeds of one cell (only `seeds`, if
    given, so that a figure compares every point on the same seeds)."""
    values = [
        float(r[metric])
        for r in results["runs"]
        if r["study"] == study
        and r["variant"] == variant
        and metric in r
        and (seeds is None or r["seed"] in seeds)
    ]
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return Summary(math.nan, math.nan, 0)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return Summary(statistics.fmean(values), std, len(values))


def runs_of(results: Mapping[str, Any], study: str, variant: str) -> list[dict[str, Any]]:
    """Finished runs of one cell, by seed."""
    found = [r for r in results["runs"] if r["study"] == study and r["variant"] == variant]
    return sorted(found, key=lambda r: r["seed"])


def paper_value(
    exp: Experiment, table: Table, column: Column, variant: str, key: str
) -> float | None:
    """The paper's value of `key` (a metric, or "size_pct") for a table row and column, read
    from the experiment's paper_results JSON; None where the paper has none."""
    if not (exp.paper_results and column.paper):
        return None
    node: Any = paper_results(exp.paper_results)
    for part in column.paper.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    method = node.get(table.paper_rows.get(variant, variant), {}) if isinstance(node, dict) else {}
    value = method.get(key) if isinstance(method, dict) else None
    return float(value) if isinstance(value, int | float) else None


def paper_metric(exp: Experiment, study: str, variant: str, key: str) -> float | None:
    """The paper's value of `key` for a variant on a study, from the first table that has it."""
    for table in exp.tables:
        if variant not in table.rows:
            continue
        for column in table.columns:
            if column.study == study:
                value = paper_value(exp, table, column, variant, key)
                if value is not None:
                    return value
    return None


def paper_results(path: str) -> dict[str, Any]:
    """The paper's results JSON ({} when the file is missing), read once per path."""
    if path not in _PAPER:
        file = Path(path)
        _PAPER[path] = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    return _PAPER[path]


_PAPER: dict[str, dict[str, Any]] = {}


def cells_done(exp: Experiment, results: Mapping[str, Any], table: Table) -> tuple[int, int]:
    """(finished, all) cells of a table: its rows x its studies x the experiment's seeds."""
    studies = dict.fromkeys(c.study for c in table.columns)
    wanted = {(s, v, seed) for s in studies for v in table.rows for seed in exp.seeds}
    done = {(r["study"], r["variant"], r["seed"]) for r in results["runs"]}
    return len(wanted & done), len(wanted)
