"""Fig. 8's inputs: the genre of each item, two disjoint draws of items per genre, and how many
code positions trained item tables share between the draws (paper Fig. 8).

Genres come from MovieLens' movies.dat (latin-1, `MovieID::Title::Genre|Genre`), whose ids are
MovieLens movie ids. A log prepared from MovieLens' ratings.dat uses those ids as item ids;
SASRec's ml-1m.txt uses its own item ids, joined to movie ids through the
`sasrec_item_map.txt` next to it (`sasrec_item_id movie_id` per line). A generated log has
stand-in genres of its own (`synth.generate_genres`), and the report says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from data_pipeline.source import synth_spec
from data_pipeline.synth import generate_genres
from mgqe_dist.config import DataConfig
from mgqe_dist.serve.artifact import load_run

MOVIES_FILE, SASREC_ITEM_MAP = "movies.dat", "sasrec_item_map.txt"


class GenreError(ValueError):
    """The genres of a run's items cannot be found; the message says which file is missing."""


@dataclass(frozen=True)
class ItemGenres:
    """Raw item id -> index into the figure's genres, for items with exactly one of them."""

    genre_of: dict[int, int]
    origin: str  # where the genres came from, for the report


def item_genres(origin: Mapping[str, Any], data: DataConfig, genres: Sequence[str]) -> ItemGenres:
    """The genres of the items of a log, given its prepared origin (stats.json `origin`: format,
    location, synthetic). An item counts for a genre when that genre is the only one of
    `genres` it has (it may have others, e.g. Comedy|Romance is a Romance item)."""
    location = Path(origin["location"])
    if origin.get("synthetic"):
        table = generate_genres(synth_spec(data))
        labels = [[g] for g in table["genre"].to_pylist()]
        return ItemGenres(
            _only_genre(table["item_id"].to_pylist(), labels, genres),
            "GENERATED stand-in genres of the generated log (not MovieLens genres)",
        )
    if origin["format"] == "movielens":
        movies = read_movies(location.parent / MOVIES_FILE)
        return ItemGenres(
            _only_genre(list(movies), list(movies.values()), genres),
            f"MovieLens `{location.parent / MOVIES_FILE}` (item ids are movie ids)",
        )
    if origin["format"] == "sasrec":
        movies = read_movies(location.parent / MOVIES_FILE)
        item_map = read_sasrec_item_map(location.parent / SASREC_ITEM_MAP)
        unknown = sorted(movie for movie in item_map.values() if movie not in movies)
        if unknown:
            raise GenreError(
                f"{location.parent / SASREC_ITEM_MAP} maps items to movie ids that "
                f"{MOVIES_FILE} does not have, e.g. {unknown[:5]}"
            )
        items = sorted(item_map)
        return ItemGenres(
            _only_genre(items, [movies[item_map[i]] for i in items], genres),
            f"MovieLens `{location.parent / MOVIES_FILE}`, joined to {location.name}'s item ids "
            f"through `{SASREC_ITEM_MAP}`",
        )
    raise GenreError(f"no genres are known for a {origin['format']} log ({location})")


def read_movies(path: Path) -> dict[int, list[str]]:
    """movies.dat: movie id -> its genres."""
    if not path.is_file():
        raise GenreError(f"{path} not found: the figure needs MovieLens genres")
    movies = {}
    for number, line in enumerate(path.read_text(encoding="latin-1").splitlines(), start=1):
        parts = line.split("::")
        if len(parts) != 3:
            raise GenreError(f"{path}:{number}: expected id::title::genres, got {line!r}")
        movies[int(parts[0])] = parts[2].split("|")
    return movies


def read_sasrec_item_map(path: Path) -> dict[int, int]:
    """sasrec_item_map.txt: SASRec item id -> MovieLens movie id."""
    if not path.is_file():
        raise GenreError(f"{path} not found: SASRec item ids cannot be joined to movies.dat")
    mapping = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise GenreError(f"{path}:{number}: expected `sasrec_item_id movie_id`, got {line!r}")
        mapping[int(parts[0])] = int(parts[1])
    return mapping


def _only_genre(
    items: Sequence[int], labels: Sequence[Sequence[str]], genres: Sequence[str]
) -> dict[int, int]:
    chosen = {
        item: [genres.index(g) for g in item_labels if g in genres]
        for item, item_labels in zip(items, labels, strict=True)
    }
    return {item: found[0] for item, found in chosen.items() if len(found) == 1}


def vocab_ids(prepared_dir: str | Path) -> dict[int, int]:
    """A prepared dataset's item vocabulary: raw item id -> model id."""
    vocab = pq.read_table(Path(prepared_dir) / "vocab" / "item_id.parquet")
    return dict(zip(vocab["raw_id"].to_pylist(), vocab["id"].to_pylist(), strict=True))


def draw_sets(
    genre_of: Mapping[int, int],
    items: Sequence[int],
    genres: Sequence[str],
    per_genre: int,
    seed: int,
) -> tuple[list[list[int]], list[list[int]]]:
    """Two disjoint random draws (A, B) of `per_genre` items of each genre among `items`, as
    raw ids per genre. A genre with fewer than 2 x per_genre items gives each set half of
    them (the odd one left out)."""
    rng = np.random.default_rng(seed)
    sets_a, sets_b = [], []
    for index in range(len(genres)):
        pool = np.array(sorted(i for i in items if genre_of.get(i) == index), dtype=np.int64)
        pool = rng.permutation(pool)
        take = min(per_genre, len(pool) // 2)
        sets_a.append(pool[:take].tolist())
        sets_b.append(pool[take : 2 * take].tolist())
    return sets_a, sets_b


def code_agreement(
    codes: torch.Tensor, rows_a: Sequence[Sequence[int]], rows_b: Sequence[Sequence[int]]
) -> np.ndarray:
    """(G, G): entry (a, b) is the mean, over pairs of an item of genre a in set A and an item
    of genre b in set B, of the number of code positions (0..D) on which both items use the
    same code (the same centroid, or SQ level). Padding (-1, tiers with fewer positions) never
    agrees."""
    matrix = np.full((len(rows_a), len(rows_b)), np.nan)
    for a, left in enumerate(rows_a):
        for b, right in enumerate(rows_b):
            if not len(left) or not len(right):
                continue
            x = codes[torch.as_tensor(list(left))][:, None, :]
            y = codes[torch.as_tensor(list(right))][None, :, :]
            same = ((x == y) & (x >= 0)).sum(dim=2)
            matrix[a, b] = float(same.double().mean())
    return matrix


def item_codes(run_dir: str | Path) -> torch.Tensor:
    """Codes of every item row of a finished run's item table: (items, positions)."""
    run = Path(run_dir)
    spec, _, model = load_run(run)
    table = spec["tables"]["items"]
    codes = getattr(model.items, "codes", None)
    if codes is None:
        raise GenreError(f"{run}: the {table['kind']} item table has no codes")
    with torch.no_grad():
        result: torch.Tensor = codes(torch.arange(table["num_embeddings"]))
    return result
