"""Collects the finished cells of a grid into results.json and summarises them per cell:
mean and sample standard deviation over seeds of every metric."""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgqe_dist.report.experiment import Column, Experiment, Table
from mgqe_dist.report.grid import Cell


@dataclass(frozen=True)
class Summary:
    """A metric of one (study, variant) over its finished seeds."""

    mean: float
    std: float
    n: int

    def text(self, digits: int = 4) -> str:
        """Mean ± std as text, e.g. 0.2373 ± 0.0012 (the mean alone for one seed, "—" for
        none)."""
        if not self.n:
            return "—"
        spread = f" ± {self.std:.{digits}f}" if self.n > 1 else ""
        return f"{self.mean:.{digits}f}{spread}"


def collect(exp: Experiment, cells: list[Cell], quick: bool) -> dict[str, Any]:
    """results.json: every finished run's metrics (config and loss history included), which
    cells are missing, and the compute used."""
    runs, missing = [], []
    for cell in cells:
        metrics = cell.finished()
        if metrics is None:
            missing.append(cell.name)
            continue
        runs.append({"study": cell.study, "variant": cell.variant, "seed": cell.seed, **metrics})
    seconds = sum(r["wall_seconds"] for r in runs)
    return {
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


def summarize(
    results: dict[str, Any],
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


def runs_of(results: dict[str, Any], study: str, variant: str) -> list[dict[str, Any]]:
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
    node: Any = json.loads(Path(exp.paper_results).read_text(encoding="utf-8"))
    for part in column.paper.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    method = node.get(table.paper_rows.get(variant, variant), {}) if isinstance(node, dict) else {}
    value = method.get(key) if isinstance(method, dict) else None
    return float(value) if isinstance(value, int | float) else None
