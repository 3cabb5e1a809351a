"""Progress of long loops: a live bar on a terminal, a few plain lines everywhere else.

A bar (tqdm) redraws one line in place, which is what a person at a terminal wants and what a
log file does not: output that is not a terminal (CI logs, `make demo`'s prefixed streams, the
report grid's per-cell train.log) gets plain lines instead, a few per loop, so that logs stay
readable and hold no carriage returns. Both show the same things: units done of the total,
rate, time left and a status (loss, tasks done).

Used by prepare's passes (rows), training epochs (samples), evaluation (users) and the report
grid (cells).
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import IO, Literal

from tqdm import tqdm

# "auto": a bar when the output is a terminal, lines otherwise; "off": nothing at all.
Mode = Literal["auto", "bar", "lines", "off"]


class Progress:
    """Progress over `total` units (samples, rows, users, cells), drawn as `mode` says.

    In lines mode a line is printed each time another 1 / (`lines` + 1) of the total is done
    (so `lines` lines over a whole loop, none at its end) and, if `every_seconds`, whenever that
    long has passed since the last line. With `final`, a last line is printed when the loop
    closes, in bar mode too (the bar itself is removed when closed).
    `initial` units count as done before the first `advance` (a resumed loop); the rate counts
    only what is done after it.
    """

    def __init__(
        self,
        total: int,
        label: str,
        unit: str,
        *,
        lines: int = 0,
        every_seconds: float = 0.0,
        final: bool = False,
        initial: int = 0,
        mode: Mode = "auto",
        file: IO[str] | None = None,
    ) -> None:
        self.file = file if file is not None else sys.stdout
        self.mode: Mode = ("bar" if is_terminal(self.file) else "lines") if mode == "auto" else mode
        self.total, self.label, self.unit = total, label, unit
        self.done = self._initial = initial
        self._lines, self._every, self._final = lines, every_seconds, final
        self._next_line = 1  # the fraction (in 1 / (lines + 1)) of the next line
        self._status = ""
        self._started = self._shown = time.monotonic()
        self._bar = (
            tqdm(
                total=total,
                initial=initial,
                desc=label,
                unit=f" {unit}",
                unit_scale=total >= 10_000,  # 51.2k/205k, but 3/7 cells
                file=self.file,
                leave=False,
                dynamic_ncols=True,
                mininterval=0.25,
            )
            if self.mode == "bar"
            else None
        )

    def advance(self, units: int = 1, status: str | None = None) -> None:
        """Count `units` more done (0 only redraws a bar's clock); `status` replaces the status."""
        self.done += units
        if status is not None:
            self._status = status
        if self._bar is not None:
            if status is not None:
                self._bar.set_postfix_str(status, refresh=False)
            self._bar.update(units)
        elif self.mode == "lines" and self.done < self.total and self._line_due():
            self._print_line()

    def write(self, line: str) -> None:
        """Print a line of its own (a result, a warning) without breaking the bar."""
        if self.mode == "off":
            return
        if self._bar is not None:
            self._bar.write(line, file=self.file)
        else:
            print(line, file=self.file, flush=True)

    def close(self, failed: bool = False) -> None:
        """Remove the bar; with `final`, print the last line unless the loop `failed`."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode != "lines":
            return
        if self._final and not failed:
            self._print_line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close(failed=kind is not None)

    def line(self) -> str:
        """The plain line of where the loop stands now."""
        elapsed = time.monotonic() - self._started
        rate = (self.done - self._initial) / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        parts = [f"{self.done:,}/{self.total:,} {self.unit}{share}"]
        if self._status:
            parts.append(self._status)
        parts.append(f"{tqdm.format_sizeof(rate)} {self.unit}/s")
        if rate > 0 and self.done < self.total:
            parts.append(f"{tqdm.format_interval((self.total - self.done) / rate)} left")
        return f"  {self.label}: " + ", ".join(parts)

    def _line_due(self) -> bool:
        due = False
        if self._lines:
            reached = self.done * (self._lines + 1) // self.total if self.total else 0
            if reached >= self._next_line:
                self._next_line, due = reached + 1, True
        if self._every and time.monotonic() - self._shown >= self._every:
            due = True
        return due

    def _print_line(self) -> None:
        self._shown = time.monotonic()
        print(self.line(), file=self.file, flush=True)


def is_terminal(file: IO[str]) -> bool:
    """Whether `file` is an interactive terminal (where a bar can redraw its line)."""
    isatty = getattr(file, "isatty", None)
    return bool(isatty and isatty())
