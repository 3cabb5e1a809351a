"""The `mgqe-dist` entry in-process: one-line errors with exit 2, and a tiny end-to-end run."""

import importlib.metadata
import json
import shutil
import socket
import time
import tomllib
from pathlib import Path

import pytest
import torch

import mgqe_dist
from mgqe_dist.cli import main
from tests.conftest import TINY_JOB, write_job


def test_unknown_key_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    job = write_job(tmp_path, TINY_JOB + "\n[model]\nname = 'gmf'\nlayers = 3\n")
    assert main(["train", str(job)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "model: unknown key(s) ['layers']" in err


def test_wrong_type_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    job = write_job(tmp_path)
    assert main(["train", str(job), "--set", "train.epochs=two"]) == 2
    assert "train: epochs = 'two': expected int" in capsys.readouterr().err


def test_missing_data_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    job = write_job(tmp_path)
    assert main(["prepare", str(job), "--set", "data.if_missing=error"]) == 2
    assert "data source not found" in capsys.readouterr().err


def test_train_before_prepare_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    job = write_job(tmp_path)
    assert main(["train", str(job)]) == 2
    assert "run `mgqe-dist prepare JOB` first" in capsys.readouterr().err


def test_prepared_dir_that_is_a_file_exits_2_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    job = write_job(tmp_path)
    (tmp_path / "prepared").write_text("notes")
    assert main(["prepare", str(job)]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        f"mgqe-dist prepare: error: {tmp_path / 'prepared'} is a file; a directory is written "
        "there\n"
    )
    assert "pass 1/" not in captured.out
    assert (tmp_path / "prepared").read_text() == "notes"


@pytest.mark.parametrize("kind", ["full", "mgqe"])
def test_tiny_end_to_end_run_writes_metrics(tiny_job: Path, tmp_path: Path, kind: str) -> None:
    out = tmp_path / kind
    assert (
        main(
            [
                "train",
                str(tiny_job),
                "--set",
                f"embedding.kind={kind}",
                "--set",
                f'output_dir="{out}"',
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("hr@10", "ndcg@10", "valid_hr@10"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["embedding"] == kind and metrics["model"] == "gmf" and metrics["seed"] == 0
    assert metrics["config"]["train"]["epochs"] == 2
    assert metrics["versions"]["torch"].startswith("2.13")
    assert set(metrics["data"]["checksums"]) >= {"train.parquet", "valid.parquet", "test.parquet"}
    assert len(metrics["history"]) == 2
    assert metrics["history"][1]["loss"] < metrics["history"][0]["loss"]
    best = max(metrics["history"], key=lambda r: r["valid_ndcg@10"])
    assert metrics["best_epoch"] == best["epoch"]
    assert metrics["valid_ndcg@10"] == pytest.approx(best["valid_ndcg@10"])  # weights restored
    expected_pct = 100.0 if kind == "full" else None
    if expected_pct is not None:
        assert metrics["size_pct_of_full"] == pytest.approx(expected_pct)
    else:
        assert metrics["size_pct_of_full"] < 100.0
    assert (out / "model.pt").is_file()


JOBS = sorted((Path(__file__).resolve().parents[1] / "jobs").glob("*.toml"))


@pytest.mark.parametrize("spec", JOBS, ids=[p.stem for p in JOBS])
def test_every_shipped_embedding_trains_on_tiny_data(
    tiny_job: Path, tmp_path: Path, spec: Path
) -> None:
    """Each job's [embedding] section, run for one epoch on the tiny dataset."""
    embedding = tomllib.loads(spec.read_text())["embedding"]
    overrides = [f"embedding.{key}={json.dumps(value)}" for key, value in embedding.items()]
    overrides += ["train.epochs=1", f'output_dir="{tmp_path}"']
    assert main(["train", str(tiny_job), *[a for o in overrides for a in ("--set", o)]]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["embedding"] == embedding["kind"]
    assert metrics["model_size_bits"] > 0
    assert 0.0 <= metrics["hr@10"] <= 1.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu_is_a_clear_error(tiny_job: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", str(tiny_job), "--set", "train.device=cuda"]) == 2
    assert "no CUDA device is available" in capsys.readouterr().err


def _submit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, address: str) -> int:
    monkeypatch.chdir(tmp_path)  # the job spec must lie in the working directory
    return main(["submit", str(write_job(tmp_path)), "--address", address])


def test_submit_to_a_closed_port_exits_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert _submit(tmp_path, monkeypatch, f"http://127.0.0.1:{port}") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"cannot reach the Ray cluster at http://127.0.0.1:{port}" in err


def test_submit_to_a_silent_address_gives_up_in_bounded_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr("mgqe_dist.submit.CONNECT_SECONDS", 1)
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        assert _submit(tmp_path, monkeypatch, address) == 2
        assert time.monotonic() - started < 10
    assert f"cannot reach the Ray cluster at {address} (no answer within 1 s)" in (
        capsys.readouterr().err
    )


def test_out_of_range_setting_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    job = write_job(tmp_path)
    assert main(["train", str(job), "--set", "train.epochs=0"]) == 2
    err = capsys.readouterr().err
    assert err == "mgqe-dist train: error: train.epochs must be >= 1, got 0\n"
    assert not (tmp_path / "run").exists()


def test_a_log_read_twice_still_evaluates_every_user(
    tiny_job: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # The tiny generated log, every row twice: held-out pairs must not also be trained on.
    log = Path(tomllib.loads(tiny_job.read_text())["data"]["prepared_dir"]) / "input"
    twice = tmp_path / "logs"
    twice.mkdir()
    for copy in ("a", "b"):
        shutil.copyfile(log / "interactions.parquet", twice / f"{copy}.parquet")
    settings = [f'data.source="{twice}"', f'data.prepared_dir="{tmp_path / "prepared"}"']
    settings += [f'output_dir="{tmp_path / "run"}"', "train.epochs=1", "embedding.kind=full"]
    args = [a for s in settings for a in ("--set", s)]
    assert main(["prepare", str(tiny_job), *args]) == 0
    assert main(["train", str(tiny_job), *args]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["data"]["rows"]["test"] == 120
    assert metrics["hr@10"] > 0.02 and metrics["valid_hr@10"] > 0.02


def test_version_prints_the_package_and_library_versions(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"mgqe-dist {mgqe_dist.__version__} (torch 2.13")
    assert "torchrec " in out and "Python 3.11" in out
    assert mgqe_dist.__version__ == importlib.metadata.version("mgqe-dist")
