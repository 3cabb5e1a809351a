"""`mgqe-dist synth`: large synthetic interaction logs with power-law users and items.

Built for scale (100M rows, 10M items on one node): files are generated in parallel Ray tasks
and streamed in row groups, so memory per task is one row group plus the item tables. The log
has structure a model can learn: items belong to topics, each user has a favourite topic and
takes `affinity` of its interactions from it (by popularity within the topic), the rest by
global popularity. Item popularity and user activity follow Zipf laws; a user never sees the
same item twice. Deterministic for a given spec, including the number of files.

Unlike `synth.generate_log` (exact MovieLens-1M shape, a per-user draw over every item), the
cost here grows with rows, not with users x items.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from data_pipeline.files import atomic_path, write_json_atomic
from data_pipeline.synth import ML1M_SPAN, ML1M_START, SYNTH_RECORD, PowerLawSpec
from data_pipeline.units import run_tasks

ROW_GROUP_ROWS = 1 << 20
# Redraw rounds before a user's repeated items are replaced by uniform draws.
POPULAR_REDRAWS = 20


@dataclass(frozen=True)
class FileJob:
    """Users [first_user, first_user + len(counts)) go to file `index`."""

    index: int
    first_user: int
    counts: np.ndarray  # rows per user

    @property
    def num_rows(self) -> int:
        """Rows this file gets."""
        return int(self.counts.sum())


@dataclass(frozen=True)
class Catalogue:
    """Item tables every task samples from (shared read-only through the object store)."""

    raw_ids: np.ndarray  # popularity rank -> raw item id
    topic: np.ndarray  # popularity rank -> topic
    global_cdf: np.ndarray  # cumulative popularity over ranks
    topic_ranks: np.ndarray  # ranks sorted by (topic, rank)
    topic_cdf: np.ndarray  # cumulative popularity in topic_ranks order
    topic_start: np.ndarray  # topic -> first position in topic_ranks (plus a final end)


def generate(spec: PowerLawSpec, out: Path) -> dict[str, Any]:
    """Write `spec.files` Parquet files (and `_synth.json`, which Parquet readers skip) into
    `out`, atomically."""
    spec.check()
    rng = np.random.default_rng([spec.seed, 0])
    catalogue = _catalogue(spec, rng)
    user_topic = rng.integers(spec.topics, size=spec.users)
    jobs = _file_jobs(spec, rng)
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    with atomic_path(out, marker=SYNTH_RECORD) as tmp:
        tmp.mkdir()
        for _ in run_tasks(
            _write_file, jobs, spec, catalogue, user_topic, str(tmp), label="generated"
        ):
            pass
        record = {"spec": dataclasses.asdict(spec), "files": len(jobs), "rows": spec.rows}
        write_json_atomic(record, tmp / SYNTH_RECORD)
    return record


def _catalogue(spec: PowerLawSpec, rng: np.random.Generator) -> Catalogue:
    weights = 1.0 / np.arange(1, spec.items + 1, dtype=np.float64) ** spec.item_exponent
    topics = rng.permutation(np.arange(spec.items) % spec.topics)  # no topic is empty
    topic_ranks = np.lexsort((np.arange(spec.items), topics))
    counts = np.bincount(topics, minlength=spec.topics)
    return Catalogue(
        raw_ids=rng.permutation(spec.items).astype(np.int64) + 1,  # rank order hides no id order
        topic=topics,
        global_cdf=np.cumsum(weights),
        topic_ranks=topic_ranks,
        topic_cdf=np.cumsum(weights[topic_ranks]),
        topic_start=np.r_[0, np.cumsum(counts)],
    )


def _file_jobs(spec: PowerLawSpec, rng: np.random.Generator) -> list[FileJob]:
    """Rows per user (Zipf activity over shuffled users, a floor, a cap), cut into files of
    about equal rows along user order."""
    activity = 1.0 / np.arange(1, spec.users + 1, dtype=np.float64) ** spec.user_exponent
    activity = activity[rng.permutation(spec.users)]
    extra = rng.multinomial(spec.rows - spec.min_per_user * spec.users, activity / activity.sum())
    counts = spec.min_per_user + extra
    cap = spec.items // 2
    while (excess := int(np.maximum(counts - cap, 0).sum())) > 0:
        counts = np.minimum(counts, cap)
        room = cap - counts
        counts += np.minimum(rng.multinomial(excess, room / room.sum()), room)
    cut = np.searchsorted(np.cumsum(counts), spec.rows * np.arange(1, spec.files) / spec.files)
    bounds = np.unique(np.r_[0, cut, spec.users])
    return [
        FileJob(index, int(start), counts[start:stop])
        for index, (start, stop) in enumerate(itertools.pairwise(bounds))
    ]


def _write_file(
    job: FileJob, spec: PowerLawSpec, catalogue: Catalogue, user_topic: np.ndarray, out: str
) -> int:
    """Generate one file, a row group of users at a time (runs in a Ray task)."""
    rng = np.random.default_rng([spec.seed, 1, job.index])
    path = Path(out) / f"part-{job.index:05d}.parquet"
    schema = pa.schema(
        [
            ("user_id", pa.int64()),
            ("item_id", pa.int64()),
            ("timestamp", pa.int64()),
            ("rating", pa.float64()),
        ]
    )
    ends = np.cumsum(job.counts)
    with pq.ParquetWriter(path, schema) as writer:
        start = 0
        while start < len(job.counts):
            before = ends[start] - job.counts[start]
            stop = int(np.searchsorted(ends, before + ROW_GROUP_ROWS, side="right"))
            stop = max(stop, start + 1)
            users = np.repeat(np.arange(start, stop), job.counts[start:stop]) + job.first_user
            writer.write_table(_rows(users, spec, catalogue, user_topic, rng), ROW_GROUP_ROWS)
            start = stop
    return job.num_rows


def _rows(
    users: np.ndarray,
    spec: PowerLawSpec,
    catalogue: Catalogue,
    user_topic: np.ndarray,
    rng: np.random.Generator,
) -> pa.Table:
    """Interactions of `users` (one entry per row, grouped by user), items unique per user."""
    favourite = rng.random(len(users)) < spec.affinity
    ranks = _draw(users, favourite, catalogue, user_topic, rng)
    for round_ in range(POPULAR_REDRAWS + 64):
        repeated = _repeats(users, ranks)
        if not repeated.any():
            break
        if round_ < POPULAR_REDRAWS:
            ranks[repeated] = _draw(
                users[repeated], favourite[repeated], catalogue, user_topic, rng
            )
        else:  # heavy users exhaust the popular items: fill from the whole catalogue
            ranks[repeated] = rng.integers(spec.items, size=int(repeated.sum()))
    else:
        raise RuntimeError("synth: could not make every user's items unique")
    in_topic = catalogue.topic[ranks] == user_topic[users]
    rating = np.clip(np.round(2.5 + 1.5 * in_topic + rng.normal(0, 0.8, len(users))), 1, 5)
    return pa.table(
        {
            "user_id": users + 1,
            "item_id": catalogue.raw_ids[ranks],
            "timestamp": ML1M_START + rng.integers(0, ML1M_SPAN, len(users)),
            "rating": rating,
        }
    )


def _draw(
    users: np.ndarray,
    favourite: np.ndarray,
    catalogue: Catalogue,
    user_topic: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Item ranks: by popularity within the user's topic where `favourite`, else globally."""
    ranks = np.searchsorted(
        catalogue.global_cdf, rng.random(len(users)) * catalogue.global_cdf[-1], side="right"
    )
    topic = user_topic[users[favourite]]
    first, last = catalogue.topic_start[topic], catalogue.topic_start[topic + 1] - 1
    cdf = catalogue.topic_cdf
    low = np.where(first > 0, cdf[np.maximum(first - 1, 0)], 0.0)
    target = low + rng.random(len(topic)) * (cdf[last] - low)
    position = np.minimum(np.searchsorted(cdf, target, side="right"), last)
    ranks[favourite] = catalogue.topic_ranks[position]
    return np.minimum(ranks, len(catalogue.raw_ids) - 1)


def _repeats(users: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Mask of rows whose (user, item) pair occurred in an earlier row."""
    keys = users.astype(np.int64) * (1 << 32) + ranks
    order = np.argsort(keys, kind="stable")
    repeated = np.zeros(len(keys), dtype=bool)
    repeated[order[1:]] = keys[order[1:]] == keys[order[:-1]]
    return repeated
