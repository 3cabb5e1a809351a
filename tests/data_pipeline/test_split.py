import pyarrow as pa

from data_pipeline.split import TEST, TRAIN, VALID, leave_last_two_out


def _split_of(table: pa.Table) -> dict[tuple[int, int], int]:
    out = leave_last_two_out(table)
    return {
        (u, i): s
        for u, i, s in zip(
            out["user_id"].to_pylist(),
            out["item_id"].to_pylist(),
            out["split"].to_pylist(),
            strict=True,
        )
    }


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


def test_extra_columns_are_carried_through() -> None:
    table = pa.table({"user_id": [1], "item_id": [1], "timestamp": [1], "genre": ["x"]})
    assert leave_last_two_out(table)["genre"].to_pylist() == ["x"]
