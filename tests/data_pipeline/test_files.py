import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from data_pipeline.files import atomic_path, sha256_tree


def test_failed_write_keeps_previous_directory(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with atomic_path(final, marker="a.txt") as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(final, marker="a.txt") as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("new")
        raise RuntimeError("crash mid-write")
    assert (final / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left behind


def test_successful_write_replaces_file(tmp_path: Path) -> None:
    final = tmp_path / "f.json"
    final.write_text("old")
    with atomic_path(final) as tmp:
        tmp.write_text("new")
    assert final.read_text() == "new"


def test_tree_checksum_sees_content_and_names(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("1")
    before = sha256_tree(tmp_path / "d")
    (tmp_path / "d" / "x").write_text("2")
    changed = sha256_tree(tmp_path / "d")
    (tmp_path / "d" / "x").rename(tmp_path / "d" / "y")
    renamed = sha256_tree(tmp_path / "d")
    assert len({before, changed, renamed}) == 3


def test_directory_with_the_marker_is_replaced(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "stats.json").write_text("{}")
    (final / "stale.parquet").write_text("old")
    with atomic_path(final, marker="stats.json") as tmp:
        tmp.mkdir()
        (tmp / "stats.json").write_text("{}")
    assert sorted(p.name for p in final.iterdir()) == ["stats.json"]


@pytest.mark.parametrize("marker", ["stats.json", None])
def test_a_directory_this_writer_did_not_write_is_refused_and_kept(
    tmp_path: Path, marker: str | None
) -> None:
    final = tmp_path / "data"
    final.mkdir()
    (final / "ratings.dat").write_text("1::2::5::978300760\n")
    with (
        pytest.raises(ValueError, match=r"data is a (non-empty )?directory"),
        atomic_path(final, marker=marker),
    ):
        pytest.fail("refused only after the work")
    assert (final / "ratings.dat").read_text() == "1::2::5::978300760\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_file_where_a_directory_belongs_is_refused_before_any_work(tmp_path: Path) -> None:
    final = tmp_path / "prepared"
    final.write_text("notes")
    with (
        pytest.raises(ValueError, match="prepared is a file; a directory is written there"),
        atomic_path(final, marker="stats.json"),
    ):
        pytest.fail("refused only after the work")
    assert final.read_text() == "notes"


def _killed_writer(final: Path) -> None:
    """Run a writer of `final` in another process and SIGKILL it in mid-write."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from data_pipeline.files import atomic_path\n"
        f"with atomic_path(Path({str(final)!r}), marker='done') as tmp:\n"
        "    tmp.mkdir()\n"
        "    (tmp / 'part-0.parquet').write_bytes(bytes(1 << 20))\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
    writer.send_signal(signal.SIGKILL)
    writer.wait()


def test_the_next_write_removes_what_a_killed_writer_left(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    final = tmp_path / "prepared"
    _killed_writer(final)
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(".prepared.") and (left / "prepared" / "part-0.parquet").exists()
    host = socket.gethostname()
    live = tmp_path / f".prepared.partial-{host}-1-abcd1234"  # pid 1 always runs
    other_host = tmp_path / f".prepared.partial-{host}x-{left.name.split('-')[-2]}-abcd1234"
    unrelated = tmp_path / ".prepared.keep"
    for kept in (live, other_host, unrelated):
        kept.mkdir()
    with atomic_path(final, marker="done") as tmp:
        tmp.mkdir()
        (tmp / "done").write_text("")
    assert not left.exists()
    assert f"removed {left}: left by an interrupted write" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["prepared", live.name, other_host.name, unrelated.name]
    )
