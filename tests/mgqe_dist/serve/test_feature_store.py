"""Feast repository of a run: online codes rebuild the artifact's embeddings (SQLite, Redis)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from mgqe_dist.cli import main
from mgqe_dist.serve import load_artifact
from mgqe_dist.serve.feature_store import online_embeddings

UNKNOWN_ITEM = 10**12


@pytest.fixture(scope="module")
def mgqe_run(tiny_job: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("feast") / "run"
    settings = [f'output_dir="{out}"', "train.epochs=1"]
    assert main(["train", str(tiny_job), *(a for s in settings for a in ("--set", s))]) == 0
    return out


def _assert_online_parity(repo: Path) -> None:
    served = load_artifact(repo / "artifact")
    raw = pq.read_table(repo / "artifact" / "vocab" / "item_id.parquet")["raw_id"].to_pylist()
    wanted = [*raw[:20], *raw[-10:-1], UNKNOWN_ITEM]
    with torch.no_grad():
        expected = served.table("items")(served.ids("items", wanted))
    assert torch.equal(online_embeddings(repo, wanted), expected)


def test_sqlite_online_codes_rebuild_artifact_embeddings(mgqe_run: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert main(["feast", "init", str(mgqe_run), "--repo", str(repo)]) == 0
    assert (repo / "data" / "online.db").is_file()
    _assert_online_parity(repo)


def test_offline_sources_give_point_in_time_training_data(mgqe_run: Path, tmp_path: Path) -> None:
    from feast import FeatureStore

    repo = tmp_path / "repo"
    assert main(["feast", "init", str(mgqe_run), "--repo", str(repo)]) == 0
    store = FeatureStore(repo_path=str(repo))
    log = pq.read_table(repo / "data" / "interactions.parquet").to_pandas()
    last = log.sort_values("event_timestamp").groupby("user_id").tail(1).head(5)
    entity = pd.DataFrame(
        {
            "user_id": last["user_id"],
            "event_timestamp": last["event_timestamp"] + pd.Timedelta(1, "s"),
        }
    )
    got = store.get_historical_features(entity, ["interactions:item_id"]).to_df()
    got = got.sort_values("user_id").reset_index(drop=True)
    want = last.sort_values("user_id").reset_index(drop=True)
    assert got["item_id"].tolist() == want["item_id"].tolist()

    items = pd.DataFrame(
        {"item_id": want["item_id"], "event_timestamp": pd.Timestamp.now(tz="UTC")}
    )
    codes = store.get_historical_features(items, ["item_codes:codes"]).to_df()
    served = load_artifact(repo / "artifact")
    expected = served.table("items").codes(served.ids("items", codes["item_id"].tolist()))
    assert [list(c) for c in codes["codes"]] == expected.tolist()


def test_feast_init_refuses_runs_without_codes(
    tiny_job: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "fe"
    settings = [f'output_dir="{run}"', "train.epochs=1", "embedding.kind=full"]
    assert main(["train", str(tiny_job), *(a for s in settings for a in ("--set", s))]) == 0
    assert main(["feast", "init", str(run), "--repo", str(tmp_path / "repo")]) == 2
    assert "need an MGQE or DPQ run" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_redis_online_codes_rebuild_artifact_embeddings(mgqe_run: Path, tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 10
        while socket.socket().connect_ex(("127.0.0.1", port)) and time.time() < deadline:
            time.sleep(0.1)
        repo = tmp_path / "repo"
        args = ["--online-store", "redis", "--redis-url", f"localhost:{port}"]
        assert main(["feast", "init", str(mgqe_run), "--repo", str(repo), *args]) == 0
        assert not (repo / "data" / "online.db").exists()
        _assert_online_parity(repo)
    finally:
        server.terminate()
        server.wait(timeout=10)
