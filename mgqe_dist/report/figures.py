"""The report's figures (PNG, matplotlib without a display):

- size: test metric against model size for each method at several sizes (paper Fig. 6);
- loss: training loss per epoch, FE against MGQE (paper Fig. 7);
- codes: how often two items' codes agree, averaged within and between genres, for SQ and
  MGQE item tables (paper Fig. 8).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch

from mgqe_dist.report.experiment import Experiment
from mgqe_dist.report.results import runs_of, summarize


def size_figure(exp: Experiment, results: dict[str, Any], study: str, path: Path) -> Path:
    """Metric against size (% of the FE model's bits) for each series of variants, over the
    figure's seeds only (the table variants among them have more)."""
    metric = exp.study(study).metrics[0]
    full = summarize(results, study, "FE", "model_size_bits", exp.size_seeds).mean
    fig, ax = plt.subplots(figsize=(6, 4))
    for series in exp.size_series:
        points = []
        for variant in series.variants:
            value = summarize(results, study, variant, metric, exp.size_seeds)
            size = summarize(results, study, variant, "model_size_bits", exp.size_seeds)
            if value.n and size.n and not math.isnan(full):
                points.append((100 * size.mean / full, value.mean))
        if points:
            xs, ys = zip(*sorted(points), strict=True)
            ax.plot(xs, ys, marker="o", label=series.label)
    ax.set_xscale("log")
    ax.set_xlabel("model size (% of FE, d=64; log scale)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{exp.study(study).title}: {metric} vs size")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)


def loss_figure(exp: Experiment, results: dict[str, Any], path: Path) -> Path:
    """Training loss per epoch of each variant in loss_variants: one line per seed."""
    fig, ax = plt.subplots(figsize=(6, 4))
    study = exp.loss_studies[0]
    for index, variant in enumerate(exp.loss_variants):
        for run in runs_of(results, study, variant):
            epochs = [h["epoch"] for h in run["history"]]
            losses = [h["loss"] for h in run["history"]]
            label = variant if run["seed"] == exp.seeds[0] else None
            ax.plot(epochs, losses, color=f"C{index}", marker=".", alpha=0.8, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (task loss, per batch mean)")
    ax.set_title(f"{exp.study(study).title}: training loss")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)


def code_similarity(
    codes: torch.Tensor, genre_of: np.ndarray, genres: tuple[str, ...]
) -> np.ndarray:
    """(G, G) mean share of code positions on which an item of genre a and a different item
    of genre b agree; genre_of[i] indexes `genres` (-1: the item is left out)."""
    groups = [torch.from_numpy(np.flatnonzero(genre_of == g)) for g in range(len(genres))]
    similarity = np.full((len(genres), len(genres)), np.nan)
    for a, rows_a in enumerate(groups):
        for b, rows_b in enumerate(groups):
            if not len(rows_a) or not len(rows_b):
                continue
            agree = torch.zeros(len(rows_a), len(rows_b))
            for position in range(codes.shape[1]):
                column = codes[:, position]
                agree += (column[rows_a, None] == column[None, rows_b]).float()
            agree /= codes.shape[1]
            pairs = len(rows_a) * len(rows_b)
            if a == b:  # an item always agrees with itself: leave those pairs out
                agree.fill_diagonal_(0)
                pairs -= len(rows_a)
            similarity[a, b] = float(agree.sum()) / max(pairs, 1)
    return similarity


def code_figure(
    matrices: dict[str, np.ndarray], genres: tuple[str, ...], title: str, path: Path
) -> Path:
    """One heat map per variant of code_similarity matrices, annotated with their values."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.6 * len(matrices), 4), squeeze=False)
    for ax, (variant, matrix) in zip(axes[0], matrices.items(), strict=True):
        image = ax.imshow(matrix, cmap="viridis")
        ax.set_xticks(range(len(genres)), genres, rotation=30)
        ax.set_yticks(range(len(genres)), genres)
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, f"{value:.3f}", ha="center", va="center", color="white", fontsize=8)
        ax.set_title(variant)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(title)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
