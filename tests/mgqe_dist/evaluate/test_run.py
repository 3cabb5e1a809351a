"""`mgqe-dist evaluate`: a finished run's or artifact's metrics reproduced exactly, a
deterministic user sample, and one-line refusals of what cannot be evaluated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from mgqe_dist.cli import main
from mgqe_dist.evaluate.run import sample_users
from mgqe_dist.serve import load_artifact
from mgqe_dist.train.data import Interactions, PreparedData, load_prepared


def _train(job: Path, out: Path, *settings: str) -> Path:
    # On CPU, where `evaluate` runs by default, also on a machine with a GPU.
    overrides = [f'output_dir="{out}"', "train.epochs=1", "train.device=cpu", *settings]
    assert main(["train", str(job), *(a for s in overrides for a in ("--set", s))]) == 0
    return out


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def run(tiny_job: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny MGQE run and, beside it, its artifact."""
    root = tmp_path_factory.mktemp("evaluate")
    run = _train(tiny_job, root / "run")
    assert main(["export", str(run), "--out", str(root / "artifact")]) == 0
    return run


def _evaluate(*args: str) -> int:
    return main(["evaluate", *args])


def test_test_split_reproduces_metrics_json_exactly(
    run: Path, capsys: pytest.CaptureFixture
) -> None:
    capsys.readouterr()
    assert _evaluate(str(run)) == 0
    recorded = _json(run / "metrics.json")
    record = _json(run / "eval-test.json")
    assert record["metrics"] == {k: recorded[k] for k in ("hr@10", "ndcg@10", "evaluated_users")}
    assert record["same_as_recorded"] is True and record["kind"] == "run"
    assert record["split"] == "test" and record["sample"] is None
    out = capsys.readouterr().out.splitlines()[-1]
    assert out.startswith(f"test hr@10 {recorded['hr@10']:.4g} ndcg@10 ")
    assert out.endswith(f"(the same as recorded at training) -> {run / 'eval-test.json'}")


def test_valid_split_reproduces_the_recorded_validation(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "valid.json"
    assert _evaluate(str(run), "--split", "valid", "--out", str(out)) == 0
    recorded = _json(run / "metrics.json")
    metrics = _json(out)["metrics"]
    assert metrics == {k: recorded[f"valid_{k}"] for k in metrics}
    assert not (run / "eval-valid.json").exists()


def test_an_artifact_reproduces_the_runs_test_metrics(run: Path) -> None:
    artifact = run.parent / "artifact"
    assert _evaluate(str(artifact)) == 0
    record = _json(artifact / "eval-test.json")
    recorded = _json(run / "metrics.json")
    assert record["kind"] == "artifact" and record["same_as_recorded"] is True
    assert record["metrics"]["ndcg@10"] == recorded["ndcg@10"]
    load_artifact(artifact)  # the eval file beside the artifact's does not disturb loading


def test_a_regression_run_reproduces_its_rmse(tiny_job: Path, tmp_path: Path) -> None:
    run = _train(tiny_job, tmp_path / "run", "train.loss=squared", "embedding.kind=full")
    assert _evaluate(str(run)) == 0
    recorded = _json(run / "metrics.json")
    assert _json(run / "eval-test.json")["metrics"] == {
        "rmse": recorded["rmse"],
        "rows": recorded["rows"],
    }


def test_max_users_evaluates_the_same_sample_every_time(run: Path) -> None:
    records = []
    for _ in range(2):
        assert _evaluate(str(run), "--max-users", "50") == 0
        records.append(_json(run / "eval-test-50-users.json"))
    assert records[0]["metrics"] == records[1]["metrics"]
    assert records[0]["metrics"]["evaluated_users"] == 50
    assert records[0]["sample"] == {"max_users": 50, "seed": 0}
    assert records[0]["recorded"] is None and records[0]["same_as_recorded"] is None


def test_sample_users_is_seeded_uniform_not_the_first_users(tiny_job: Path) -> None:
    data = load_prepared(tiny_job.parent / "prepared")
    cut = sample_users(data, "test", 30, seed=0)
    users = cut.test.users
    assert len(users) == 30 and len(torch.unique(users)) == 30
    assert torch.equal(users, sample_users(data, "test", 30, seed=0).test.users)
    assert not torch.equal(users, sample_users(data, "test", 30, seed=1).test.users)
    assert not torch.equal(users, torch.unique(data.test.users)[:30])  # not the most active
    assert cut.valid is data.valid and cut.train is data.train  # masks and histories stay whole
    assert sample_users(data, "test", 10**6, seed=0) is data


def test_sample_users_keeps_every_row_of_a_chosen_user() -> None:
    held = Interactions(torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([1, 2, 3, 4, 5, 6]))
    empty = Interactions(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))
    cut = sample_users(PreparedData(empty, empty, held, 3, 7, {}, Path(".")), "test", 2, seed=0)
    assert len(torch.unique(cut.test.users)) == 2
    for user in torch.unique(cut.test.users).tolist():
        assert int((cut.test.users == user).sum()) == int((held.users == user).sum())


def _one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("mgqe-dist evaluate: error: ")
    return err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "train"], "--split must be one of valid, test, got 'train'"),
        (["--max-users", "0"], "--max-users must be >= 1, got 0"),
        (["--device", "tpu"], "--device must be one of cpu, cuda, auto, got 'tpu'"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    run: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    assert _evaluate(str(run), *args) == 2
    assert message in _one_line_error(capsys)


def test_a_directory_that_is_no_run_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _evaluate(str(tmp_path)) == 2
    assert "is neither a finished training run (no metrics.json) nor a serving artifact" in (
        _one_line_error(capsys)
    )
    assert _evaluate(str(tmp_path / "missing")) == 2
    assert "missing is not a directory" in _one_line_error(capsys)


def test_a_changed_model_exits_2_naming_the_file(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    copy = Path(shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns("eval-*")))
    state = torch.load(copy / "model.pt", weights_only=True)
    torch.save({key: value + 1 for key, value in state.items()}, copy / "model.pt")
    assert _evaluate(str(copy)) == 2
    assert f"{copy / 'model.pt'} is not the file {copy / 'metrics.json'} records" in (
        _one_line_error(capsys)
    )
    assert not (copy / "eval-test.json").exists()


def test_data_prepared_again_since_training_exits_2(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    metrics = _json(copy / "metrics.json")
    metrics["data"]["checksums"]["train.parquet"] = "0" * 64
    (copy / "metrics.json").write_text(json.dumps(metrics))
    assert _evaluate(str(copy)) == 2
    assert "is not the prepared data this model was trained on" in _one_line_error(capsys)


def test_an_artifact_exported_before_configs_were_recorded_exits_2(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    copy = Path(shutil.copytree(run.parent / "artifact", tmp_path / "artifact"))
    manifest = _json(copy / "manifest.json")
    del manifest["source"]["config"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert _evaluate(str(copy)) == 2
    assert "records no job config or prepared data" in _one_line_error(capsys)
