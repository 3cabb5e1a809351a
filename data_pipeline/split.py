"""Splits. Leave-last-two-out: per user, the latest interaction is test, the one before valid.
Random (for rating regression): each row independently by (train, valid, test) fractions.

Time ties are broken by raw item id, then by input position (unit, row), so the split is
deterministic and exact duplicates still give one test row. Only each user's latest two rows
matter, so they are found without moving rows: every unit keeps its users' latest two, the
driver merges those (size bounded by the number of users) and tags held-out rows by position.
Users with fewer than three interactions keep all of them in train (they cannot be evaluated
without leaving the model nothing to learn from).

The random split draws each row's split from a hash of (seed, file, row in file), so it is the
same in both passes and however the files are cut into units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_pipeline.units import Unit

SPLITS = ("train", "valid", "test")
TRAIN, VALID, TEST = range(3)
MIN_EVAL_HISTORY = 3
# Columns that order a user's rows (latest last) and locate a row in the input.
ORDER_COLUMNS = ("timestamp", "item_id", "unit", "row")


@dataclass(frozen=True)
class SplitRule:
    """How rows are split: by time per user ("leave_last_two_out", optionally keeping each
    user's `sequence_length` latest training items), or "random" by `fractions`."""

    kind: str = "leave_last_two_out"
    fractions: tuple[float, ...] = (0.9, 0.0, 0.1)  # train, valid, test (random only)
    seed: int = 0
    sequence_length: int = 0

    @property
    def keep(self) -> int:
        """Latest rows per user that pass 1 must keep."""
        return 0 if self.kind == "random" else 2 + self.sequence_length

    def random_splits(self, unit: Unit, num_rows: int) -> np.ndarray:
        """TRAIN/VALID/TEST of each of the unit's rows, from a hash of (seed, file, file row)."""
        rows = np.arange(unit.first_row, unit.first_row + num_rows, dtype=np.uint64)
        keys = rows | np.uint64(unit.file_index) << np.uint64(40)
        draws = _uniform(keys ^ _mix(np.array([self.seed], dtype=np.uint64)))
        edges = np.cumsum(self.fractions[:2])
        return np.searchsorted(edges, draws, side="right").astype(np.int8)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective scramble of 64-bit keys."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _uniform(keys: np.ndarray) -> np.ndarray:
    """One uniform [0, 1) draw per key."""
    return (_mix(keys) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def latest_rows(candidates: pa.Table, id_columns: tuple[str, ...], keep: int = 2) -> pa.Table:
    """Each user's `keep` latest rows (order and id columns), latest first, users ascending."""
    extra = [c for c in id_columns if c not in ("user_id", *ORDER_COLUMNS)]
    ordered = _latest_first(candidates.select(["user_id", *ORDER_COLUMNS, *extra]))
    return ordered.filter(positions_in_groups(ordered["user_id"]) < keep)


def _latest_first(table: pa.Table) -> pa.Table:
    return table.sort_by([("user_id", "ascending"), *((c, "descending") for c in ORDER_COLUMNS)])


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
    joined, position, evaluable = _with_positions(latest, user_counts)
    split = np.where(position == 0, TEST, VALID).astype(np.int8)
    return (
        joined.drop_columns(["timestamp", "user_rows"])
        .append_column("split", pa.array(split))
        .filter(pa.array(evaluable & (position < 2)))
        .sort_by([("unit", "ascending"), ("row", "ascending")])
    )


def train_sequences(latest: pa.Table, user_counts: pa.Table, length: int) -> pa.Table:
    """Per user, the `length` latest training items, oldest first (SASRec's input): columns
    user_id and items (list), raw ids. `latest` must hold each user's length + 2 latest rows."""
    joined, position, evaluable = _with_positions(latest, user_counts)
    first_train = np.where(evaluable, 2, 0)
    keep = (position >= first_train) & (position < first_train + length)
    rows = joined.filter(pa.array(keep)).select(["user_id", "item_id"])
    rows = rows.append_column("order", pa.array(-np.flatnonzero(keep)))  # oldest first
    grouped = rows.sort_by([("user_id", "ascending"), ("order", "ascending")])
    return (
        grouped.group_by("user_id", use_threads=False)
        .aggregate([("item_id", "list")])
        .rename_columns(["user_id", "items"])
    )


def _with_positions(
    latest: pa.Table, user_counts: pa.Table
) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """`latest` with each user's row count, latest first; each row's position from the user's
    latest (0 = latest) and whether its user is evaluated."""
    counts = user_counts.rename_columns(["user_id", "user_rows"])
    joined = _latest_first(latest.join(counts, "user_id"))
    position = positions_in_groups(joined["user_id"])
    return joined, position, joined["user_rows"].to_numpy() >= MIN_EVAL_HISTORY
