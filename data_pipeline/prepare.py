"""`prepare`: the Ray job that turns an interaction log into a prepared dataset.

File schemas are checked on the driver; then passes of Ray tasks over units (runs of row
groups) stream the log without ever shuffling or collecting rows:
1. check rows and summarise each unit (counts per id, each user's latest distinct items); the
   driver merges summaries into state sized by the vocabularies, then picks held-out rows;
2. (leave-last-two-out only) count the other rows of held-out (user, item) pairs, which leave
   training as duplicates (repeats.py), so that the vocabularies, ranked and tiered next, count
   exactly the training split;
3. tag every row's split, remap ids and write the split parts (and quarantined rows).
With data.sequence_length = L, pass 1 keeps each user's L + 2 latest distinct items, from which
sequences.parquet (the L latest training items per user, for SASRec) is written.
Every input row is accounted for in stats.json. The output directory appears atomically, so a
crashed run never leaves a half-prepared dataset behind. data.prepared_dir is only ever replaced
when it is a prepared dataset (it holds stats.json) or an empty directory, and it may not overlap
the source: anything else is refused before any work, and nothing of it is deleted.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from data_pipeline.assign import QUARANTINE, AssignPlan, IdMap, assign_unit
from data_pipeline.files import OutputPathError, atomic_path, sha256_tree, write_json_atomic
from data_pipeline.repeats import DUPLICATE, HeldOut, count_repeats
from data_pipeline.scan import Summary, SummaryMerger, count_ids, scan_unit, sum_counts
from data_pipeline.schema import (
    ID_COLUMNS,
    TIME_COLUMN,
    Origin,
    ValidationError,
    check_files,
    problems_message,
)
from data_pipeline.source import (
    Source,
    describe_source,
    is_glob,
    materialize_source,
    source_origins,
)
from data_pipeline.split import MIN_EVAL_HISTORY, SPLITS, SplitRule, held_out, train_sequences
from data_pipeline.stats import STATS_FILE, load_stats
from data_pipeline.tiers import TierRule, build_vocab
from data_pipeline.units import Unit, plan_units, run_tasks
from mgqe_dist.config import DataConfig

PIPELINE_VERSION = "3"
SEQUENCES = "sequences.parquet"


def prepare(cfg: DataConfig, seed: int, force: bool = False) -> Path:
    """Prepare `cfg.source` into `cfg.prepared_dir`; re-uses an up-to-date result unless forced."""
    out = Path(cfg.prepared_dir)
    source = describe_source(cfg)
    _check_apart(out, cfg.source, source)
    fingerprint = {
        "pipeline_version": PIPELINE_VERSION,
        "source": source.fingerprint,
        "tier_fractions": list(cfg.tier_fractions),
        "tier_min_counts": list(cfg.tier_min_counts),
        "features": [dataclasses.asdict(f) for f in cfg.features],
        "on_bad_rows": cfg.on_bad_rows,
        "sequence_length": cfg.sequence_length,
        "split": cfg.split,
        "random_fractions": list(cfg.random_fractions),
        # The random split depends on the seed; leave-last-two-out does not.
        "seed": seed if cfg.split == "random" else None,
    }
    if not force and _up_to_date(out, fingerprint):
        print(f"prepared dataset at {out} is up to date (use --force to rebuild)")
        return out
    started = time.time()
    with atomic_path(out, marker=STATS_FILE) as tmp:
        tmp.mkdir()
        files = materialize_source(source, cfg, tmp / "input")
        stats = _run_pipeline(files, cfg, seed, tmp, source_origins(source, files))
        stats.update(
            fingerprint=fingerprint,
            origin={
                "format": source.format,
                "location": source.location,
                "synthetic": source.synthetic,
            },
            seconds=round(time.time() - started, 1),
        )
        write_json_atomic(stats, tmp / STATS_FILE)
    print(f"prepared dataset written to {out} in {stats['seconds']} s: {_summary_line(stats)}")
    return out


def _summary_line(stats: dict[str, Any]) -> str:
    """Rows per split and left out; under leave-last-two-out, users evaluated and not."""
    rows, users = stats["rows"], stats["users"]
    line = (
        f"{rows['train']:,} train, {rows['valid']:,} valid, {rows['test']:,} test rows, "
        f"{rows['quarantined']:,} left out"
    )
    if "evaluated" not in users:
        return line
    return (
        f"{line}; {users['evaluated']:,} users evaluated, {users['train_only']:,} with fewer "
        f"than {MIN_EVAL_HISTORY} distinct items only in train (no valid or test row)"
    )


def _check_apart(out: Path, configured: str, source: Source) -> None:
    """Refuse a prepared_dir that holds a source file (replacing it would delete the log) or
    lies inside the source (the next run would read the prepared files as part of the log)."""
    target = out.resolve()
    paths = [*source.files, *([] if is_glob(configured) else [Path(configured)])]
    for path in (p.resolve() for p in paths):
        if path.is_relative_to(target):
            raise OutputPathError(
                f"data.prepared_dir = {out} holds the source {path}: preparing would delete it; "
                f"choose a prepared_dir outside the source"
            )
        if target.is_relative_to(path):
            raise OutputPathError(
                f"data.prepared_dir = {out} is inside the source {path}: the next run would "
                f"read the prepared files as part of the log; choose a prepared_dir outside it"
            )


def _up_to_date(out: Path, fingerprint: dict[str, Any]) -> bool:
    try:
        return load_stats(out).get("fingerprint") == fingerprint
    except (FileNotFoundError, json.JSONDecodeError):
        return False


def _run_pipeline(
    files: list[Path], cfg: DataConfig, seed: int, out: Path, origins: dict[Path, Origin]
) -> dict[str, Any]:
    drop = cfg.on_bad_rows == "drop"
    split_rule = SplitRule(cfg.split, cfg.random_fractions, seed, cfg.sequence_length)
    rules = tier_rules(cfg)
    id_columns = tuple(rules)
    shown = {file: origin.file for file, origin in origins.items()}
    input_rows, empty_files = check_files(
        files, id_columns, allow_empty=drop, need_time=cfg.split != "random", shown=shown
    )
    for file in empty_files:
        print(f"WARNING: {file} has no rows; skipped", file=sys.stderr)
    if input_rows == 0:
        raise ValidationError(f"no rows in any of the {len(files)} input file(s)")
    _start_ray()
    units = plan_units(files, origins=origins)
    passes = 2 if split_rule.kind == "random" else 3
    print(
        f"pass 1/{passes}: checking and counting {input_rows:,} rows ({len(files)} file(s), "
        f"{len(units)} unit(s))"
    )
    summary = _summarize(units, id_columns, split_rule, input_rows, drop)
    held, removed = _hold_out(summary, split_rule, units, id_columns)
    features, id_maps = _build_vocabs(summary, removed, rules, out / "vocab")
    plan = AssignPlan(out=str(out), held=held, id_maps=id_maps, rule=split_rule)
    print(
        f"pass {passes}/{passes}: splitting ({cfg.split.replace('_', ' ')}), remapping ids, writing"
    )
    totals = _add_counts(run_tasks(assign_unit, units, plan, label="written"))
    rows = {name: totals[name] for name in (*SPLITS, "quarantined")}
    if sum(rows.values()) != input_rows:
        raise RuntimeError(f"row accounting failed: {rows} do not add up to {input_rows} read")
    artifacts = [*(out / f"{s}.parquet" for s in SPLITS), *sorted((out / "vocab").iterdir())]
    if cfg.sequence_length:
        _write_sequences(train_sequences(summary.latest, cfg.sequence_length), id_maps, out)
        artifacts.append(out / SEQUENCES)
    if rows["quarantined"]:
        artifacts.append(out / f"{QUARANTINE}.parquet")
        _warn_dropped(totals["reasons"], out)
    users = {"total": features["user_id"]["oov_id"]}
    if held is not None:
        users.update(evaluated=len(held.users), train_only=users["total"] - len(held.users))
    return {
        "rows": {"input": input_rows, **rows},
        "dropped": totals["reasons"],  # reason -> rows, all in quarantine.parquet
        "empty_files": empty_files,
        "users": users,  # leave-last-two-out: train_only = fewer than 3 distinct items
        "oov_rows": totals["oov_rows"],
        "features": features,
        "checksums": {p.relative_to(out).as_posix(): sha256_tree(p) for p in artifacts},
    }


def _summarize(
    units: list[Unit], id_columns: tuple[str, ...], rule: SplitRule, input_rows: int, drop: bool
) -> Summary:
    """Pass 1: the merged summary of every unit; bad rows are an error unless dropped."""
    merger = SummaryMerger(rule.keep)
    for summary in run_tasks(scan_unit, units, id_columns, rule, label="checked"):
        merger.add(summary)
    summary = merger.result()
    if summary.problems and not drop:
        raise ValidationError(problems_message(summary.problems))
    if summary.counts["user_id"].num_rows == 0:
        raise ValidationError(
            f"all {input_rows:,} input rows are bad, none is left to train on: "
            + problems_message(summary.problems)
        )
    return summary


def _hold_out(
    summary: Summary, rule: SplitRule, units: list[Unit], id_columns: tuple[str, ...]
) -> tuple[HeldOut | None, dict[str, pa.Table]]:
    """The held-out rows (leave-last-two-out; None under the random split) and, per id column,
    the counts of the rows that the summary counted but that leave training: held-out rows
    and, found by pass 2, the other rows of held-out pairs (repeats.py)."""
    if rule.kind == "random":  # pass 1 counted training rows only
        return None, {column: summary.counts[column].slice(0, 0) for column in id_columns}
    rows = held_out(summary.latest)
    held = HeldOut.of(rows)
    removed = {column: count_ids(rows, column) for column in id_columns}
    print("pass 2/3: finding the other rows of held-out (user, item) pairs")
    has_bad_rows = bool(summary.problems)
    for part in run_tasks(count_repeats, units, held, id_columns, has_bad_rows, label="checked"):
        removed = {c: sum_counts([removed[c], part[c]], c) for c in id_columns}
    return held, removed


def _warn_dropped(reasons: dict[str, int], out: Path) -> None:
    """Say on stderr how many rows were left out of the splits, and why."""
    total = sum(reasons.values())
    print(
        f"WARNING: {total:,} row(s) left out of the splits, kept in "
        f"{out.name}/{QUARANTINE}.parquet: {reasons}",
        file=sys.stderr,
    )
    if reasons.get(DUPLICATE):
        print(
            f"WARNING: {reasons[DUPLICATE]:,} of them repeat a user's held-out (user, item) pair "
            "(each user's latest two distinct items are held out, and a held-out pair is never "
            "also trained on)",
            file=sys.stderr,
        )


def _write_sequences(sequences: pa.Table, id_maps: dict[str, IdMap], out: Path) -> None:
    """sequences.parquet with new ids: user_id, items (latest training items, oldest first)."""
    items = sequences["items"].combine_chunks()
    new_items = pa.ListArray.from_arrays(items.offsets, id_maps["item_id"](items.values))
    table = pa.table({"user_id": id_maps["user_id"](sequences["user_id"]), "items": new_items})
    pq.write_table(table.sort_by("user_id"), out / SEQUENCES)


def tier_rules(cfg: DataConfig) -> dict[str, TierRule]:
    """Every id column (users, items, then extra features) with its tier rule."""
    default = TierRule(cfg.tier_fractions, cfg.tier_min_counts)
    rules = dict.fromkeys(ID_COLUMNS, default)
    for feature in cfg.features:
        if feature.column in rules or feature.column == TIME_COLUMN:
            raise ValidationError(
                f"data.features: column {feature.column!r} is listed twice or is one of the "
                f"log's own columns ({', '.join((*ID_COLUMNS, TIME_COLUMN))})"
            )
        own = feature.tier_fractions or feature.tier_min_counts
        rules[feature.column] = (
            TierRule(feature.tier_fractions or default.fractions, feature.tier_min_counts)
            if own
            else default
        )
    return rules


def _build_vocabs(
    summary: Summary, removed: dict[str, pa.Table], rules: dict[str, TierRule], vocab_dir: Path
) -> tuple[dict[str, Any], dict[str, IdMap]]:
    """Training-split counts (the summary's minus `removed`), ranked and tiered into vocab/.

    Returns per-feature stats and the raw-id -> new-id maps.
    """
    vocab_dir.mkdir()
    features: dict[str, Any] = {}
    id_maps: dict[str, IdMap] = {}
    for column, rule in rules.items():
        counts = _minus(summary.counts[column], removed[column], column)
        try:
            vocab, boundaries = build_vocab(counts[column], counts["count"], rule, column)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc
        pq.write_table(vocab, vocab_dir / f"{column}.parquet")
        known = vocab.num_rows - 1
        id_maps[column] = IdMap(vocab["raw_id"].slice(0, known).combine_chunks())
        features[column] = {
            "num_ids": vocab.num_rows,
            "oov_id": known,
            "tier_boundaries": boundaries,
            "tier_sizes": np.bincount(vocab["tier"].to_numpy()).tolist(),
        }
    return features, id_maps


def _minus(totals: pa.Table, removed: pa.Table, column: str) -> pa.Table:
    """totals - removed per id, keeping ids whose count stays above zero."""
    negated = removed.set_column(1, "count", pc.negate(removed["count"]))
    net = pa.concat_tables([totals, negated]).group_by(column).aggregate([("count", "sum")])
    net = net.rename_columns([column, "count"])
    return net.filter(pc.greater(net["count"], 0))


def _add_counts(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Sum the per-unit count dicts (nested dicts add up key by key)."""
    total: dict[str, Any] = {}
    for part in parts:
        _add_into(total, part)
    return total


def _add_into(total: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, dict):
            _add_into(total.setdefault(key, {}), value)
        else:
            total[key] = total.get(key, 0) + value


def _start_ray() -> None:
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
