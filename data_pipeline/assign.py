"""The last pass of prepare: per unit, tag each row's split, remap ids and write the parts.

Every unit writes `<split>.parquet/part-<unit>.parquet` for each split (and, when it drops rows:
bad rows under on_bad_rows = "drop", duplicates of held-out pairs (repeats.py), also
`quarantine.parquet/part-<unit>.parquet` with every column as text plus source file, row and
reason), so output names and contents do not depend on task order. Each unit returns its row
counts; the driver checks they add up to the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data_pipeline.repeats import DUPLICATE, HeldOut
from data_pipeline.schema import check_rows, normalize_ids
from data_pipeline.split import SPLITS, SplitRule
from data_pipeline.units import Unit, read_unit

QUARANTINE = "quarantine"
# Integer ids use a dense lookup table when the largest raw id is at most this many times the
# vocabulary size (plus slack); otherwise a hash lookup.
DENSE_LOOKUP_SPREAD = 4


class IdMap:
    """Raw id -> frequency-ranked id; ids not in the vocabulary map to the OOV id."""

    def __init__(self, raw_ids: pa.Array) -> None:
        self.oov = len(raw_ids)
        self._lookup: np.ndarray | None = None
        self._values: pa.Array | None = None
        if pa.types.is_integer(raw_ids.type) and len(raw_ids):
            raw = raw_ids.to_numpy()
            top = int(raw.max())
            if raw.min() >= 0 and top <= DENSE_LOOKUP_SPREAD * len(raw) + 1024:
                self._lookup = np.full(top + 1, self.oov, dtype=np.int64)
                self._lookup[raw] = np.arange(len(raw))
                return
        self._values = raw_ids

    def __call__(self, raw: pa.ChunkedArray) -> pa.Array:
        """New ids of `raw` (int64)."""
        if self._lookup is not None:
            values = raw.to_numpy()
            inside = values < len(self._lookup)
            return pa.array(np.where(inside, self._lookup[np.where(inside, values, 0)], self.oov))
        index = pc.index_in(raw, value_set=self._values)
        return pc.fill_null(pc.cast(index, pa.int64()), self.oov).combine_chunks()


@dataclass(frozen=True)
class AssignPlan:
    """What every unit needs from the passes before: held-out rows (leave-last-two-out; None
    under the random split), id maps, the split rule and the output directory."""

    out: str
    held: HeldOut | None
    id_maps: dict[str, IdMap]  # every id column (users, items, extra features)
    rule: SplitRule


def assign_unit(unit: Unit, plan: AssignPlan) -> dict[str, Any]:
    """Write one unit's rows to their splits (runs in a Ray task); returns its row counts."""
    id_columns = tuple(plan.id_maps)
    table = normalize_ids(
        read_unit(unit), id_columns, unit.shown_file, unit.first_row, unit.first_line
    )
    check = check_rows(table, unit.shown_file, unit.first_row, id_columns, unit.first_line)
    counts: dict[str, Any] = {"quarantined": 0, "reasons": {}, "oov_rows": {}}
    if plan.held is None:
        split = plan.rule.random_splits(table)
    else:
        split = plan.held.splits(unit, table.num_rows)
    reasons = _drop_reasons(table, check.reasons, split, plan.held)
    if reasons is not None:
        dropped = pc.is_valid(reasons)
        _quarantine(table, reasons, dropped, unit, plan)
        counts["quarantined"] = int(pc.sum(dropped).as_py())
        counts["reasons"] = {
            entry["values"]: entry["counts"]
            for entry in pc.value_counts(reasons.filter(dropped)).to_pylist()
        }
        kept = pc.invert(dropped)
        table, split = table.filter(kept), split[kept.to_numpy(zero_copy_only=False)]
    for column, id_map in plan.id_maps.items():
        index = table.schema.get_field_index(column)
        table = table.set_column(index, column, id_map(table[column]))
    for code, name in enumerate(SPLITS):
        part = table.filter(pa.array(split == code))
        _write(part, Path(plan.out, f"{name}.parquet"), unit)
        counts[name] = part.num_rows
        counts["oov_rows"][name] = {
            c: int(pc.sum(pc.equal(part[c], m.oov)).as_py() or 0) for c, m in plan.id_maps.items()
        }
    return counts


def _drop_reasons(
    table: pa.Table, bad: pa.Array | None, split: np.ndarray, held: HeldOut | None
) -> pa.Array | None:
    """Why each row is left out of the splits (null: it is not), or None when none is: bad
    rows (only under on_bad_rows = "drop": "error" stopped after pass 1) and duplicates."""
    good = np.ones(table.num_rows, dtype=bool)
    if bad is not None:
        good = pc.is_null(bad).to_numpy(zero_copy_only=False)
    duplicate = np.zeros(table.num_rows, dtype=bool)
    if held is not None:
        duplicate = held.duplicates(table, split, good)
    if not duplicate.any():
        return bad
    if bad is None:
        bad = pa.nulls(table.num_rows, pa.string())
    return pc.if_else(pa.array(duplicate), DUPLICATE, bad)


def _quarantine(
    table: pa.Table, reasons: pa.Array, bad: pa.Array, unit: Unit, plan: AssignPlan
) -> None:
    rows = table.filter(bad)
    text = pa.table({name: rows[name].cast(pa.string()) for name in rows.column_names})
    where = np.flatnonzero(bad.to_numpy(zero_copy_only=False)) + unit.first_row
    text = (
        text.append_column("source_file", pa.array([unit.shown_file] * len(where)))
        .append_column("source_row", pa.array(where, pa.int64()))
        .append_column("reason", reasons.filter(bad))
    )
    _write(text, Path(plan.out, f"{QUARANTINE}.parquet"), unit)


def _write(table: pa.Table, directory: Path, unit: Unit) -> None:
    directory.mkdir(exist_ok=True)
    pq.write_table(table, directory / f"part-{unit.index:06d}.parquet")
