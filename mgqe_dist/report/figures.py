"""The report's figures (PNG, matplotlib without a display), laid out as the paper's:

- Fig. 6: test metric against model size, one panel per study, a line per method whose size
  varies (FE: d, SQ: bits, DPQ/MGQE: D);
- Fig. 7: training loss against the global step, FE against MGQE, one panel per study;
- Fig. 8: heat maps of the mean number of code positions two items share, set A's genres as
  rows against set B's as columns, one per variant (SQ, MGQE).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from mgqe_dist.report.experiment import Experiment
from mgqe_dist.report.series import loss_curve_mean, size_points

METRIC_NAMES = {"hr@10": "HR@10", "ndcg@10": "NDCG@10", "rmse": "RMSE"}


def metric_label(metric: str) -> str:
    """A metric's name as the paper writes it, with its unit."""
    name = METRIC_NAMES.get(metric, metric)
    return f"{name} (%)" if metric.startswith(("hr@", "ndcg@")) else name


def size_figure(
    exp: Experiment, results: Mapping[str, Any], titles: Mapping[str, str], path: Path
) -> Path:
    """Fig. 6: a panel per size study (titles: study -> panel title), metric against size over
    the figure's seeds, error bars one standard error where two or more seeds finished."""
    panels = list(exp.size_studies)
    fig, axes = _grid(len(panels))
    for ax, study in zip(axes, panels, strict=True):
        metric = exp.study(study).metrics[0]
        scale = 100.0 if metric.startswith(("hr@", "ndcg@")) else 1.0
        for series in exp.size_series:
            points = size_points(exp, results, study, series.variants)
            if not points:
                continue
            xs = [size for size, _ in points]
            ys = [scale * value.mean for _, value in points]
            errors = [scale * value.se if value.n > 1 else 0.0 for _, value in points]
            ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=series.label)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("model size (% of FE at d=64, log scale)")
        ax.set_ylabel(f"test {metric_label(metric)}")
        ax.set_title(_panel(titles, study), fontsize=9)
        ax.grid(True, alpha=0.3)
        _legend_or_note(ax)
    fig.suptitle(f"Fig. 6: performance vs model size (seeds {list(exp.size_seeds)})")
    return _save(fig, path)


def loss_figure(
    exp: Experiment, results: Mapping[str, Any], titles: Mapping[str, str], path: Path
) -> Path:
    """Fig. 7: a panel per loss study; each variant's seeds as thin lines and their mean as a
    thick one, task loss (the loss of the window of steps ending at each point) per global
    step."""
    panels = list(exp.loss_studies)
    fig, axes = _grid(len(panels))
    for ax, study in zip(axes, panels, strict=True):
        for index, variant in enumerate(exp.loss_variants):
            loss = loss_curve_mean(results, study, variant)
            for points in loss.per_seed.values():
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, color=f"C{index}", alpha=0.25, linewidth=0.7)
            if loss.curve:
                label = f"{variant} (mean of {loss.seeds} seed{'s' * (loss.seeds > 1)})"
                ax.plot(list(loss.curve), list(loss.curve.values()), color=f"C{index}", label=label)
        ax.set_xlabel("training step")
        ax.set_ylabel("training loss (task loss)")
        ax.set_title(_panel(titles, study), fontsize=9)
        ax.grid(True, alpha=0.3)
        _legend_or_note(ax)
    fig.suptitle(f"Fig. 7: training loss, {' vs '.join(exp.loss_variants)}")
    return _save(fig, path)


def code_figure(
    matrices: Mapping[str, Sequence[Sequence[float | None]]],
    genres: Sequence[str],
    positions: Mapping[str, int],
    title: str,
    path: Path,
) -> Path:
    """Fig. 8: one heat map per variant (positions: variant -> D), set A's genres as rows and
    set B's as columns, each cell annotated with its mean number of shared positions."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.8 * len(matrices), 4.2), squeeze=False)
    for ax, (variant, rows) in zip(axes[0], matrices.items(), strict=True):
        matrix = np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)
        image = ax.imshow(matrix, cmap="viridis")
        ax.set_xticks(range(len(genres)), list(genres), rotation=30)
        ax.set_yticks(range(len(genres)), list(genres))
        ax.set_xlabel("set B")
        ax.set_ylabel("set A")
        middle = float(np.nanmean([np.nanmin(matrix), np.nanmax(matrix)]))
        for (i, j), value in np.ndenumerate(matrix):
            colour = "black" if value > middle else "white"  # readable on viridis' yellow end
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", color=colour, fontsize=8)
        ax.set_title(f"{variant} (shared positions, 0..{positions[variant]})")
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _legend_or_note(ax: Any) -> None:
    """The panel's legend, or a note that none of its runs has finished yet."""
    if ax.has_data():
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no finished runs yet", ha="center", va="center", transform=ax.transAxes)


def _grid(panels: int) -> tuple[Any, list[Any]]:
    """A figure of `panels` panels: in one row, or 2 x 2 for four (as wide as three)."""
    rows, cols = (2, 2) if panels == 4 else (1, panels)
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 4 * rows), squeeze=False)
    return fig, list(axes.flat)


def _panel(titles: Mapping[str, str], study: str) -> str:
    """A panel's title as the paper labels them, "(a) ...", wrapped to the panel's width."""
    letter = "abcdefghijklmnopqrstuvwxyz"[list(titles).index(study)]
    return textwrap.fill(f"({letter}) {titles[study]}", 48)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
