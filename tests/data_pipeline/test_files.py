from pathlib import Path

import pytest

from data_pipeline.files import atomic_path, sha256_tree


def test_failed_write_keeps_previous_directory(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
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
