import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from data_pipeline.synth import SynthSpec, generate_log

SPEC = SynthSpec(users=200, items=300, rows=9000, seed=3)


def test_shape_and_exact_row_count() -> None:
    table = generate_log(SPEC)
    assert table.num_rows == SPEC.rows
    assert pc.count_distinct(table["user_id"]).as_py() == SPEC.users
    assert pc.max(table["item_id"]).as_py() <= SPEC.items


def test_pairs_unique_and_every_user_has_the_minimum() -> None:
    table = generate_log(SPEC)
    keys = table["user_id"].to_numpy() * 10_000 + table["item_id"].to_numpy()
    assert len(np.unique(keys)) == table.num_rows
    per_user = np.bincount(table["user_id"].to_numpy())[1:]
    assert per_user.min() >= SPEC.min_per_user


def test_item_popularity_is_skewed() -> None:
    counts = np.sort(np.bincount(generate_log(SPEC)["item_id"].to_numpy()))[::-1]
    top_tenth = counts[: SPEC.items // 10].sum()
    assert top_tenth > 0.3 * counts.sum()  # uniform would give 10%


def test_same_seed_same_log() -> None:
    assert generate_log(SPEC).equals(generate_log(SPEC))


def test_impossible_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="min_per_user"):
        generate_log(SynthSpec(users=100, items=300, rows=100))


def _hit_rates(table: pa.Table, k: int = 10) -> tuple[float, float]:
    """HR@k of each user's last item, ranked by popularity and by a first-order Markov chain
    (counts of which item followed the user's previous one) fitted on the earlier items."""
    order = np.lexsort((table["timestamp"].to_numpy(), table["user_id"].to_numpy()))
    users, items = table["user_id"].to_numpy()[order], table["item_id"].to_numpy()[order]
    sequences = np.split(items, np.flatnonzero(np.diff(users)) + 1)
    size = int(items.max()) + 1
    follows, popularity = np.zeros((size, size)), np.zeros(size)
    for seq in sequences:
        np.add.at(follows, (seq[:-2], seq[1:-1]), 1)
        np.add.at(popularity, seq[:-1], 1)
    hits = np.zeros(2)
    for seq in sequences:
        for j, score in enumerate((popularity.copy(), follows[seq[-2]] + popularity / items.size)):
            score[seq[:-1]] = -np.inf
            hits[j] += seq[-1] in np.argsort(-score)[:k]
    return hits[0] / len(sequences), hits[1] / len(sequences)


def test_sequential_only_reorders_times_and_makes_next_items_predictable() -> None:
    spec = SynthSpec(users=1000, items=200, rows=30_000, seed=3)
    plain = generate_log(spec)
    ordered = generate_log(dataclasses.replace(spec, sequential=True))
    assert ordered.drop_columns(["timestamp"]).equals(plain.drop_columns(["timestamp"]))
    by_user = [("user_id", "ascending"), ("timestamp", "ascending")]
    assert ordered.sort_by(by_user)["timestamp"].equals(plain.sort_by(by_user)["timestamp"])
    popularity, markov = _hit_rates(ordered)
    plain_markov = _hit_rates(plain)[1]
    # Random times: the previous item tells nothing; ordered: it beats popularity clearly.
    assert markov > popularity + 0.05 and markov > plain_markov + 0.08
