"""Fig. 8's genres, draws and code agreement: SASRec item ids reach movies.dat through
sasrec_item_map.txt, never by their own value."""

from pathlib import Path

import numpy as np
import pytest
import torch

from mgqe_dist.config import DataConfig
from mgqe_dist.report.genres import GenreError, code_agreement, draw_sets, item_genres

GENRES = ("Sci-Fi", "Romance", "Animation", "Horror")
# movie id -> genres; SASRec item i is movie MAP[i], so item 1 (movie 30) is Horror although
# movie 1 is Sci-Fi.
MOVIES = {
    1: "Sci-Fi",
    2: "Romance",
    10: "Animation|Children's",
    20: "Comedy|Romance",
    30: "Horror",
    40: "Sci-Fi|Horror",
    50: "Drama",
}
MAP = {1: 30, 2: 10, 3: 1, 4: 20, 5: 40, 6: 50}


def _ml1m(root: Path, with_map: bool = True) -> dict:
    root.mkdir()
    (root / "ml-1m.txt").write_text("".join(f"1 {item}\n" for item in MAP))
    (root / "movies.dat").write_text(
        "".join(f"{movie}::Title {movie} (1999)::{genres}\n" for movie, genres in MOVIES.items()),
        encoding="latin-1",
    )
    if with_map:
        (root / "sasrec_item_map.txt").write_text(
            "".join(f"{item} {movie}\n" for item, movie in MAP.items())
        )
    return {"format": "sasrec", "location": str(root / "ml-1m.txt"), "synthetic": False}


def test_sasrec_items_get_their_movies_genres_through_the_map(tmp_path: Path) -> None:
    genres = item_genres(_ml1m(tmp_path / "ml-1m"), DataConfig(), GENRES)
    # Item 5 (Sci-Fi|Horror) has two of the genres and item 6 (Drama) none: both left out;
    # item 4 (Comedy|Romance) has exactly one of them.
    assert genres.genre_of == {1: 3, 2: 2, 3: 0, 4: 1}
    assert "sasrec_item_map.txt" in genres.origin


def test_movielens_ratings_ids_are_movie_ids(tmp_path: Path) -> None:
    origin = _ml1m(tmp_path / "ml-1m")
    origin = {**origin, "format": "movielens", "location": str(tmp_path / "ml-1m" / "ratings.dat")}
    assert item_genres(origin, DataConfig(), GENRES).genre_of == {1: 0, 2: 1, 10: 2, 20: 1, 30: 3}


def test_missing_item_map_is_named(tmp_path: Path) -> None:
    origin = _ml1m(tmp_path / "ml-1m", with_map=False)
    with pytest.raises(GenreError, match=r"sasrec_item_map\.txt not found"):
        item_genres(origin, DataConfig(), GENRES)


def test_draws_are_disjoint_and_split_a_short_genre_in_half() -> None:
    genre_of = {item: item % 2 for item in range(100)}  # 50 items of genre 0, 50 of genre 1
    genre_of.update({item: 2 for item in range(100, 107)})  # 7 of genre 2
    a, b = draw_sets(genre_of, sorted(genre_of), GENRES, per_genre=20, seed=0)
    assert [len(x) for x in a] == [len(x) for x in b] == [20, 20, 3, 0]
    for left, right, genre in zip(a, b, range(4), strict=True):
        assert not set(left) & set(right)
        assert all(genre_of[item] == genre for item in left + right)
    assert draw_sets(genre_of, sorted(genre_of), GENRES, 20, seed=0) == (a, b)


def test_code_agreement_counts_shared_positions_and_never_padding() -> None:
    codes = torch.tensor([[1, 2, -1], [1, 3, -1], [1, 2, 5], [4, 5, 6]])
    matrix = code_agreement(codes, rows_a=[[0], [3]], rows_b=[[1], [2]])
    # item 0 vs 1: position 0 only (padding never agrees); 0 vs 2: positions 0, 1.
    assert matrix[0].tolist() == [1.0, 2.0]
    assert matrix[1].tolist() == [0.0, 0.0]
    assert np.isnan(code_agreement(codes, [[0], []], [[1]])[1, 0])
