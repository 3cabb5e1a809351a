import numpy as np
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
