"""Converters from MovieLens formats and generic CSV/TSV to the Parquet interaction-log contract.

Contract (DESIGN.md): `user_id`, `item_id` (int64 or string), `timestamp` (int64), `rating`
(float64), any extra columns. Every input line becomes one row or an error naming the file
(and line where the format has lines we parse): nothing is skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from data_pipeline.files import atomic_path, write_parquet_atomic
from data_pipeline.schema import ID_COLUMNS, TIME_COLUMN

# Bytes of a delimited file parsed at a time (and so one Parquet row group).
CSV_BLOCK_BYTES = 64 << 20


class ConversionError(ValueError):
    """An input line does not match its format; the message names file and line."""


def read_movielens_ratings(path: str | Path) -> pa.Table:
    """Parse GroupLens `ratings.dat` (UserID::MovieID::Rating::Timestamp) into a table."""
    path = Path(path)
    rows = _split_lines(path, "::", expected_fields=4)
    return pa.table(
        {
            "user_id": _int_column(rows[:, 0], path, "UserID"),
            "item_id": _int_column(rows[:, 1], path, "MovieID"),
            "timestamp": _int_column(rows[:, 3], path, "Timestamp"),
            "rating": _float_column(rows[:, 2], path, "Rating"),
        }
    )


def read_movielens_untimed(path: str | Path) -> pa.Table:
    """Parse MovieLens ratings without timestamps (UserID::MovieID::Rating, e.g. ML-1M's
    `ratings_without_timestamps.dat`) into a table. `timestamp` is the 0-based line number: the
    file has no time order, so only a random split is meaningful on it (prepare refuses a
    leave-last-out split of this format)."""
    path = Path(path)
    rows = _split_lines(path, "::", expected_fields=3)
    return pa.table(
        {
            "user_id": _int_column(rows[:, 0], path, "UserID"),
            "item_id": _int_column(rows[:, 1], path, "MovieID"),
            "timestamp": np.arange(len(rows), dtype=np.int64),
            "rating": _float_column(rows[:, 2], path, "Rating"),
        }
    )


def read_sasrec_text(path: str | Path) -> pa.Table:
    """Parse SASRec's `user item` lines (chronological per user) into a table.

    The format has no timestamps; a user's line order is its time order, so `timestamp` is the
    0-based position of the line within that user's history.
    """
    path = Path(path)
    rows = _split_lines(path, " ", expected_fields=2)
    users = _int_column(rows[:, 0], path, "user")
    items = _int_column(rows[:, 1], path, "item")
    order = np.argsort(users, kind="stable")
    sorted_users = users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(users)]))
    position = np.empty(len(users), dtype=np.int64)
    position[order] = np.arange(len(users)) - group_start
    return pa.table(
        {
            "user_id": users,
            "item_id": items,
            "timestamp": position,
            "rating": np.ones(len(users), dtype=np.float64),
        }
    )


def delimited_to_parquet(path: str | Path, out_path: Path, delimiter: str) -> Path:
    """Stream a CSV/TSV file whose header names the contract's columns into Parquet, one block
    at a time (memory stays at one block).

    Other columns' types are inferred from the first block. The timestamp is read as int64: a
    value that is not an integer is an error naming its line. An id column with a value that
    is not an integer holds string ids, which is said on stderr with the first such line (when
    that value comes after the first block, the file is converted again with the column as
    text). Lines are counted one per row after the header line.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: file not found")
    text_ids: list[str] = []
    while (column := _stream_delimited(path, out_path, delimiter, text_ids)) is not None:
        text_ids.append(column)
    schema = pq.read_schema(out_path)
    text = [c for c in ID_COLUMNS if not pa.types.is_integer(schema.field(c).type)]
    for column in text:
        found = _first_non_integer(path, column, delimiter)
        if found:
            print(
                f"NOTE: {path}: column {column!r} holds string ids: line {found[0]} has "
                f"{found[1]!r}, not an integer (ids compare as text: '7' and '07' are two ids)",
                file=sys.stderr,
            )
    return out_path


def _stream_delimited(
    path: Path, out_path: Path, delimiter: str, text_ids: list[str]
) -> str | None:
    """Convert `path` with the `text_ids` columns read as text; returns an id column that a
    later block showed to hold a non-integer id (the conversion must be redone), else None."""
    types = {TIME_COLUMN: pa.int64(), **dict.fromkeys(text_ids, pa.string())}
    try:
        reader = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter),
            convert_options=pa_csv.ConvertOptions(column_types=types),
        )
        missing = [c for c in (*ID_COLUMNS, TIME_COLUMN) if c not in reader.schema.names]
        if missing:
            raise ConversionError(
                f"{path}: header has no column(s) {missing} (has {reader.schema.names})"
            )
        with atomic_path(out_path) as tmp, pq.ParquetWriter(tmp, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
    except pa.ArrowInvalid as exc:
        found = _first_non_integer(path, TIME_COLUMN, delimiter)
        if found:
            raise ConversionError(
                f"{path}:{found[0]}: timestamp is not an integer: {found[1]!r}"
            ) from None
        for column in ID_COLUMNS:
            if column not in text_ids and _first_non_integer(path, column, delimiter):
                return column
        raise ConversionError(f"{path}: {' '.join(str(exc).split())}") from exc
    return None


def _first_non_integer(path: Path, column: str, delimiter: str) -> tuple[int, str] | None:
    """Line and text of the first non-empty value of `column` that is not an integer (reads
    that column alone, as text, block by block); None also when the file cannot be parsed,
    whose error the caller reports."""
    convert = pa_csv.ConvertOptions(
        include_columns=[column], column_types={column: pa.string()}, strings_can_be_null=True
    )
    rows = 0
    try:
        reader = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter),
            convert_options=convert,
        )
        for batch in reader:
            values = batch.column(0)
            other = pc.invert(pc.match_substring_regex(values, r"^-?[0-9]+$")).fill_null(False)
            if pc.any(other).as_py():
                first = pc.index(other, True).as_py()
                return rows + first + 2, values[first].as_py()  # line 1 is the header
            rows += batch.num_rows
    except pa.ArrowInvalid:
        return None
    return None


def convert_to_parquet(table: pa.Table, out_path: str | Path) -> Path:
    """Write a converted log atomically; returns the written path."""
    return write_parquet_atomic(table, Path(out_path))


def _split_lines(path: Path, sep: str, expected_fields: int) -> np.ndarray:
    if not path.is_file():
        raise ConversionError(f"{path}: file not found")
    text = path.read_text(encoding="latin-1")
    lines = text.splitlines()
    if not lines:
        raise ConversionError(f"{path}: file is empty")
    fields = [line.split(sep) for line in lines]
    for number, parts in enumerate(fields, start=1):
        if len(parts) != expected_fields:
            raise ConversionError(
                f"{path}:{number}: expected {expected_fields} fields separated by {sep!r}, "
                f"got {len(parts)}: {lines[number - 1][:80]!r}"
            )
    return np.array(fields, dtype=object)


def _int_column(values: np.ndarray, path: Path, name: str) -> np.ndarray:
    try:
        out = values.astype(np.int64)
    except ValueError:
        bad = next(i for i, v in enumerate(values) if not v.strip().lstrip("-").isdigit())
        raise ConversionError(
            f"{path}:{bad + 1}: {name} is not an integer: {values[bad]!r}"
        ) from None
    negative = np.flatnonzero(out < 0)
    if len(negative):
        raise ConversionError(
            f"{path}:{negative[0] + 1}: {name} is negative ({len(negative)} such lines)"
        )
    return out


def _float_column(values: np.ndarray, path: Path, name: str) -> np.ndarray:
    try:
        return values.astype(np.float64)
    except ValueError:
        bad = next(i for i, v in enumerate(values) if not _is_float(v))
        raise ConversionError(
            f"{path}:{bad + 1}: {name} is not a number: {values[bad]!r}"
        ) from None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
