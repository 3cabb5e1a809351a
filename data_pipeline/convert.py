"""Converters from MovieLens formats and generic CSV/TSV to the Parquet interaction-log contract.

Contract (DESIGN.md): `user_id`, `item_id` (int64 or string), `timestamp` (int64), `rating`
(float64), any extra columns. Every input line becomes one row or an error naming the file
(and line where the format has lines we parse): nothing is skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
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
    at a time (memory stays at one block). Column types are inferred from the first block."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: file not found")
    parse = pa_csv.ParseOptions(delimiter=delimiter)
    read = pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES)
    try:
        reader = pa_csv.open_csv(path, read_options=read, parse_options=parse)
        missing = [c for c in (*ID_COLUMNS, TIME_COLUMN) if c not in reader.schema.names]
        if missing:
            raise ConversionError(
                f"{path}: header has no column(s) {missing} (has {reader.schema.names})"
            )
        with atomic_path(out_path) as tmp, pq.ParquetWriter(tmp, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
    except pa.ArrowInvalid as exc:
        raise ConversionError(f"{path}: {' '.join(str(exc).split())}") from exc
    return out_path


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
