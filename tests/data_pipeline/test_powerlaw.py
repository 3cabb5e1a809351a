"""`mgqe-dist synth`: exact sizes, unique pairs, power laws, learnable structure, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from data_pipeline.powerlaw import _catalogue, _rows
from data_pipeline.prepare import prepare
from data_pipeline.synth import PowerLawSpec
from mgqe_dist.cli import main
from mgqe_dist.config import DataConfig

SMALL = ["--rows", "60000", "--users", "2000", "--items", "5000", "--files", "3"]


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "log"
    assert main(["synth", str(out), *SMALL]) == 0
    return out


def test_sizes_files_and_unique_pairs(log_dir: Path) -> None:
    files = sorted(log_dir.glob("*.parquet"))
    assert len(files) == 3
    table = pq.read_table(log_dir)
    assert table.num_rows == 60000
    assert pc.count_distinct(table["user_id"]).as_py() == 2000
    keys = table["user_id"].to_numpy() * (1 << 32) + table["item_id"].to_numpy()
    assert len(np.unique(keys)) == len(keys)
    assert json.loads((log_dir / "_synth.json").read_text())["spec"]["rows"] == 60000


def test_item_popularity_and_user_activity_are_heavy_tailed(log_dir: Path) -> None:
    table = pq.read_table(log_dir)
    for column in ("item_id", "user_id"):
        counts = np.sort(pc.value_counts(table[column]).field("counts").to_numpy())[::-1]
        assert counts[0] > 10 * np.median(counts), column


def test_output_is_deterministic(log_dir: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert main(["synth", str(again), *SMALL]) == 0
    for file in sorted(log_dir.glob("*.parquet")):
        assert pq.read_table(again / file.name).equals(pq.read_table(file))


def test_users_favour_their_topic() -> None:
    spec = PowerLawSpec(rows=20000, users=200, items=20000, topics=20, affinity=0.8)
    rng = np.random.default_rng(0)
    catalogue = _catalogue(spec, rng)
    user_topic = rng.integers(spec.topics, size=spec.users)
    users = np.repeat(np.arange(spec.users), spec.rows // spec.users)
    table = _rows(users, spec, catalogue, user_topic, rng)
    rank = np.argsort(catalogue.raw_ids)[table["item_id"].to_numpy() - 1]
    share = np.mean(catalogue.topic[rank] == user_topic[users])
    # affinity, plus global draws that land in the topic by chance (~1/topics of them).
    assert 0.78 < share < 0.9


def test_synth_log_prepares_with_every_row_accounted_for(log_dir: Path, tmp_path: Path) -> None:
    cfg = DataConfig(source=str(log_dir), prepared_dir=str(tmp_path / "prepared"))
    stats = json.loads((prepare(cfg, seed=0) / "stats.json").read_text())
    rows = stats["rows"]
    assert rows["input"] == 60000
    assert rows["train"] + rows["valid"] + rows["test"] + rows["quarantined"] == 60000
    assert rows["test"] == rows["valid"] == 2000  # every user has >= min_per_user=5 rows


def test_impossible_spec_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "log"
    args = ["--rows", "100", "--users", "10", "--items", "10", "--topics", "2"]
    assert main(["synth", str(out), *args]) == 2
    assert "each user sees at most half the items" in capsys.readouterr().err
    assert not out.exists()
