"""What the report derives from run directories and keeps in results.json, because run
directories are not committed and a fresh checkout renders the report from results.json alone:

- each run's table shapes (model.json `tables`), for the Sizes section;
- Fig. 8's data: the two draws of items per genre and, for every finished run of the figure's
  variants, the genre x genre matrix of shared code positions. An entry is reused while the
  run it was computed from (its outputs' sha256) and the draw (study, genres, items per genre,
  draw seed) are unchanged; otherwise it is computed again from the run directory, or dropped
  when the run directory is absent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mgqe_dist.report.experiment import Experiment
from mgqe_dist.report.genres import (
    GenreError,
    code_agreement,
    draw_sets,
    item_codes,
    item_genres,
    vocab_ids,
)
from mgqe_dist.report.grid import Cell
from mgqe_dist.serve.artifact import ArtifactError
from mgqe_dist.train.outputs import SPEC_FILE, RunOutputError

# The seed of Fig. 8's random draw of items (the same draw for every run of the figure).
DRAW_SEED = 0


def table_shapes(run_dir: str | Path) -> dict[str, Any]:
    """model.json's tables of a finished run: name -> kind, num_embeddings, embedding_dim,
    options (tiers, centroids)."""
    tables: dict[str, Any] = json.loads((Path(run_dir) / SPEC_FILE).read_text())["tables"]
    return tables


def code_figure_data(
    exp: Experiment, cells: Sequence[Cell], previous: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Fig. 8's data for results.json (see the module docstring); `previous` is the committed
    results.json's entry. Keys: key (what the draw depends on), origin (of the genres),
    available (items per genre), sets (A and B: raw item ids per genre), runs ("variant|seed"
    -> variant, seed, outputs, matrix), error (why something could not be computed)."""
    key = {
        "study": exp.code_study,
        "genres": list(exp.genres),
        "movies_per_genre": exp.movies_per_genre,
        "draw_seed": DRAW_SEED,
    }
    cached = dict(previous) if previous and previous.get("key") == key else {}
    data: dict[str, Any] = {"key": key, "runs": {}}
    data.update({k: cached[k] for k in ("origin", "available", "sets") if k in cached})
    old_runs = cached.get("runs", {})
    for cell in cells:
        if cell.study != exp.code_study or cell.variant not in exp.code_variants:
            continue
        metrics = cell.finished()
        if metrics is None:
            continue
        name = f"{cell.variant}|{cell.seed}"
        entry = old_runs.get(name)
        if entry and entry.get("outputs") == metrics.get("outputs"):
            data["runs"][name] = entry
            continue
        if cell.run_dir_metrics() is None:
            continue  # committed run only, and no matrix of it was kept
        try:
            if "sets" not in data:
                data.update(_draw(exp, cell, metrics))
            matrix = _matrix(data["sets"], cell, metrics)
        except (GenreError, ArtifactError, RunOutputError, OSError, KeyError) as exc:
            data["error"] = f"{cell.name}: {exc}"
            continue
        data["runs"][name] = {
            "variant": cell.variant,
            "seed": cell.seed,
            "outputs": metrics.get("outputs"),
            "matrix": matrix,
        }
    return data


def _draw(exp: Experiment, cell: Cell, metrics: Mapping[str, Any]) -> dict[str, Any]:
    genres = item_genres(metrics["data"]["origin"], cell.job.data, exp.genres)
    items = [raw for raw in vocab_ids(metrics["data"]["prepared_dir"]) if raw is not None]
    available = {
        genre: sum(1 for raw in items if genres.genre_of.get(raw) == index)
        for index, genre in enumerate(exp.genres)
    }
    sets_a, sets_b = draw_sets(genres.genre_of, items, exp.genres, exp.movies_per_genre, DRAW_SEED)
    return {
        "origin": genres.origin,
        "available": available,
        "sets": {
            "A": dict(zip(exp.genres, sets_a, strict=True)),
            "B": dict(zip(exp.genres, sets_b, strict=True)),
        },
    }


def _matrix(
    sets: Mapping[str, Mapping[str, list[int]]], cell: Cell, metrics: Mapping[str, Any]
) -> list[list[float | None]]:
    """The run's matrix of shared code positions between set A's and set B's genres (rows and
    columns in the figure's genre order); items missing from the run's vocabulary are left
    out."""
    vocab = vocab_ids(metrics["data"]["prepared_dir"])
    rows_a, rows_b = (
        [[vocab[r] for r in raw if r in vocab] for raw in sets[s].values()] for s in ("A", "B")
    )
    matrix = code_agreement(item_codes(cell.job.output_dir), rows_a, rows_b)
    return [[None if math.isnan(v) else round(float(v), 4) for v in row] for row in matrix]
