"""The duplicate policy of the leave-last-two-out split: a (user, item) pair is held out or
trained on, never both.

A log may hold one (user, item) pair in several rows: exact duplicates (a file read twice) or
repeated interactions. The held-out rows are each user's latest two distinct items (split.py),
and every other row of a held-out pair is dropped with the reason "duplicate" (written to
quarantine.parquet, counted in stats.json `dropped`): kept in training, it would show the model
the very interaction it is tested on, and ranking would treat the target as already seen.
Repeats of pairs that stay in training are kept, each one a training positive: finding every
repeat would take memory per distinct pair, where this takes memory per user.

Vocabularies rank ids by their training rows, so these rows are counted before any id is
remapped: `count_repeats` runs over every unit between the summary pass and the writing pass,
and `assign_unit` drops the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data_pipeline.scan import count_ids
from data_pipeline.schema import TIME_COLUMN, check_rows, normalize_ids
from data_pipeline.split import TEST, TRAIN, VALID
from data_pipeline.units import Unit, read_unit

DUPLICATE = "duplicate"


@dataclass(frozen=True)
class HeldOut:
    """Where the held-out rows are, and each evaluated user's two held-out items."""

    unit: np.ndarray  # unit index of every held-out row, sorted
    row: np.ndarray  # its row in the unit
    split: np.ndarray  # VALID or TEST
    users: pa.Array  # raw ids of the evaluated users, sorted
    test_items: pa.Array  # raw test item of each of `users`
    valid_items: pa.Array  # raw valid item of each of `users`

    @classmethod
    def of(cls, held: pa.Table) -> HeldOut:
        """From split.held_out's rows: one test and one valid row per evaluated user."""
        items = {}
        for code in (TEST, VALID):
            rows = held.filter(pc.equal(held["split"], code)).sort_by("user_id")
            items[code] = rows["item_id"].combine_chunks()
        users = held.filter(pc.equal(held["split"], TEST)).sort_by("user_id")["user_id"]
        return cls(
            unit=held["unit"].to_numpy(),
            row=held["row"].to_numpy(),
            split=held["split"].to_numpy(),
            users=users.combine_chunks(),
            test_items=items[TEST],
            valid_items=items[VALID],
        )

    def splits(self, unit: Unit, num_rows: int) -> np.ndarray:
        """TRAIN, VALID or TEST of each of the unit's rows."""
        split = np.full(num_rows, TRAIN, dtype=np.int8)
        lo, hi = np.searchsorted(self.unit, [unit.index, unit.index + 1])
        split[self.row[lo:hi]] = self.split[lo:hi]
        return split

    def duplicates(self, table: pa.Table, split: np.ndarray, good: np.ndarray) -> np.ndarray:
        """Good training rows of `table` (raw ids) whose (user, item) pair is held out."""
        index = pc.index_in(table["user_id"], value_set=self.users).combine_chunks()
        evaluated = pc.is_valid(index).to_numpy(zero_copy_only=False)
        keep = pa.array(evaluated)
        index, items = index.filter(keep), table["item_id"].combine_chunks().filter(keep)
        held = pc.or_(
            pc.equal(items, self.test_items.take(index)),
            pc.equal(items, self.valid_items.take(index)),
        )
        repeats = np.zeros(table.num_rows, dtype=bool)
        repeats[evaluated] = pc.fill_null(held, False).to_numpy(zero_copy_only=False)
        return repeats & good & (split == TRAIN)


def count_repeats(
    unit: Unit, held: HeldOut, id_columns: tuple[str, ...], has_bad_rows: bool
) -> dict[str, pa.Table]:
    """Per id column, (column, count) of the unit's rows that assign_unit drops as duplicates
    (runs in a Ray task). Bad rows are quarantined for their own reason, so they are told
    apart here too, unless pass 1 found none (then the timestamp is not read)."""
    columns = list(id_columns)
    if has_bad_rows and TIME_COLUMN in pq.ParquetFile(unit.file).schema_arrow.names:
        columns.append(TIME_COLUMN)
    table = normalize_ids(
        read_unit(unit, columns), id_columns, unit.shown_file, unit.first_row, unit.first_line
    )
    good = np.ones(table.num_rows, dtype=bool)
    if has_bad_rows:
        reasons = check_rows(
            table, unit.shown_file, unit.first_row, id_columns, unit.first_line
        ).reasons
        if reasons is not None:
            good = pc.is_null(reasons).to_numpy(zero_copy_only=False)
    split = held.splits(unit, table.num_rows)
    dropped = table.filter(pa.array(held.duplicates(table, split, good)))
    return {column: count_ids(dropped, column) for column in id_columns}
