"""Work units of the pipeline: runs of consecutive row groups of one file, read in Ray tasks.

A unit knows its file, row groups and the file row number of its first row, so every row has a
stable global key (unit index, row in unit) and every message can name the file row. Memory per
task is one unit; units run at most a few per CPU at a time, and results stream back in
completion order, so nothing grows with the number of rows on the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from data_pipeline.schema import Origin
from mgqe_dist.progress import Progress

# Rows per unit, at least (a unit never splits a row group).
UNIT_ROWS = 1 << 20
# Seconds between progress lines when the output is not a terminal.
PROGRESS_SECONDS = 10.0


@dataclass(frozen=True)
class Unit:
    """Row groups [first_group, first_group + num_groups) of `file`."""

    index: int
    file: str
    file_index: int  # position of the file in the sorted input
    first_group: int
    num_groups: int
    first_row: int  # file row number of the unit's first row
    num_rows: int
    # For a log converted to Parquet first: the user's file, and the line of its row 0.
    origin: Origin | None = None

    @property
    def shown_file(self) -> str:
        """The file that messages and quarantined rows name: the user's, not a converted copy."""
        return self.origin.file if self.origin else self.file

    @property
    def first_line(self) -> int | None:
        """Line of the file's row 0 when the user's file has lines (see schema.rows_text)."""
        return self.origin.first_line if self.origin else None


def plan_units(
    files: Sequence[Path],
    unit_rows: int = UNIT_ROWS,
    origins: Mapping[Path, Origin] | None = None,
) -> list[Unit]:
    """Cut every file's row groups into units of at least `unit_rows` rows (files never mix);
    `origins` names the user's files behind converted ones."""
    units: list[Unit] = []
    origins = origins or {}
    for file_index, file in enumerate(files):
        meta = pq.read_metadata(file)
        start, first_row, rows = 0, 0, 0
        for group in range(meta.num_row_groups):
            rows += meta.row_group(group).num_rows
            if rows >= unit_rows or group == meta.num_row_groups - 1:
                groups = group + 1 - start
                unit = Unit(
                    len(units),
                    str(file),
                    file_index,
                    start,
                    groups,
                    first_row,
                    rows,
                    origins.get(file),
                )
                units.append(unit)
                start, first_row, rows = group + 1, first_row + rows, 0
    return units


class UnreadableUnitError(ValueError):
    """A row group could not be decoded; the message names the file and row range."""


def read_unit(unit: Unit, columns: Sequence[str] | None = None) -> pa.Table:
    """The unit's rows (all columns, or `columns`), with a clear error for corrupt data."""
    groups = list(range(unit.first_group, unit.first_group + unit.num_groups))
    try:
        return pq.ParquetFile(unit.file).read_row_groups(groups, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        last = unit.first_row + unit.num_rows - 1
        reason = " ".join(str(exc).split())
        raise UnreadableUnitError(
            f"{unit.file}: rows {unit.first_row}..{last} cannot be read ({reason})"
        ) from exc


class Sized(Protocol):
    """A piece of work that knows how many rows it covers."""

    @property
    def num_rows(self) -> int: ...


Job = TypeVar("Job", bound=Sized)


def run_tasks(
    task: Callable[..., Any], jobs: Sequence[Job], *args: Any, label: str
) -> Iterator[Any]:
    """Yield `task(job, *args)` for every job from Ray tasks, a few per CPU in flight, in
    completion order (`args` go to the object store once); shows progress (rows, tasks,
    rows/s, time left): a bar on a terminal, else a line about every PROGRESS_SECONDS and one
    at the end. A task's ValueError (bad input) is re-raised as is."""
    remote = ray.remote(task)
    window = 2 * max(1, int(ray.available_resources().get("CPU", 1)))
    shared = [ray.put(arg) for arg in args]
    pending: dict[ray.ObjectRef, Job] = {}
    todo = list(jobs)
    total_rows = sum(job.num_rows for job in jobs)
    done_jobs = 0
    with Progress(
        total_rows, label, "rows", every_seconds=PROGRESS_SECONDS, final=True
    ) as progress:
        while todo or pending:
            while todo and len(pending) < window:
                job = todo.pop(0)
                pending[remote.remote(job, *shared)] = job
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:
                if isinstance(exc.cause, ValueError):  # bad input: its own message, no traceback
                    raise exc.cause from None
                raise
            yield result
            done_jobs += 1
            progress.advance(job.num_rows, status=f"{done_jobs}/{len(jobs)} tasks")
