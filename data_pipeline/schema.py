"""The interaction-log contract and its checks: file-level (schema, emptiness) and row-level.

Row checks run per batch inside the Ray Data job and return small problem tables, so the
driver learns which file, column and how many rows are bad without collecting the rows.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ID_COLUMNS = ("user_id", "item_id")
REQUIRED_COLUMNS = (*ID_COLUMNS, "timestamp")
PATH_COLUMN = "path"
PROBLEM_SCHEMA = pa.schema(
    [("file", pa.string()), ("column", pa.string()), ("problem", pa.string()), ("rows", pa.int64())]
)


class ValidationError(ValueError):
    """Input violates the interaction-log contract; the message names file, column and rows."""


def check_files(files: list[Path]) -> int:
    """Check every file's schema and emptiness without reading rows; returns total row count."""
    if not files:
        raise ValidationError("no Parquet files found in the input")
    total = 0
    for file in files:
        try:
            meta = pq.read_metadata(file)
        except (OSError, pa.ArrowInvalid) as exc:
            raise ValidationError(f"{file}: not a readable Parquet file ({exc})") from exc
        if meta.num_rows == 0:
            raise ValidationError(f"{file}: file has no rows")
        schema = meta.schema.to_arrow_schema()
        for column in REQUIRED_COLUMNS:
            if column not in schema.names:
                raise ValidationError(f"{file}: missing column {column!r} (has {schema.names})")
        for column in ID_COLUMNS:
            kind = schema.field(column).type
            if not (
                pa.types.is_integer(kind)
                or pa.types.is_string(kind)
                or pa.types.is_large_string(kind)
            ):
                raise ValidationError(
                    f"{file}: column {column!r} has type {kind}, expected int64 or string"
                )
        if not pa.types.is_integer(schema.field("timestamp").type):
            raise ValidationError(
                f"{file}: column 'timestamp' has type {schema.field('timestamp').type}, "
                "expected int64"
            )
        total += meta.num_rows
    return total


def row_problems(batch: pa.Table) -> pa.Table:
    """Count null and negative values in the required columns of one batch, per file."""
    problems: dict[tuple[str, str, str], int] = {}
    for column in REQUIRED_COLUMNS:
        values = batch[column]
        checks = {"null": pc.is_null(values)}
        if pa.types.is_integer(values.type):
            checks["negative"] = pc.fill_null(pc.less(values, 0), False)
        for problem, mask in checks.items():
            if not pc.any(mask).as_py():
                continue
            bad_files = pc.value_counts(pc.filter(batch[PATH_COLUMN], mask)).to_pylist()
            for entry in bad_files:
                key = (entry["values"], column, problem)
                problems[key] = problems.get(key, 0) + entry["counts"]
    return pa.Table.from_pylist(
        [{"file": f, "column": c, "problem": p, "rows": n} for (f, c, p), n in problems.items()],
        schema=PROBLEM_SCHEMA,
    )


def raise_for_problems(problems: pa.Table) -> None:
    """Raise one ValidationError that lists every (file, column, problem) with its row count."""
    if problems.num_rows == 0:
        return
    summary = problems.group_by(["file", "column", "problem"]).aggregate([("rows", "sum")])
    lines = [
        f"{row['file']}: column {row['column']!r}: {row['rows_sum']} {row['problem']} value(s)"
        for row in summary.sort_by("file").to_pylist()
    ]
    raise ValidationError("invalid interaction log: " + "; ".join(lines))
