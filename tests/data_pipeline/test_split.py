import numpy as np
import pyarrow as pa
import pytest

from data_pipeline.schema import ID_COLUMNS
from data_pipeline.split import TEST, TRAIN, VALID, held_out, latest_rows


def _located(table: pa.Table, units: list[int] | None = None) -> pa.Table:
    n = table.num_rows
    unit = np.zeros(n, dtype=np.int64) if units is None else np.array(units, dtype=np.int64)
    return table.append_column("unit", pa.array(unit)).append_column(
        "row", pa.array(np.arange(n, dtype=np.int64))
    )


def _split_of(table: pa.Table) -> dict[tuple[int, int], int]:
    located = _located(table)
    held = held_out(latest_rows(located, ID_COLUMNS))
    split = np.full(table.num_rows, TRAIN)
    split[held["row"].to_numpy()] = held["split"].to_numpy()
    pairs = zip(table["user_id"].to_pylist(), table["item_id"].to_pylist(), strict=True)
    return {pair: int(s) for pair, s in zip(pairs, split, strict=True)}


def test_last_is_test_second_last_is_valid() -> None:
    table = pa.table(
        {"user_id": [1, 1, 1, 1], "item_id": [5, 6, 7, 8], "timestamp": [40, 10, 30, 20]}
    )
    assert _split_of(table) == {(1, 6): TRAIN, (1, 8): TRAIN, (1, 7): VALID, (1, 5): TEST}


def test_time_ties_are_broken_by_item_id() -> None:
    table = pa.table({"user_id": [2, 2, 2], "item_id": [9, 3, 4], "timestamp": [5, 5, 5]})
    assert _split_of(table) == {(2, 3): TRAIN, (2, 4): VALID, (2, 9): TEST}


def test_users_with_short_histories_stay_in_train() -> None:
    table = pa.table(
        {"user_id": [1, 1, 2, 2, 2], "item_id": [1, 2, 1, 2, 3], "timestamp": [1, 2, 1, 2, 3]}
    )
    splits = _split_of(table)
    assert splits[(1, 1)] == TRAIN and splits[(1, 2)] == TRAIN
    assert [splits[(2, i)] for i in (1, 2, 3)] == [TRAIN, VALID, TEST]


@pytest.mark.parametrize(("items", "keep"), [(20, 3), (20, 6), (10**9, 3)])
def test_latest_rows_of_parts_equal_latest_rows_of_the_whole(items: int, keep: int) -> None:
    # 20 items: users repeat items; 10**9: (almost) never.
    rng = np.random.default_rng(0)
    table = _located(
        pa.table(
            {
                "user_id": rng.integers(0, 50, 1000),
                "item_id": rng.integers(0, items, 1000),
                "timestamp": rng.integers(0, 30, 1000),
            }
        ),
        units=list(rng.integers(0, 4, 1000)),
    )
    parts = [latest_rows(table.slice(s, 250), ID_COLUMNS, keep) for s in range(0, 1000, 250)]
    whole = latest_rows(table, ID_COLUMNS, keep)
    assert latest_rows(pa.concat_tables(parts), ID_COLUMNS, keep).equals(whole)
    assert whole.group_by(["user_id", "item_id"]).aggregate([]).num_rows == whole.num_rows


def test_held_out_items_are_distinct_when_rows_repeat() -> None:
    # User 1 repeats item 4 at its latest time; user 2 has one item only, three times.
    table = pa.table(
        {
            "user_id": [1] * 5 + [2] * 3,
            "item_id": [4, 4, 4, 2, 1, 7, 7, 7],
            "timestamp": [9, 9, 9, 1, 2, 1, 2, 3],
        }
    )
    held = held_out(latest_rows(_located(table), ID_COLUMNS)).sort_by("split")
    assert held["user_id"].to_pylist() == [1, 1]
    assert held["item_id"].to_pylist() == [1, 4]  # valid, test
    assert held["split"].to_pylist() == [VALID, TEST]
    assert held["row"].to_pylist()[1] == 2  # ties by input position: the last copy is test
