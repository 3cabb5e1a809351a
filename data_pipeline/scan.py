"""Pass 1 of prepare: per unit, check rows and aggregate what the split and vocabularies need.

A unit's summary is its bad-row problems, its users' latest distinct items (three, or two plus
the sequence length when SASRec sequences are written) and its counts per id column; the driver
merges summaries as they stream in, so its memory follows the number of distinct ids, never the
number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data_pipeline.schema import TIME_COLUMN, check_rows, normalize_ids
from data_pipeline.split import TRAIN, SplitRule, latest_rows
from data_pipeline.units import Unit, read_unit

# Pending summary rows folded in at once, at least (bounds driver memory at ~100s of MB while
# keeping the number of re-groupings of the merged state small).
FOLD_MIN_ROWS = 1 << 23


@dataclass
class Summary:
    """What pass 1 knows about some rows: counts per id and each user's latest distinct items."""

    # Each user's latest distinct items at their latest rows (split.latest_rows): user_id,
    # timestamp, item_id, unit, row, extras.
    latest: pa.Table
    counts: dict[str, pa.Table]  # id column -> (column, count)
    problems: list[dict[str, Any]] = field(default_factory=list)


def scan_unit(unit: Unit, id_columns: tuple[str, ...], rule: SplitRule) -> Summary:
    """Check one unit's rows and summarise its good ones (runs in a Ray task). Under a random
    split only training rows are counted; otherwise all rows are, and each user's latest
    distinct items are kept for the driver to pick the held-out ones."""
    names = pq.ParquetFile(unit.file).schema_arrow.names
    columns = [*id_columns, TIME_COLUMN] if TIME_COLUMN in names else list(id_columns)
    table = normalize_ids(
        read_unit(unit, columns), id_columns, unit.shown_file, unit.first_row, unit.first_line
    )
    check = check_rows(table, unit.shown_file, unit.first_row, id_columns, unit.first_line)
    n = table.num_rows
    if TIME_COLUMN not in names:  # only under the random split, which ignores time
        table = table.append_column(TIME_COLUMN, pa.array(np.zeros(n, dtype=np.int64)))
    table = table.append_column("unit", pa.array(np.full(n, unit.index, dtype=np.int64)))
    table = table.append_column("row", pa.array(np.arange(n, dtype=np.int64)))
    counted = np.ones(n, dtype=bool)
    if check.reasons is not None:
        counted &= pc.is_null(check.reasons).to_numpy(zero_copy_only=False)
    if rule.kind == "random":
        counted &= rule.random_splits(table) == TRAIN
    table = table.filter(pa.array(counted))
    return Summary(
        latest=latest_rows(table, id_columns, rule.keep),
        counts={column: count_ids(table, column) for column in id_columns},
        problems=check.problems,
    )


def count_ids(table: pa.Table, column: str) -> pa.Table:
    """(column, count) per distinct value."""
    return table.group_by(column).aggregate([([], "count_all")]).rename_columns([column, "count"])


class SummaryMerger:
    """Merges unit summaries as they arrive; pending ones are folded in once they outgrow the
    merged state, so each row of state is re-merged O(log units) times."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._merged: Summary | None = None
        self._pending: list[Summary] = []
        self._pending_rows = 0

    def add(self, summary: Summary) -> None:
        """Take one unit's summary."""
        self._pending.append(summary)
        self._pending_rows += summary.latest.num_rows + sum(
            t.num_rows for t in summary.counts.values()
        )
        merged_rows = 0 if self._merged is None else self._merged.latest.num_rows
        if self._pending_rows >= max(merged_rows, FOLD_MIN_ROWS):
            self._fold()

    def result(self) -> Summary:
        """The summary of every unit added."""
        self._fold()
        assert self._merged is not None, "no summaries were added"
        return self._merged

    def _fold(self) -> None:
        parts = self._pending + ([self._merged] if self._merged is not None else [])
        if not parts:
            return
        columns = tuple(parts[0].counts)
        self._merged = Summary(
            latest=latest_rows(pa.concat_tables([p.latest for p in parts]), columns, self._keep),
            counts={c: sum_counts([p.counts[c] for p in parts], c) for c in columns},
            problems=[problem for p in parts for problem in p.problems],
        )
        self._pending, self._pending_rows = [], 0


def sum_counts(tables: list[pa.Table], column: str) -> pa.Table:
    """One (column, count) table from several, counts of the same id added up."""
    return (
        pa.concat_tables(tables)
        .group_by(column)
        .aggregate([("count", "sum")])
        .rename_columns([column, "count"])
    )
