"""Leave-last-two-out split: per user, the latest interaction is test, the one before valid.

Time ties are broken by raw item id, then by input position (unit, row), so the split is
deterministic and exact duplicates still give one test row. Only each user's latest two rows
matter, so they are found without moving rows: every unit keeps its users' latest two, the
driver merges those (size bounded by the number of users) and tags held-out rows by position.
Users with fewer than three interactions keep all of them in train (they cannot be evaluated
without leaving the model nothing to learn from).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SPLITS = ("train", "valid", "test")
TRAIN, VALID, TEST = range(3)
MIN_EVAL_HISTORY = 3
# Columns that order a user's rows (latest last) and locate a row in the input.
ORDER_COLUMNS = ("timestamp", "item_id", "unit", "row")


def latest_two(candidates: pa.Table, id_columns: tuple[str, ...]) -> pa.Table:
    """Each user's two latest rows (order and id columns), latest first, users ascending."""
    extra = [c for c in id_columns if c not in ("user_id", *ORDER_COLUMNS)]
    ordered = candidates.select(["user_id", *ORDER_COLUMNS, *extra]).sort_by(
        [("user_id", "ascending"), *((c, "descending") for c in ORDER_COLUMNS)]
    )
    return ordered.filter(positions_in_groups(ordered["user_id"]) < 2)


def positions_in_groups(keys: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """0, 1, 2, ... within each run of equal consecutive keys."""
    keys = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = pc.not_equal(keys[1:], keys[:-1]).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(new_group)
    return np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))


def held_out(latest: pa.Table, user_counts: pa.Table) -> pa.Table:
    """Rows (unit, row, split and their id columns) that leave training: the latest row of
    every user with at least MIN_EVAL_HISTORY rows is test, the one before valid."""
    counts = user_counts.rename_columns(["user_id", "user_rows"])
    joined = latest.join(counts, "user_id").sort_by(
        [("user_id", "ascending"), *((c, "descending") for c in ORDER_COLUMNS)]
    )
    position = positions_in_groups(joined["user_id"])
    evaluable = joined["user_rows"].to_numpy() >= MIN_EVAL_HISTORY
    split = np.where(position == 0, TEST, VALID).astype(np.int8)
    return (
        joined.drop_columns(["timestamp", "user_rows"])
        .append_column("split", pa.array(split))
        .filter(pa.array(evaluable))
        .sort_by([("unit", "ascending"), ("row", "ascending")])
    )
