"""Item genres and trained item codes for the code-similarity figure (paper Fig. 8).

Genres come from MovieLens' movies.dat next to the job's ratings when it exists; otherwise
from the generated stand-in log's own genres (`synth.generate_genres`), and the report says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from data_pipeline.source import synth_spec
from data_pipeline.synth import generate_genres
from mgqe_dist.config import JobConfig
from mgqe_dist.serve.artifact import load_run


def genre_index(job: JobConfig, genres: tuple[str, ...]) -> tuple[np.ndarray, str]:
    """For every prepared item id, the index in `genres` of its genre, or -1 when it has none
    or several of them; and where the genres came from."""
    source = Path(job.data.source)
    movies = (source if source.is_dir() else source.parent) / "movies.dat"
    if movies.is_file():
        raw_ids, labels = _read_movies(movies, genres)
        origin = f"MovieLens {movies}"
    else:
        table = generate_genres(synth_spec(job.data))
        raw_ids = table["item_id"].to_numpy()
        labels = np.array(
            [genres.index(g) if g in genres else -1 for g in table["genre"].to_pylist()]
        )
        origin = "GENERATED stand-in genres of the generated log (movies.dat not found)"
    vocab = pq.read_table(Path(job.data.prepared_dir) / "vocab" / "item_id.parquet")
    by_raw = dict(zip(raw_ids.tolist(), labels.tolist(), strict=True))
    index = np.full(len(vocab), -1)
    for raw, new in zip(vocab["raw_id"].to_pylist(), vocab["id"].to_pylist(), strict=True):
        index[new] = by_raw.get(raw, -1)
    return index, origin


def _read_movies(path: Path, genres: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """movies.dat rows "id::title::Genre|Genre": ids and the index of their only chosen genre."""
    ids, labels = [], []
    for number, line in enumerate(path.read_text(encoding="latin-1").splitlines(), start=1):
        parts = line.split("::")
        if len(parts) != 3:
            raise ValueError(f"{path}:{number}: expected id::title::genres, got {line!r}")
        chosen = [genres.index(g) for g in parts[2].split("|") if g in genres]
        ids.append(int(parts[0]))
        labels.append(chosen[0] if len(chosen) == 1 else -1)
    return np.array(ids), np.array(labels)


def item_codes(run_dir: str | Path) -> torch.Tensor:
    """Codes of every item row of a finished run's item table: (items, positions)."""
    run = Path(run_dir)
    spec, _, model = load_run(run)
    table = spec["tables"]["items"]
    codes = getattr(model.items, "codes", None)
    if codes is None:
        raise ValueError(f"{run}: the {table['kind']} item table has no codes")
    result: torch.Tensor = codes(torch.arange(table["num_embeddings"]))
    return result
