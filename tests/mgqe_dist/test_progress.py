"""Progress: plain lines when the output is not a terminal, a bar when it is (forced here)."""

import io
import time

import pytest

from mgqe_dist import progress as progress_module
from mgqe_dist.progress import Progress


class Terminal(io.StringIO):
    """A captured stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _lines(text: str) -> list[str]:
    return text.splitlines()


def test_lines_mode_prints_the_asked_number_of_lines_and_none_at_the_end(
    capsys: pytest.CaptureFixture,
) -> None:
    with Progress(100, "epoch 1/2", "samples", lines=4) as progress:
        for step in range(1, 11):
            progress.advance(10, status=f"loss {1 / step:.4f}")
    out = _lines(capsys.readouterr().out)
    assert [line.split(",")[0] for line in out] == [
        "  epoch 1/2: 20/100 samples (20%)",
        "  epoch 1/2: 40/100 samples (40%)",
        "  epoch 1/2: 60/100 samples (60%)",
        "  epoch 1/2: 80/100 samples (80%)",
    ]
    assert ", loss 0.5000, " in out[0] and "samples/s" in out[0] and out[0].endswith(" left")
    assert "\r" not in capsys.readouterr().out


def test_lines_mode_by_time_and_with_a_final_line(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter(float(t) for t in range(100))
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    with Progress(30, "checked", "rows", every_seconds=2, final=True) as progress:
        for done in range(1, 4):
            progress.advance(10, status=f"{done}/3 tasks")
    out = _lines(capsys.readouterr().out)
    assert out[-1].startswith("  checked: 30/30 rows (100%), 3/3 tasks, ")
    assert "left" not in out[-1]
    # The clock ticks once per reading: a line is due at the second advance (2 s on).
    assert len(out) == 2 and out[0].startswith("  checked: 20/30 rows (67%), 2/3 tasks, ")


def test_a_failed_loop_prints_no_final_line(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(RuntimeError), Progress(5, "written", "rows", final=True):
        raise RuntimeError("task failed")
    assert capsys.readouterr().out == ""


def test_write_prints_in_lines_mode_and_nothing_when_off(capsys: pytest.CaptureFixture) -> None:
    Progress(2, "grid", "cells").write("[1/2] cell: done")
    off = Progress(2, "grid", "cells", lines=4, mode="off")
    off.write("hidden")
    off.advance(1)
    off.close()
    assert capsys.readouterr().out == "[1/2] cell: done\n"


def test_a_terminal_gets_a_bar() -> None:
    terminal = Terminal()
    with Progress(100, "epoch 1/2", "samples", lines=4, file=terminal) as progress:
        assert progress.mode == "bar"
        progress.write("a result line")
        progress.advance(50, status="loss 0.5000")
        time.sleep(0.3)  # a bar redraws at most every 0.25 s
        progress.advance(50)
    shown = terminal.getvalue()
    assert "\r" in shown and "epoch 1/2" in shown and "a result line\n" in shown
    assert "samples/s" in shown and "loss 0.5000" in shown and "100/100" in shown
    assert "  epoch 1/2: 20/100" not in shown  # no plain lines under a bar


def test_a_bar_with_final_leaves_the_summary_line() -> None:
    terminal = Terminal()
    with Progress(8, "checked", "rows", final=True, file=terminal) as progress:
        progress.advance(8, status="2/2 tasks")
    shown = terminal.getvalue()
    assert shown.endswith("\n")
    last = shown.rstrip("\n").rsplit("\n", 1)[-1].split("\r")[-1]
    assert last.startswith("  checked: 8/8 rows (100%), 2/2 tasks, ")


def test_a_resumed_loop_counts_from_where_it_stopped(capsys: pytest.CaptureFixture) -> None:
    with Progress(100, "epoch 2/2", "samples", lines=1, initial=40) as progress:
        progress.advance(20)
    assert capsys.readouterr().out.startswith("  epoch 2/2: 60/100 samples (60%), ")
