"""What Figs. 6 and 7 plot, computed once for the figures and the claims: a method's points of
quality against size, and a variant's training loss against the global step."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mgqe_dist.report.experiment import Experiment
from mgqe_dist.report.results import Summary, runs_of, summarize

# The reference of Fig. 6's size axis: the FE variant at the paper's d = 64.
FULL_VARIANT = "FE"


def size_points(
    exp: Experiment, results: Mapping[str, Any], study: str, variants: Sequence[str]
) -> list[tuple[float, Summary]]:
    """(size as % of FE at d = 64, metric summary) of each variant with finished runs, over the
    figure's seeds only (table variants have more), ordered by size. Size is relative to FE at
    d = 64, not each run's own full model (for "FE d=8" that would be itself)."""
    metric = exp.study(study).metrics[0]
    data = results
    full = summarize(data, study, FULL_VARIANT, "model_size_bits", exp.size_seeds)
    if not full.n:
        return []
    points = []
    for variant in variants:
        value = summarize(data, study, variant, metric, exp.size_seeds)
        size = summarize(data, study, variant, "model_size_bits", exp.size_seeds)
        if value.n and size.n:
            points.append((100 * size.mean / full.mean, value))
    return sorted(points, key=lambda point: point[0])


@dataclass(frozen=True)
class LossCurve:
    """A variant's training loss over its finished seeds: global step -> mean task loss over
    the seeds that reach that step's point (all of them, or the curve stops)."""

    curve: dict[int, float]
    per_seed: dict[int, list[tuple[int, float]]]  # seed -> (global step, loss) points
    first_epoch_steps: int
    seeds: int


def run_loss_curve(run: Mapping[str, Any]) -> list[tuple[int, float]]:
    """(global step, loss) points of one run: the global step is the steps of the earlier epochs
    plus the step within the epoch. Runs recorded before per-step curves give one point per
    epoch (its mean loss at its last step); runs without step counts give none."""
    points: list[tuple[int, float]] = []
    offset = 0
    for epoch in run.get("history", []):
        if "steps" not in epoch:
            return []
        curve = epoch.get("loss_curve") or [[epoch["steps"], epoch["loss"]]]
        points += [(offset + int(step), float(loss)) for step, loss in curve]
        offset += int(epoch["steps"])
    return points


def loss_curve_mean(results: Mapping[str, Any], study: str, variant: str) -> LossCurve:
    """The variant's loss curve averaged over its finished seeds, at the points every seed has
    (seeds stopped early by validation end the mean where the first of them stops)."""
    runs = runs_of(results, study, variant)
    per_seed = {run["seed"]: run_loss_curve(run) for run in runs}
    per_seed = {seed: points for seed, points in per_seed.items() if points}
    if not per_seed:
        return LossCurve({}, {}, 0, 0)
    lookups = [dict(points) for points in per_seed.values()]
    steps = set.intersection(*(set(lookup) for lookup in lookups))
    curve = {step: statistics.fmean(lookup[step] for lookup in lookups) for step in sorted(steps)}
    first = next(run for run in runs if run["seed"] in per_seed)["history"][0]["steps"]
    return LossCurve(curve, per_seed, int(first), len(per_seed))
