"""prepare on a real local Ray: row accounting, splits, vocabularies, features, bad input."""

import dataclasses
import json
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from data_pipeline.prepare import prepare
from data_pipeline.schema import ValidationError
from data_pipeline.source import SourceError
from data_pipeline.split import SPLITS
from mgqe_dist.config import DataConfig, FeatureConfig, load_job


def _prepared(tiny_job: Path) -> Path:
    return Path(load_job(tiny_job).data.prepared_dir)


def test_every_input_row_is_accounted_for(tiny_job: Path) -> None:
    root = _prepared(tiny_job)
    stats = json.loads((root / "stats.json").read_text())
    rows = stats["rows"]
    assert rows["input"] == 4000
    assert rows["train"] + rows["valid"] + rows["test"] + rows["quarantined"] == 4000
    assert rows["quarantined"] == 0
    for split in ("train", "valid", "test"):
        assert pq.read_table(root / f"{split}.parquet").num_rows == rows[split]


def test_one_valid_and_one_test_row_per_evaluated_user(tiny_job: Path) -> None:
    root = _prepared(tiny_job)
    for split in ("valid", "test"):
        users = pq.read_table(root / f"{split}.parquet")["user_id"]
        assert pc.count_distinct(users).as_py() == len(users) == 120


def test_vocab_ranks_by_training_frequency(tiny_job: Path) -> None:
    root = _prepared(tiny_job)
    vocab = pq.read_table(root / "vocab" / "item_id.parquet")
    train = pq.read_table(root / "train.parquet")
    counts = pc.value_counts(train["item_id"]).to_pylist()
    by_id = {c["values"]: c["counts"] for c in counts}
    known = vocab.num_rows - 1
    assert [by_id.get(i, 0) for i in range(known)] == vocab["count"].to_pylist()[:known]
    assert vocab["count"].to_pylist()[:known] == sorted(
        vocab["count"].to_pylist()[:known], reverse=True
    )
    stats = json.loads((root / "stats.json").read_text())
    assert stats["features"]["item_id"]["oov_id"] == known


def test_remapped_ids_round_trip_to_raw_ids(tiny_job: Path) -> None:
    root = _prepared(tiny_job)
    raw = pq.read_table(root / "input" / "interactions.parquet")
    vocab = {
        f: pq.read_table(root / "vocab" / f"{f}.parquet")["raw_id"].to_pylist()
        for f in ("user_id", "item_id")
    }
    rebuilt = set()
    for split in ("train", "valid", "test"):
        t = pq.read_table(root / f"{split}.parquet")
        rebuilt |= {
            (vocab["user_id"][u], vocab["item_id"][i], ts)
            for u, i, ts in zip(
                t["user_id"].to_pylist(),
                t["item_id"].to_pylist(),
                t["timestamp"].to_pylist(),
                strict=True,
            )
        }
    original = set(
        zip(
            raw["user_id"].to_pylist(),
            raw["item_id"].to_pylist(),
            raw["timestamp"].to_pylist(),
            strict=True,
        )
    )
    assert rebuilt == original


def test_second_prepare_reuses_the_result(tiny_job: Path, capsys: pytest.CaptureFixture) -> None:
    job = load_job(tiny_job)
    before = (_prepared(tiny_job) / "stats.json").stat().st_mtime_ns
    prepare(job.data, job.seed)
    assert "up to date" in capsys.readouterr().out
    assert (_prepared(tiny_job) / "stats.json").stat().st_mtime_ns == before


def _log_dir(tmp_path: Path, table: pa.Table, name: str = "part-0.parquet") -> Path:
    source = tmp_path / "logs"
    source.mkdir(exist_ok=True)
    pq.write_table(table, source / name)
    return source


def _cfg(tmp_path: Path, source: Path, on_bad_rows: str = "error") -> DataConfig:
    return DataConfig(
        source=str(source), prepared_dir=str(tmp_path / "prepared"), on_bad_rows=on_bad_rows
    )


GOOD = {"user_id": [1, 1, 1], "item_id": [1, 2, 3], "timestamp": [1, 2, 3]}


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    source = _log_dir(tmp_path, pa.table({"user_id": [1], "item_id": [2]}))
    with pytest.raises(ValidationError, match=r"part-0\.parquet: missing column 'timestamp'"):
        prepare(_cfg(tmp_path, source), seed=0)
    assert not (tmp_path / "prepared").exists()


def test_wrong_type_names_column(tmp_path: Path) -> None:
    source = _log_dir(tmp_path, pa.table({**GOOD, "item_id": [1.5, 2.0, 3.0]}))
    with pytest.raises(ValidationError, match="column 'item_id' has type double"):
        prepare(_cfg(tmp_path, source), seed=0)


def test_empty_file_is_named(tmp_path: Path) -> None:
    source = _log_dir(tmp_path, pa.table(GOOD))
    _log_dir(tmp_path, pa.table(GOOD).slice(0, 0), "part-1.parquet")
    with pytest.raises(ValidationError, match=r"part-1\.parquet: file has no rows"):
        prepare(_cfg(tmp_path, source), seed=0)


def test_null_and_negative_ids_are_counted_per_file(tmp_path: Path) -> None:
    source = _log_dir(
        tmp_path,
        pa.table(
            {"user_id": [1, None, 1, 1], "item_id": [1, 2, -3, -4], "timestamp": [1, 2, 3, 4]}
        ),
    )
    with pytest.raises(ValidationError) as error:
        prepare(_cfg(tmp_path, source), seed=0)
    message = str(error.value)
    nulls = "part-0.parquet: column 'user_id': 1 null value(s), first at file row(s) 1 (None)"
    negatives = "column 'item_id': 2 negative value(s), first at file row(s) 2 (-3), 3 (-4)"
    assert nulls in message and f"part-0.parquet: {negatives}" in message
    assert not (tmp_path / "prepared").exists()


def test_string_ids_are_supported(tmp_path: Path) -> None:
    users = [f"u{i}" for i in range(3) for _ in range(4)]
    items = [f"i{j}" for _ in range(3) for j in range(4)]
    source = _log_dir(
        tmp_path, pa.table({"user_id": users, "item_id": items, "timestamp": list(range(12))})
    )
    out = prepare(_cfg(tmp_path, source), seed=0)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["rows"] == {"input": 12, "train": 6, "valid": 3, "test": 3, "quarantined": 0}
    assert pq.read_table(out / "vocab" / "user_id.parquet")["raw_id"].to_pylist()[:3] == [
        "u0",
        "u1",
        "u2",
    ]


@pytest.mark.parametrize(
    ("file_name", "line"),
    [
        ("ratings.dat", "{u}::{i}::4::{t}"),
        ("ml-1m.txt", "{u} {i}"),
        ("log.tsv", "{u}\t{i}\t{t}"),
    ],
)
def test_movielens_sasrec_and_tsv_sources_are_detected_and_converted(
    tmp_path: Path, file_name: str, line: str
) -> None:
    source = tmp_path / "ml-1m"
    source.mkdir()
    # User 1 sees items 5..8 in that order, user 2 in reverse, so every item is in training.
    histories = {1: (5, 6, 7, 8), 2: (8, 7, 6, 5)}
    lines = [
        line.format(u=u, i=i, t=1000 + 10 * step)
        for u, items in histories.items()
        for step, i in enumerate(items)
    ]
    if file_name.endswith(".tsv"):
        lines.insert(0, "user_id\titem_id\ttimestamp")
    (source / file_name).write_text("\n".join(lines) + "\n")
    data = source / file_name if file_name.endswith(".tsv") else source  # named, not found
    out = prepare(_cfg(tmp_path, data), seed=0)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["origin"]["synthetic"] is False
    assert stats["origin"]["location"].endswith(file_name)
    assert stats["rows"] == {"input": 8, "train": 4, "valid": 2, "test": 2, "quarantined": 0}
    test = pq.read_table(out / "test.parquet")
    vocab = pq.read_table(out / "vocab" / "item_id.parquet")["raw_id"].to_pylist()
    assert sorted(vocab[i] for i in test["item_id"].to_pylist()) == [5, 8]  # each latest item


def test_items_unseen_in_training_map_to_the_oov_id(tmp_path: Path) -> None:
    # Items 7 and 8 occur only as the valid and test interactions: they are OOV.
    source = _log_dir(
        tmp_path, pa.table({"user_id": [1] * 4, "item_id": [5, 6, 7, 8], "timestamp": [1, 2, 3, 4]})
    )
    out = prepare(_cfg(tmp_path, source), seed=0)
    stats = json.loads((out / "stats.json").read_text())
    oov = stats["features"]["item_id"]["oov_id"]
    assert oov == 2
    assert pq.read_table(out / "test.parquet")["item_id"].to_pylist() == [oov]
    assert stats["oov_rows"]["test"]["item_id"] == 1 and stats["oov_rows"]["train"]["item_id"] == 0
    tiers = pq.read_table(out / "vocab" / "item_id.parquet")["tier"].to_pylist()
    assert tiers[oov] == max(tiers)


def test_dropped_rows_are_quarantined_with_reasons_and_accounted_for(tmp_path: Path) -> None:
    bad = pa.table(
        {
            "user_id": [1, None, 1, 1, 2, 2, 2],
            "item_id": [1, 2, -3, 4, 1, 2, 3],
            "timestamp": [1, 2, 3, -4, 1, 2, 3],
        }
    )
    source = _log_dir(tmp_path, bad)
    _log_dir(tmp_path, pa.table(GOOD).slice(0, 0), "part-1.parquet")  # empty: skipped
    out = prepare(_cfg(tmp_path, source, "drop"), seed=0)
    stats = json.loads((out / "stats.json").read_text())
    rows = stats["rows"]
    assert rows == {"input": 7, "train": 2, "valid": 1, "test": 1, "quarantined": 3}
    assert sum(v for k, v in rows.items() if k != "input") == rows["input"]
    assert stats["dropped"] == {
        "user_id is null": 1,
        "item_id is negative": 1,
        "timestamp is negative": 1,
    }
    assert stats["empty_files"] == [str(source / "part-1.parquet")]
    quarantine = pq.read_table(out / "quarantine.parquet").sort_by("source_row")
    assert quarantine["source_row"].to_pylist() == [1, 2, 3]
    assert quarantine["item_id"].to_pylist() == ["2", "-3", "4"]
    assert quarantine["reason"].to_pylist() == [
        "user_id is null",
        "item_id is negative",
        "timestamp is negative",
    ]
    assert set(stats["checksums"]) >= {"quarantine.parquet"}


def test_glob_of_many_files_and_row_groups_splits_like_one_table(tmp_path: Path) -> None:
    # 30 users x 10 rows spread over 3 files of several row groups; unit boundaries fall
    # inside user histories, and the split must not depend on them. A glob picks the files.
    table = pa.table(
        {
            "user_id": [u for _ in range(10) for u in range(30)],
            "item_id": [(7 * r) % 23 for r in range(300)],
            "timestamp": [r // 30 for r in range(300)],
        }
    )
    source = tmp_path / "logs"
    source.mkdir()
    for index in range(3):
        pq.write_table(table.slice(100 * index, 100), source / f"{index}.parquet", row_group_size=7)
    pq.write_table(table.slice(0, 5), source / "not-matched.parquet")
    out = prepare(_cfg(tmp_path, source / "[0-9].parquet"), seed=0)
    assert json.loads((out / "stats.json").read_text())["rows"]["input"] == 300
    vocab = pq.read_table(out / "vocab" / "item_id.parquet")["raw_id"].to_pylist()
    users = pq.read_table(out / "vocab" / "user_id.parquet")["raw_id"].to_pylist()
    test = pq.read_table(out / "test.parquet")
    pairs = zip(test["user_id"].to_pylist(), test["item_id"].to_pylist(), strict=True)
    latest = {users[u]: vocab[i] for u, i in pairs}
    # Each user's last row is the one at timestamp 9 (rows 270..299).
    assert latest == {u: (7 * (270 + u)) % 23 for u in range(30)}


def test_exact_duplicate_rows_give_one_test_row(tmp_path: Path) -> None:
    table = pa.table(
        {"user_id": [1] * 5, "item_id": [4, 4, 4, 2, 1], "timestamp": [9] * 3 + [1, 2]}
    )
    out = prepare(_cfg(tmp_path, _log_dir(tmp_path, table)), seed=0)
    stats = json.loads((out / "stats.json").read_text())
    # Item 4 is test, item 1 (the next distinct one) valid; 4's two other rows are dropped.
    assert stats["rows"] == {"input": 5, "train": 1, "valid": 1, "test": 1, "quarantined": 2}
    assert stats["dropped"] == {"duplicate": 2}


def _raw_pairs(out: Path, split: str) -> list[tuple[int, int]]:
    vocab = {
        f: pq.read_table(out / "vocab" / f"{f}.parquet")["raw_id"].to_pylist()
        for f in ("user_id", "item_id")
    }
    table = pq.read_table(out / f"{split}.parquet")
    pairs = zip(table["user_id"].to_pylist(), table["item_id"].to_pylist(), strict=True)
    return [(vocab["user_id"][u], vocab["item_id"][i]) for u, i in pairs]


def test_a_log_read_twice_holds_out_pairs_that_are_never_trained_on(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # Four users see five items, each in its own order; every row is there twice (as when a
    # log file is read twice), the second copy in another file, so another unit.
    once = pa.table(
        {
            "user_id": [u for u in range(4) for _ in range(5)],
            "item_id": [(u + i) % 5 for u in range(4) for i in range(5)],
            "timestamp": [i for _ in range(4) for i in range(5)],
        }
    )
    source = _log_dir(tmp_path, once)
    _log_dir(tmp_path, once, "part-1.parquet")
    out = prepare(_cfg(tmp_path, source), seed=0)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["rows"] == {"input": 40, "train": 24, "valid": 4, "test": 4, "quarantined": 8}
    assert stats["dropped"] == {"duplicate": 8}
    test, valid, train = (_raw_pairs(out, s) for s in ("test", "valid", "train"))
    assert sorted(test) == [(u, (u + 4) % 5) for u in range(4)]  # each user's latest item
    assert sorted(valid) == [(u, (u + 3) % 5) for u in range(4)]  # the one before, not again
    assert not set(train) & (set(test) | set(valid))
    vocab = pq.read_table(out / "vocab" / "item_id.parquet")
    assert sum(vocab["count"].to_pylist()) == 24  # counts are of training rows only
    quarantine = pq.read_table(out / "quarantine.parquet")
    assert set(quarantine["reason"].to_pylist()) == {"duplicate"}
    err = capsys.readouterr().err
    assert "8 of them repeat a user's held-out (user, item) pair" in err


def test_users_with_fewer_than_three_distinct_items_are_counted_and_said(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # User 1: two rows; user 2: one item three times; user 3: three items (evaluated).
    table = pa.table(
        {
            "user_id": [1, 1, 2, 2, 2, 3, 3, 3],
            "item_id": [5, 6, 7, 7, 7, 5, 6, 7],
            "timestamp": [1, 2, 1, 2, 3, 1, 2, 3],
        }
    )
    out = prepare(_cfg(tmp_path, _log_dir(tmp_path, table)), seed=0)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["users"] == {"total": 3, "evaluated": 1, "train_only": 2}
    assert stats["rows"] == {"input": 8, "train": 6, "valid": 1, "test": 1, "quarantined": 0}
    assert (
        "1 users evaluated, 2 with fewer than 3 distinct items only in train (no valid or test "
        "row)" in capsys.readouterr().out
    )


def test_ids_of_different_kinds_across_files_are_refused(tmp_path: Path) -> None:
    source = _log_dir(tmp_path, pa.table(GOOD))
    strings = {**GOOD, "item_id": ["a", "b", "c"]}
    _log_dir(tmp_path, pa.table(strings), "part-1.parquet")
    with pytest.raises(ValidationError, match=r"part-1\.parquet: column 'item_id' holds string"):
        prepare(_cfg(tmp_path, source), seed=0)


@pytest.mark.parametrize("damage", ["truncated", "corrupt_page"])
def test_unreadable_files_are_named(tmp_path: Path, damage: str) -> None:
    source = _log_dir(tmp_path, pa.table({**GOOD, "user_id": [1, 2, 3]}))
    path = source / "part-0.parquet"
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # footer intact, column data overwritten
        data[4:40] = b"\xff" * 36
        path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"part-0\.parquet"):
        prepare(_cfg(tmp_path, source), seed=0)
    assert not (tmp_path / "prepared").exists()


def test_extra_categorical_feature_gets_its_own_vocabulary_and_tiers(tmp_path: Path) -> None:
    genres = ["drama", "comedy", "drama", "horror", "drama", "comedy"] * 2
    table = pa.table(
        {
            "user_id": [1] * 6 + [2] * 6,
            "item_id": list(range(6)) * 2,
            "timestamp": list(range(12)),
            "genre": genres,
        }
    )
    features = (FeatureConfig("genre", tier_min_counts=(3,)),)
    cfg = dataclasses.replace(_cfg(tmp_path, _log_dir(tmp_path, table)), features=features)
    out = prepare(cfg, seed=0)
    stats = json.loads((out / "stats.json").read_text())
    vocab = pq.read_table(out / "vocab" / "genre.parquet")
    # Training rows: the first four of each user (its last two are held out).
    assert vocab["raw_id"].to_pylist() == ["drama", "comedy", "horror", None]
    assert vocab["count"].to_pylist() == [4, 2, 2, 0]
    assert stats["features"]["genre"]["tier_boundaries"] == [1]  # only drama has >= 3 rows
    train = pq.read_table(out / "train.parquet")
    decoded = {vocab["raw_id"][g].as_py() for g in train["genre"].to_pylist()}
    assert decoded == {"drama", "comedy", "horror"}


def test_nulls_in_a_feature_column_are_bad_rows(tmp_path: Path) -> None:
    table = pa.table({**GOOD, "genre": ["a", None, "b"]})
    cfg = dataclasses.replace(
        _cfg(tmp_path, _log_dir(tmp_path, table)), features=(FeatureConfig("genre"),)
    )
    with pytest.raises(ValidationError, match="column 'genre': 1 null value"):
        prepare(cfg, seed=0)


def test_sasrec_sequences_hold_the_latest_training_items_oldest_first(tmp_path: Path) -> None:
    # User 1: 6 rows (items 10..15 in time order), user 2: 2 rows (too short to evaluate).
    table = pa.table(
        {
            "user_id": [1] * 6 + [2] * 2,
            "item_id": [15, 10, 14, 11, 13, 12, 10, 11],
            "timestamp": [6, 1, 5, 2, 4, 3, 1, 2],
        }
    )
    cfg = dataclasses.replace(_cfg(tmp_path, _log_dir(tmp_path, table)), sequence_length=3)
    out = prepare(cfg, seed=0)
    users = pq.read_table(out / "vocab" / "user_id.parquet")["raw_id"].to_pylist()
    items = pq.read_table(out / "vocab" / "item_id.parquet")["raw_id"].to_pylist()
    sequences = pq.read_table(out / "sequences.parquet").to_pylist()
    decoded = {users[s["user_id"]]: [items[i] for i in s["items"]] for s in sequences}
    # User 1's latest two (15, 14) are test and valid; its 3 latest training items follow.
    assert decoded == {1: [11, 12, 13], 2: [10, 11]}
    assert "sequences.parquet" in json.loads((out / "stats.json").read_text())["checksums"]


def _random_split_test_rows(tmp_path: Path, source: Path, seed: int) -> tuple[dict, set]:
    cfg = dataclasses.replace(
        _cfg(tmp_path / f"seed{seed}", source), split="random", random_fractions=(0.8, 0.1, 0.1)
    )
    out = prepare(cfg, seed=seed)
    stats = json.loads((out / "stats.json").read_text())
    test = pq.read_table(out / "test.parquet", columns=["event"])
    return stats, set(test["event"].to_pylist())


def test_random_split_follows_the_fractions_and_the_seed(tmp_path: Path) -> None:
    # No timestamp: a random split does not need one. `event` is carried through.
    n = 4000
    table = pa.table(
        {"user_id": [r % 50 for r in range(n)], "item_id": [r % 70 for r in range(n)]}
    ).append_column("event", pa.array(range(n)))
    source = tmp_path / "logs"
    source.mkdir()
    pq.write_table(table, source / "log.parquet", row_group_size=300)
    stats, test_rows = _random_split_test_rows(tmp_path, source, seed=0)
    rows = stats["rows"]
    assert rows["train"] + rows["valid"] + rows["test"] == n
    for split, share in (("train", 0.8), ("valid", 0.1), ("test", 0.1)):
        assert abs(rows[split] / n - share) < 0.03, split
    again, same_rows = _random_split_test_rows(tmp_path, source, seed=0)
    assert same_rows == test_rows and again["rows"] == rows
    _, other_rows = _random_split_test_rows(tmp_path, source, seed=1)
    assert other_rows != test_rows
    # Vocabularies count training rows only.
    vocab = pq.read_table(tmp_path / "seed0" / "prepared" / "vocab" / "item_id.parquet")
    assert sum(vocab["count"].to_pylist()) == rows["train"]


@pytest.mark.parametrize("ids", [int, str])
def test_random_split_keeps_every_row_of_a_pair_in_one_split(tmp_path: Path, ids: type) -> None:
    # 200 users x 5 items, each pair in three rows; `pair` is carried through as it is.
    pairs = [(u, (3 * u + i) % 40) for u in range(200) for i in range(5)]
    table = pa.table(
        {
            "user_id": [ids(u) for u, _ in pairs] * 3,
            "item_id": [ids(i) for _, i in pairs] * 3,
            "pair": [100 * u + i for u, i in pairs] * 3,
        }
    )
    shares = (0.5, 0.25, 0.25)
    cfg = _cfg(tmp_path, _log_dir(tmp_path, table))
    out = prepare(dataclasses.replace(cfg, split="random", random_fractions=shares), seed=0)
    held = {s: set(pq.read_table(out / f"{s}.parquet")["pair"].to_pylist()) for s in SPLITS}
    assert not held["train"] & (held["valid"] | held["test"]) and not held["valid"] & held["test"]
    assert all(len(held[s]) > 150 for s in SPLITS)


def test_nothing_left_to_train_on_is_an_error_even_when_dropping(tmp_path: Path) -> None:
    source = _log_dir(tmp_path, pa.table({**GOOD, "user_id": [None, None, -1]}))
    with pytest.raises(ValidationError, match="all 3 input rows are bad"):
        prepare(_cfg(tmp_path, source, "drop"), seed=0)
    _log_dir(tmp_path, pa.table(GOOD).slice(0, 0))  # now the only file is empty
    with pytest.raises(ValidationError, match="no rows in any of the 1 input file"):
        prepare(_cfg(tmp_path, source, "drop"), seed=0)
    assert not (tmp_path / "prepared").exists()


def test_a_feature_cannot_be_one_of_the_log_columns(tmp_path: Path) -> None:
    cfg = dataclasses.replace(
        _cfg(tmp_path, _log_dir(tmp_path, pa.table(GOOD))), features=(FeatureConfig("item_id"),)
    )
    with pytest.raises(ValidationError, match="'item_id' is listed twice or is one of the log"):
        prepare(cfg, seed=0)


RATINGS = "1::5::4::1000\n1::6::4::1010\n1::7::4::1020\n"


def test_prepared_dir_that_holds_the_source_is_refused_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = tmp_path / "ml-1m"
    source.mkdir()
    (source / "ratings.dat").write_text(RATINGS)
    cfg = DataConfig(source=str(source), prepared_dir=str(source))
    with pytest.raises(ValueError, match=r"ml-1m holds the source .*ratings\.dat"):
        prepare(cfg, seed=0)
    assert (source / "ratings.dat").read_text() == RATINGS
    assert "pass 1/" not in capsys.readouterr().out  # refused before any work


def test_prepared_dir_inside_the_source_is_refused(tmp_path: Path) -> None:
    source = _log_dir(tmp_path, pa.table(GOOD))
    cfg = DataConfig(source=str(source), prepared_dir=str(source / "prepared"))
    with pytest.raises(ValueError, match="prepared is inside the source"):
        prepare(cfg, seed=0)
    assert sorted(p.name for p in source.iterdir()) == ["part-0.parquet"]


def test_unrelated_directory_as_prepared_dir_is_refused_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    home = tmp_path / "prepared"
    home.mkdir()
    (home / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"prepared is a non-empty directory without stats\.json"):
        prepare(_cfg(tmp_path, _log_dir(tmp_path, pa.table(GOOD))), seed=0)
    assert (home / "notes.txt").read_text() == "keep me"
    assert "pass 1/" not in capsys.readouterr().out


def test_prepared_dir_that_is_a_file_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "prepared").write_text("notes")
    with pytest.raises(ValueError, match="prepared is a file; a directory is written there"):
        prepare(_cfg(tmp_path, _log_dir(tmp_path, pa.table(GOOD))), seed=0)
    assert (tmp_path / "prepared").read_text() == "notes"
    assert "pass 1/" not in capsys.readouterr().out


def test_rebuild_replaces_the_earlier_prepared_dataset(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, _log_dir(tmp_path, pa.table(GOOD)))
    first = (prepare(cfg, seed=0) / "stats.json").stat().st_mtime_ns
    assert (prepare(cfg, seed=0, force=True) / "stats.json").stat().st_mtime_ns > first


def test_partial_output_of_a_killed_prepare_is_removed_by_the_next(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    partial = tmp_path / f".prepared.partial-{socket.gethostname()}-{dead.pid}-k9x2m1qa"
    (partial / "prepared").mkdir(parents=True)
    (partial / "prepared" / "train.parquet").write_bytes(bytes(1000))
    prepare(_cfg(tmp_path, _log_dir(tmp_path, pa.table(GOOD))), seed=0)
    assert not partial.exists()
    assert f"removed {partial}: left by an interrupted write" in capsys.readouterr().err


@pytest.mark.parametrize("source", ["logs", "logs/*.parquet"])
def test_spark_dataset_directory_is_read_as_its_part_files(tmp_path: Path, source: str) -> None:
    spark = tmp_path / "logs" / "events.parquet"
    spark.mkdir(parents=True)
    pq.write_table(pa.table(GOOD), spark / "part-00000-5f1e.c000.snappy.parquet")
    (spark / "_SUCCESS").write_text("")
    (spark / ".part-00000-5f1e.c000.snappy.parquet.crc").write_bytes(b"crc")
    unfinished = spark / "_temporary" / "0"  # an interrupted write's rows: not part of the data
    unfinished.mkdir(parents=True)
    pq.write_table(pa.table(GOOD), unfinished / "part-00001.snappy.parquet")
    out = prepare(_cfg(tmp_path, tmp_path / source), seed=0)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["rows"]["input"] == 3
    assert list(stats["fingerprint"]["source"]) == [
        str(spark / "part-00000-5f1e.c000.snappy.parquet")
    ]


def test_unsigned_ids_beyond_int64_name_file_column_and_row(tmp_path: Path) -> None:
    users = pa.array([1, 2**63, 1, 2**64 - 1], pa.uint64())
    log = {"user_id": users, "item_id": [1, 2, 3, 4], "timestamp": [1, 2, 3, 4]}
    source = _log_dir(tmp_path, pa.table(log))
    with pytest.raises(ValidationError) as error:
        prepare(_cfg(tmp_path, source), seed=0)
    assert str(error.value) == (
        f"{source / 'part-0.parquet'}: column 'user_id': 2 value(s) above 9223372036854775807, "
        "the int64 range that ids and timestamps must fit, first at file row(s) "
        "1 (9223372036854775808), 3 (18446744073709551615)"
    )


def test_csv_timestamp_that_is_not_an_integer_names_the_csv_and_line(tmp_path: Path) -> None:
    csv = tmp_path / "log.csv"
    csv.write_text("user_id,item_id,timestamp\n1,2,3\n1,3,noon\n")
    with pytest.raises(ValueError, match=rf"^{csv}:3: timestamp is not an integer: 'noon'$"):
        prepare(_cfg(tmp_path, csv), seed=0)


def test_bad_rows_of_a_csv_name_the_csv_and_its_lines(tmp_path: Path) -> None:
    # The CSV is converted to a temporary Parquet file first; messages name the user's file.
    csv = tmp_path / "log.csv"
    csv.write_text("user_id,item_id,timestamp\n1,2,3\n,3,4\n1,-5,5\n1,6,6\n1,-7,7\n")
    with pytest.raises(ValidationError) as error:
        prepare(_cfg(tmp_path, csv), seed=0)
    message = str(error.value)
    assert f"{csv}: column 'user_id': 1 null value(s), first at line(s) 3 (None)" in message
    assert f"{csv}: column 'item_id': 2 negative value(s), first at line(s) 4 (-5), 6 (-7)" in (
        message
    )
    assert "partial" not in message and "interactions.parquet" not in message


def test_quarantined_rows_of_a_csv_name_the_csv(tmp_path: Path) -> None:
    csv = tmp_path / "log.tsv"
    rows = [f"{u}\t{i}\t{i}" for u in (1, 2) for i in range(1, 5)]
    csv.write_text("user_id\titem_id\ttimestamp\n" + "\n".join([*rows, "1\t-9\t9"]) + "\n")
    out = prepare(_cfg(tmp_path, csv, "drop"), seed=0)
    quarantine = pq.read_table(out / "quarantine.parquet")
    assert quarantine["source_file"].to_pylist() == [str(csv)]
    assert quarantine["source_row"].to_pylist() == [8]  # the ninth row, on line 10


def test_a_csv_with_a_wrongly_typed_id_column_names_the_csv(tmp_path: Path) -> None:
    csv = tmp_path / "log.csv"
    csv.write_text("user_id,item_id,timestamp\n1,2.5,3\n")
    with pytest.raises(ValidationError, match=rf"^{csv}: column 'item_id' has type double"):
        prepare(_cfg(tmp_path, csv), seed=0)


def test_a_bad_row_of_a_held_out_pair_is_dropped_as_bad_not_as_duplicate(tmp_path: Path) -> None:
    table = pa.table(
        {
            "user_id": [1, 1, 1, 1, 1, 1, 2, 2],
            "item_id": [1, 2, 3, 4, 4, 4, 3, 4],
            "timestamp": [1, 2, 3, 4, -1, 0, 1, 2],
        }
    )
    out = prepare(_cfg(tmp_path, _log_dir(tmp_path, table), "drop"), seed=0)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["rows"] == {"input": 8, "train": 4, "valid": 1, "test": 1, "quarantined": 2}
    assert stats["dropped"] == {"timestamp is negative": 1, "duplicate": 1}
    vocab = pq.read_table(out / "vocab" / "item_id.parquet")
    assert sum(vocab["count"].to_pylist()) == 4  # items 1, 2 of user 1; 3, 4 of user 2
    assert pq.read_table(out / "vocab" / "user_id.parquet")["count"].to_pylist()[:2] == [2, 2]


def test_sasrec_sequences_list_distinct_items_by_their_latest_time(tmp_path: Path) -> None:
    table = pa.table(
        {"user_id": [1] * 6, "item_id": [10, 11, 12, 11, 13, 14], "timestamp": [1, 2, 3, 4, 5, 6]}
    )
    cfg = dataclasses.replace(_cfg(tmp_path, _log_dir(tmp_path, table)), sequence_length=3)
    out = prepare(cfg, seed=0)
    items = pq.read_table(out / "vocab" / "item_id.parquet")["raw_id"].to_pylist()
    (sequence,) = pq.read_table(out / "sequences.parquet").to_pylist()
    # 14 and 13 are held out; 11 was last seen after 12, so it comes last.
    assert [items[i] for i in sequence["items"]] == [10, 12, 11]
    assert json.loads((out / "stats.json").read_text())["rows"]["train"] == 4


def test_untimed_ratings_split_randomly_and_keep_their_ratings(tmp_path: Path) -> None:
    source = tmp_path / "ml-1m"
    source.mkdir()
    lines = [f"{u}::{i}::{1 + (u + i) % 5}" for u in range(1, 6) for i in range(1, 9)]
    (source / "ratings_without_timestamps.dat").write_text("\n".join(lines) + "\n")
    cfg = dataclasses.replace(
        _cfg(tmp_path, source / "ratings_without_timestamps.dat"),
        split="random",
        random_fractions=(0.75, 0.0, 0.25),
    )
    out = prepare(cfg, seed=0)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["rows"]["input"] == 40
    ratings = pc.unique(pq.read_table(out / "train.parquet")["rating"]).to_pylist()
    assert sorted(ratings) == [1.0, 2.0, 3.0, 4.0, 5.0]  # real ratings, not a constant


def test_untimed_ratings_refuse_a_split_by_time(tmp_path: Path) -> None:
    source = tmp_path / "ratings_without_timestamps.dat"
    source.write_text("1::2::5\n1::3::4\n")
    with pytest.raises(SourceError, match=r"timestamps\.dat: has no timestamps .*split"):
        prepare(_cfg(tmp_path, source), seed=0)
