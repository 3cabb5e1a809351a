"""Splits. Leave-last-two-out: per user, the latest interaction is test, the one before valid.
Random (for rating regression): each row independently by (train, valid, test) fractions.

Held-out rows are each user's latest two distinct items, each at its latest row: a user who
repeats an item (or whose rows are duplicated) still gets a valid item that differs from the
test item. Every other row of a held-out (user, item) pair leaves training too (repeats.py).
Time ties are broken by raw item id, then by input position (unit, row), so the split is
deterministic. Only each user's latest few distinct items matter, so they are found without
moving rows: every unit keeps its users' latest distinct items, the driver merges those (size
bounded by the number of users) and tags held-out rows by position. Users with fewer than three
distinct items keep all their rows in train (they cannot be evaluated without leaving the model
nothing of them to learn from); stats.json counts them.

The random split draws each row's split from a hash of (seed, user, item): every row of a
(user, item) pair lands in the same split, so no pair is both trained on and held out, and the
split is the same in both passes however the files are cut into units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SPLITS = ("train", "valid", "test")
TRAIN, VALID, TEST = range(3)
# Distinct items a user needs to be evaluated: test, valid and at least one to train on.
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
        """Latest distinct items per user that pass 1 must keep: enough to tell whether a user
        has MIN_EVAL_HISTORY of them, and the sequence after the two held-out ones."""
        if self.kind == "random":
            return 0
        return max(MIN_EVAL_HISTORY, 2 + self.sequence_length)

    def random_splits(self, table: pa.Table) -> np.ndarray:
        """TRAIN/VALID/TEST of each row of `table` (raw ids), from a hash of (seed, user,
        item)."""
        seed = _mix(np.array([self.seed], dtype=np.uint64))
        draws = _uniform(_mix(_id_keys(table["user_id"]) ^ seed) ^ _id_keys(table["item_id"]))
        edges = np.cumsum(self.fractions[:2])
        return np.searchsorted(edges, draws, side="right").astype(np.int8)


def _id_keys(ids: pa.ChunkedArray) -> np.ndarray:
    """A uint64 key per id: an integer id itself, a string id's hash (pandas' SipHash with its
    fixed key, so the same in every process). Nulls (bad rows, never used) get a key too."""
    if pa.types.is_integer(ids.type):
        return pc.fill_null(ids, 0).to_numpy().astype(np.uint64)
    import pandas as pd  # here, not above: its import takes most of a second in every task

    text = pc.fill_null(ids, "").to_numpy(zero_copy_only=False)
    return pd.util.hash_array(text, categorize=False)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective scramble of 64-bit keys."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _uniform(keys: np.ndarray) -> np.ndarray:
    """One uniform [0, 1) draw per key."""
    return (_mix(keys) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def latest_rows(
    candidates: pa.Table, id_columns: tuple[str, ...], keep: int = MIN_EVAL_HISTORY
) -> pa.Table:
    """Each user's `keep` latest distinct items, each at its latest row (order and id columns),
    latest first, users ascending. Merging the latest rows of parts gives those of the whole.

    A user whose `keep` latest rows hold distinct items needs nothing more; only the users
    with a repeat among them (few, in most logs) are searched through all their rows."""
    extra = [c for c in id_columns if c not in ("user_id", *ORDER_COLUMNS)]
    ordered = _latest_first(candidates.select(["user_id", *ORDER_COLUMNS, *extra]))
    head = ordered.filter(pa.array(positions_in_groups(ordered["user_id"]) < keep))
    by_pair, latest = _by_pair(head)
    repeating = pc.unique(by_pair.filter(pa.array(~latest))["user_id"])
    if not len(repeating):
        return head
    clean = head.filter(pc.invert(pc.is_in(head["user_id"], value_set=repeating)))
    deep, latest = _by_pair(ordered.filter(pc.is_in(ordered["user_id"], value_set=repeating)))
    merged = _latest_first(pa.concat_tables([clean, deep.filter(pa.array(latest))]))
    return merged.filter(pa.array(positions_in_groups(merged["user_id"]) < keep))


def _by_pair(table: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """`table` sorted by (user, item), latest first within a pair, and which rows are the
    latest of their pair."""
    by_pair = table.sort_by(
        [("user_id", "ascending"), ("item_id", "ascending")]
        + [(c, "descending") for c in ORDER_COLUMNS if c != "item_id"]
    )
    return by_pair, positions_in_groups(by_pair["user_id"], by_pair["item_id"]) == 0


def _latest_first(table: pa.Table) -> pa.Table:
    return table.sort_by([("user_id", "ascending"), *((c, "descending") for c in ORDER_COLUMNS)])


def positions_in_groups(*keys: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """0, 1, 2, ... within each run of consecutive rows equal in every key."""
    columns = [k.combine_chunks() if isinstance(k, pa.ChunkedArray) else k for k in keys]
    n = len(columns[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    new_group = np.zeros(n, dtype=bool)
    new_group[0] = True
    for column in columns:
        new_group[1:] |= pc.not_equal(column[1:], column[:-1]).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(new_group)
    return np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))


def held_out(latest: pa.Table) -> pa.Table:
    """Rows (unit, row, split and their id columns) that leave training: for every user with
    at least MIN_EVAL_HISTORY distinct items, the latest is test, the one before valid.
    `latest` is latest_rows' result, with at least MIN_EVAL_HISTORY items kept per user."""
    ordered, position, evaluable = _with_positions(latest)
    split = np.where(position == 0, TEST, VALID).astype(np.int8)
    return (
        ordered.drop_columns(["timestamp"])
        .append_column("split", pa.array(split))
        .filter(pa.array(evaluable & (position < 2)))
        .sort_by([("unit", "ascending"), ("row", "ascending")])
    )


def train_sequences(latest: pa.Table, length: int) -> pa.Table:
    """Per user, the `length` latest distinct training items, oldest first (SASRec's input):
    columns user_id and items (list), raw ids. `latest` must hold each user's length + 2
    latest distinct items."""
    ordered, position, evaluable = _with_positions(latest)
    first_train = np.where(evaluable, 2, 0)
    keep = (position >= first_train) & (position < first_train + length)
    rows = ordered.filter(pa.array(keep)).select(["user_id", "item_id"])
    rows = rows.append_column("order", pa.array(-np.flatnonzero(keep)))  # oldest first
    grouped = rows.sort_by([("user_id", "ascending"), ("order", "ascending")])
    return (
        grouped.group_by("user_id", use_threads=False)
        .aggregate([("item_id", "list")])
        .rename_columns(["user_id", "items"])
    )


def _with_positions(latest: pa.Table) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """`latest` latest first; each row's position from its user's latest (0 = latest) and
    whether its user has MIN_EVAL_HISTORY distinct items (and so is evaluated)."""
    ordered = _latest_first(latest)
    position = positions_in_groups(ordered["user_id"])
    starts = np.flatnonzero(position == 0)
    items_per_user = np.diff(np.r_[starts, len(position)])
    evaluable = np.repeat(items_per_user, items_per_user) >= MIN_EVAL_HISTORY
    return ordered, position, evaluable
