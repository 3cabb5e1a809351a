"""Resolve a job's data source into Parquet interaction-log files.

MovieLens `ratings.dat` (and ML-1M's `ratings_without_timestamps.dat`), SASRec `ml-1m.txt` and
CSV/TSV files with a header are converted;
Parquet (a file, a directory searched recursively, or a glob pattern) is read in place; a
directory, such as Spark's `events.parquet/`, is read as the dataset of the Parquet files under
it, skipping names that start with "." or "_" (Spark's _SUCCESS and the _temporary/ of an
unfinished write, checksum files), as Spark, Hive and Arrow do. When the source is missing
and the job allows it, a MovieLens-shaped log is generated instead, and the origin says so
loudly, because numbers on generated data are not MovieLens numbers.
"""

from __future__ import annotations

import glob
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from data_pipeline.convert import (
    convert_to_parquet,
    delimited_to_parquet,
    read_movielens_ratings,
    read_movielens_untimed,
    read_sasrec_text,
)
from data_pipeline.files import sha256_file
from data_pipeline.schema import Origin
from data_pipeline.synth import SynthSpec, generate_log
from mgqe_dist.config import DataConfig

CONVERTERS = {
    "movielens": read_movielens_ratings,
    "sasrec": read_sasrec_text,
    "movielens_untimed": read_movielens_untimed,
}
FORMAT_FILES = {
    "movielens": "ratings.dat",
    "sasrec": "ml-1m.txt",
    "movielens_untimed": "ratings_without_timestamps.dat",
}
# Formats without time order: their `timestamp` is a line number, so only a random split.
UNTIMED_FORMATS = {"movielens_untimed"}
# Generic delimited files with a header row: format -> delimiter (also the file suffix).
DELIMITERS = {"csv": ",", "tsv": "\t"}
# Converted formats: the line of the first row (CSV/TSV: the one after the header).
FIRST_LINES = {**dict.fromkeys(DELIMITERS, 2), **dict.fromkeys(CONVERTERS, 1)}


class SourceError(FileNotFoundError):
    """The configured data source is missing or not in a known format."""


@dataclass(frozen=True)
class Source:
    """Where the data came from, for stats.json and run records."""

    format: str
    location: str
    synthetic: bool
    fingerprint: dict
    files: tuple[Path, ...] = ()  # the log files read (none when the log is generated)


def describe_source(cfg: DataConfig) -> Source:
    """Identify the source without converting anything (cheap; used to decide on re-use)."""
    if is_glob(cfg.source):
        files = _parquet_files(cfg.source)
        return Source("parquet", cfg.source, False, _checksums(files), tuple(files))
    path = Path(cfg.source)
    if not path.exists():
        if cfg.if_missing == "error":
            raise SourceError(
                f"data source not found: {path} (set data.source, or data.if_missing="
                '"synthesize" to use a generated MovieLens-shaped log)'
            )
        spec = synth_spec(cfg)
        return Source("synthetic", str(path), True, {"synth_spec": asdict(spec)})
    fmt, file = _detect(path, cfg.format)
    if fmt in UNTIMED_FORMATS and cfg.split != "random":
        raise SourceError(
            f"{file}: has no timestamps (format {fmt}), so it cannot be split by time; set "
            'data.split = "random"'
        )
    files = [file] if fmt != "parquet" else _parquet_files(str(file))
    return Source(fmt, str(file), False, _checksums(files), tuple(files))


def _checksums(files: list[Path]) -> dict[str, str]:
    """The fingerprint of a log: each file's sha256."""
    return {str(f): sha256_file(f) for f in files}


def materialize_source(source: Source, cfg: DataConfig, workdir: Path) -> list[Path]:
    """Return the Parquet files to prepare, converting or generating them into `workdir`."""
    if source.synthetic:
        print(
            f"WARNING: {cfg.source} not found; using a GENERATED MovieLens-shaped log "
            f"({cfg.synth_users} users, {cfg.synth_items} items, {cfg.synth_rows} rows). "
            "Metrics on it are not MovieLens-1M results.",
            file=sys.stderr,
        )
        table = generate_log(synth_spec(cfg))
        return [convert_to_parquet(table, workdir / "interactions.parquet")]
    if source.format == "parquet":
        return _parquet_files(source.location)
    if source.format in DELIMITERS:
        out = workdir / "interactions.parquet"
        return [delimited_to_parquet(source.location, out, DELIMITERS[source.format])]
    table = CONVERTERS[source.format](source.location)
    return [convert_to_parquet(table, workdir / "interactions.parquet")]


def source_origins(source: Source, files: list[Path]) -> dict[Path, Origin]:
    """The user's file behind each Parquet file that materialize_source converted, so that
    messages and quarantined rows name it (and its lines) instead of a temporary copy; none
    for Parquet logs, read in place, and generated ones."""
    if source.synthetic or source.format not in FIRST_LINES:
        return {}
    return {file: Origin(source.location, FIRST_LINES[source.format]) for file in files}


def synth_spec(cfg: DataConfig) -> SynthSpec:
    """The spec of the log generated when the source is missing (data.synth_*)."""
    return SynthSpec(
        users=cfg.synth_users,
        items=cfg.synth_items,
        rows=cfg.synth_rows,
        seed=cfg.synth_seed,
        sequential=cfg.synth_sequential,
    )


def _detect(path: Path, fmt: str) -> tuple[str, Path]:
    if path.is_file():
        if fmt != "auto":
            return fmt, path
        if path.suffix == ".parquet":
            return "parquet", path
        if path.suffix[1:] in DELIMITERS:
            return path.suffix[1:], path
        for name, file_name in FORMAT_FILES.items():
            if path.name == file_name:
                return name, path
        raise SourceError(f"{path}: cannot tell the format from the name; set data.format")
    if fmt == "parquet" or (fmt == "auto" and any(path.rglob("*.parquet"))):
        return "parquet", path
    if fmt in DELIMITERS:
        raise SourceError(f"{path}: data.format = {fmt!r} needs data.source to name the file")
    candidates = [fmt] if fmt != "auto" else list(FORMAT_FILES)
    for name in candidates:
        if (path / FORMAT_FILES[name]).is_file():
            return name, path / FORMAT_FILES[name]
    raise SourceError(
        f"{path}: no {' or '.join(FORMAT_FILES[c] for c in candidates)} or *.parquet files found"
    )


def is_glob(source: str) -> bool:
    """Whether `source` is a glob pattern (e.g. logs/2026-*/part-*.parquet) rather than a path."""
    return any(char in source for char in "*?[")


def _parquet_files(location: str) -> list[Path]:
    """A Parquet file, or every file a glob matches; a directory (given or matched) stands for
    the Parquet files of its dataset."""
    paths = glob.glob(location, recursive=True) if is_glob(location) else [location]
    files = sorted({file for path in paths for file in _dataset_files(Path(path))})
    if not files:
        raise SourceError(f"{location}: no Parquet files found")
    return files


def _dataset_files(path: Path) -> list[Path]:
    """`path` itself if it is a file, else the *.parquet files under it outside hidden or
    underscore-named entries (see the module docstring)."""
    if path.is_file():
        return [path]
    return [
        file
        for file in path.rglob("*.parquet")
        if file.is_file() and not any(part[0] in "._" for part in file.relative_to(path).parts)
    ]
