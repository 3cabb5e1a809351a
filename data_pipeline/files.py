"""Atomic writes and checksums shared by the pipeline and the trainer."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of one file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(path: str | Path) -> str:
    """Hex sha256 of a file, or of a directory's files (relative names and contents, sorted)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


class OutputPathError(ValueError):
    """An output path that cannot be written without destroying something this program did not
    write (a raw log, an unrelated directory), or a file where a directory belongs."""


@contextmanager
def atomic_path(final: Path, marker: str | None = None) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it replaces `final` in one rename.

    A file writer passes no `marker`. A directory writer names `marker`, a file that every
    directory it writes holds (stats.json, manifest.json): an existing `final` is replaced only
    when it is an empty directory or holds that marker, so a path pointed at someone else's files
    is refused (OutputPathError) before any work starts, and nothing there is deleted. On error the
    temporary path is removed and `final` keeps its previous content; what a killed writer left
    behind is removed by the next write to `final` (see _remove_stale_temporaries).
    """
    _check_replaceable(final, marker)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(final)
    prefix = f"{_temporary_stem(final)}{os.getpid()}-"
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
    tmp = work / final.name
    try:
        yield tmp
        if final.is_dir():
            final.rename(work / "replaced")  # removed with `work` below
        os.replace(tmp, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_replaceable(final: Path, marker: str | None) -> None:
    """Refuse an existing `final` that the writer did not write itself (see atomic_path)."""
    if not final.exists():
        return
    if marker is None:
        if final.is_dir():
            raise OutputPathError(f"{final} is a directory; a file is written there")
        return
    if not final.is_dir():
        raise OutputPathError(f"{final} is a file; a directory is written there")
    if not (final / marker).is_file() and any(final.iterdir()):
        raise OutputPathError(
            f"{final} is a non-empty directory without {marker}, so not one this program "
            f"wrote; refusing to replace it (choose another path, or empty it yourself)"
        )


def _temporary_stem(final: Path) -> str:
    """How the temporaries of this host's writes to `final` are named; the writer's process id
    and mkdtemp's random suffix follow."""
    return f".{final.name}.partial-{socket.gethostname()}-"


def _remove_stale_temporaries(final: Path) -> None:
    """Remove what interrupted writes to `final` left beside it.

    A writer killed with SIGKILL (or by the OOM killer, or a power loss) cannot clean up, so its
    temporary directory (the whole partial output, gigabytes at scale) would stay forever. One is
    provably stale when it carries atomic_path's name pattern with this host's name and a process
    id that no longer runs; a temporary of a live process (a concurrent writer) or of another host
    sharing the storage is left alone. Each removal is reported on stderr.
    """
    # mkdtemp's random suffix is lowercase letters, digits and underscores.
    ours = re.compile(re.escape(_temporary_stem(final)) + r"(\d+)-\w+")
    for path in final.parent.iterdir():
        match = ours.fullmatch(path.name)
        if match and path.is_dir() and not psutil.pid_exists(int(match[1])):
            shutil.rmtree(path)
            print(
                f"removed {path}: left by an interrupted write (process {match[1]})",
                file=sys.stderr,
            )


def write_parquet_atomic(table: pa.Table, path: Path) -> Path:
    """Write one Parquet file so that readers never see a partial file."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def write_json_atomic(data: Any, path: Path) -> Path:
    """Write JSON (sorted keys, indented) so that readers never see a partial file."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path
