"""The interaction-log contract and its checks: file-level (schema, emptiness) and row-level.

Row checks run per unit inside Ray tasks and return a per-row reason plus small problem records,
so the driver learns which file, column, how many and which rows are bad without the rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ID_COLUMNS = ("user_id", "item_id")
TIME_COLUMN = "timestamp"
# How many offending rows an error message or problem record shows.
FIRST_ROWS = 5
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Origin:
    """Where a converted Parquet file's rows come from: the user's file (CSV/TSV, MovieLens),
    whose rows it holds in order, one line each, row 0 on `first_line` (see rows_text)."""

    file: str
    first_line: int


class ValidationError(ValueError):
    """Input violates the interaction-log contract; the message names file, column and rows."""


def check_files(
    files: list[Path],
    id_columns: tuple[str, ...] = ID_COLUMNS,
    allow_empty: bool = False,
    need_time: bool = True,
    shown: Mapping[Path, str] | None = None,
) -> tuple[int, list[str]]:
    """Check every file's schema without reading rows: readable footer, the id columns (users,
    items, extra categorical features) and timestamp (unless not `need_time` and absent) with
    the contract's types, the same columns and id kinds in every file, rows unless
    `allow_empty`. Returns the total row count and the empty files. Messages name a file as
    `shown` does (the user's file behind a converted one), else by its path."""
    if not files:
        raise ValidationError("no Parquet files found in the input")
    total, empty = 0, []
    first: tuple[str, pa.Schema] | None = None
    for file in files:
        name = (shown or {}).get(file, str(file))
        try:
            meta = pq.read_metadata(file)
        except (OSError, pa.ArrowInvalid) as exc:
            raise ValidationError(f"{name}: not a readable Parquet file ({exc})") from exc
        if meta.num_rows == 0:
            if not allow_empty:
                raise ValidationError(
                    f'{name}: file has no rows (data.on_bad_rows = "drop" skips empty files)'
                )
            empty.append(name)
        schema = meta.schema.to_arrow_schema()
        _check_schema(name, schema, id_columns, need_time)
        if first is None:
            first = (name, schema)
        else:
            _check_same_shape(first, (name, schema), id_columns)
        total += meta.num_rows
    return total, empty


def _check_schema(
    file: str, schema: pa.Schema, id_columns: tuple[str, ...], need_time: bool
) -> None:
    for column in (*id_columns, TIME_COLUMN) if need_time else id_columns:
        if column not in schema.names:
            raise ValidationError(f"{file}: missing column {column!r} (has {schema.names})")
    for column in id_columns:
        kind = schema.field(column).type
        if id_kind(kind) is None:
            raise ValidationError(
                f"{file}: column {column!r} has type {kind}, expected int64 or string"
            )
    if TIME_COLUMN in schema.names and not pa.types.is_integer(schema.field(TIME_COLUMN).type):
        raise ValidationError(
            f"{file}: column 'timestamp' has type {schema.field('timestamp').type}, expected int64"
        )


def _check_same_shape(
    first: tuple[str, pa.Schema], other: tuple[str, pa.Schema], id_columns: tuple[str, ...]
) -> None:
    """Files are read as one log: same column names, and ids of the same kind."""
    (file_a, a), (file_b, b) = first, other
    if sorted(a.names) != sorted(b.names):
        raise ValidationError(
            f"{file_b}: columns {sorted(b.names)} differ from {file_a}'s {sorted(a.names)}"
        )
    for column in id_columns:
        kind_a, kind_b = id_kind(a.field(column).type), id_kind(b.field(column).type)
        if kind_a != kind_b:
            raise ValidationError(
                f"{file_b}: column {column!r} holds {kind_b} ids but {file_a} holds {kind_a} ids"
            )


def id_kind(kind: pa.DataType) -> str | None:
    """'integer' or 'string' for the id types the contract allows, else None."""
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    return None


def normalize_ids(
    table: pa.Table,
    id_columns: tuple[str, ...],
    file: str,
    first_row: int,
    first_line: int | None = None,
) -> pa.Table:
    """Integer ids and timestamps as int64, string ids as string, so files of one log concat.
    Unsigned values beyond int64 (>= 2**63) are a ValidationError naming the file, the column
    and the first rows (`table` holds the rows of `file` from `first_row` on; see rows_text
    for `first_line`)."""
    for column in checked_columns(table, id_columns):
        kind = table.schema.field(column).type
        target = pa.int64() if pa.types.is_integer(kind) else pa.string()
        if kind != target:
            if pa.types.is_unsigned_integer(kind):
                _check_fits_int64(table[column], file, first_row, first_line, column)
            index = table.schema.get_field_index(column)
            table = table.set_column(index, column, table[column].cast(target))
    return table


def _check_fits_int64(
    values: pa.ChunkedArray, file: str, first_row: int, first_line: int | None, column: str
) -> None:
    too_large = pc.fill_null(pc.greater(values, pa.scalar(INT64_MAX, values.type)), False)
    count = pc.sum(too_large).as_py() or 0
    if count:
        where = np.flatnonzero(too_large.to_numpy(zero_copy_only=False))[:FIRST_ROWS]
        first = [(first_row + int(i), values[int(i)]) for i in where]
        raise ValidationError(
            f"{file}: column {column!r}: {count} value(s) above {INT64_MAX}, the int64 range "
            f"that ids and timestamps must fit, first at {rows_text(first, first_line)}"
        )


def rows_text(rows: Sequence[tuple[int, Any]], first_line: int | None) -> str:
    """Rows of a file with their values, for messages: `file row(s) 3 (-4), ...` (0-based), or
    for a file with lines, whose row 0 is on line `first_line` (a converted CSV/TSV or
    MovieLens file: one line per row, in order), `line(s) 5 (-4), ...`."""
    if first_line is None:
        return "file row(s) " + ", ".join(f"{row} ({value})" for row, value in rows)
    return "line(s) " + ", ".join(f"{first_line + row} ({value})" for row, value in rows)


@dataclass(frozen=True)
class RowCheck:
    """Bad rows of one unit: a per-row reason (null where the row is fine) and, per column and
    problem, the count and first few file row numbers with their values."""

    reasons: pa.Array | None  # None when every row is fine
    problems: list[dict[str, Any]]


def check_rows(
    table: pa.Table,
    file: str,
    first_row: int,
    id_columns: tuple[str, ...] = ID_COLUMNS,
    first_line: int | None = None,
) -> RowCheck:
    """Find null and negative values in the id and timestamp columns of rows from `file`
    (`first_line`: see rows_text)."""
    problems: list[dict[str, Any]] = []
    reasons: pa.Array | None = None
    for column in checked_columns(table, id_columns):
        values = table[column]
        checks = {"null": pc.is_null(values)}
        if pa.types.is_integer(values.type):
            checks["negative"] = pc.fill_null(pc.less(values, 0), False)
        for problem, mask in checks.items():
            count = pc.sum(mask).as_py() or 0
            if not count:
                continue
            where = np.flatnonzero(mask.to_numpy(zero_copy_only=False))[:FIRST_ROWS]
            problems.append(
                {
                    "file": file,
                    "column": column,
                    "problem": problem,
                    "rows": count,
                    "first_rows": [first_row + int(i) for i in where],
                    "first_values": values.take(pa.array(where)).to_pylist(),
                    "first_line": first_line,
                }
            )
            label = f"{column} is {problem}"
            if reasons is None:
                reasons = pc.if_else(mask, label, pa.scalar(None, pa.string()))
            else:
                more = pc.if_else(
                    pc.is_null(reasons), label, pc.binary_join_element_wise(reasons, label, "; ")
                )
                reasons = pc.if_else(mask, more, reasons)
    return RowCheck(reasons, problems)


def checked_columns(table: pa.Table, id_columns: tuple[str, ...]) -> tuple[str, ...]:
    """The id columns, and the timestamp where the log has one."""
    return (*id_columns, TIME_COLUMN) if TIME_COLUMN in table.column_names else id_columns


def problems_message(problems: list[dict[str, Any]]) -> str:
    """One line per (file, column, problem) with its row count and first offending rows."""
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    for entry in sorted(problems, key=lambda e: (e["file"], e["column"], e["first_rows"])):
        key = (entry["file"], entry["column"], entry["problem"])
        into = merged.setdefault(key, {"rows": 0, "first": [], "line": entry["first_line"]})
        into["rows"] += entry["rows"]
        into["first"] += list(zip(entry["first_rows"], entry["first_values"], strict=True))
    lines = []
    for (file, column, problem), entry in merged.items():
        first = rows_text(entry["first"][:FIRST_ROWS], entry["line"])
        lines.append(
            f"{file}: column {column!r}: {entry['rows']} {problem} value(s), first at {first}"
        )
    return (
        'invalid interaction log (set data.on_bad_rows = "drop" to quarantine bad rows '
        "instead): " + "; ".join(lines)
    )
