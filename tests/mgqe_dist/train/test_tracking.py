"""Run tracking end to end: tiny `train` runs read back from a real local MLflow store and from
TensorBoard's event files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mgqe_dist.cli import main
from mgqe_dist.config import TrackingConfig, load_job
from mgqe_dist.train.tracking import TRACKERS, create_experiments


def tracked_runs(uri: str, output_dir: Path, experiment: str = "tiny") -> list[Run]:
    """The MLflow runs of `experiment` that trained into `output_dir`."""
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} in {uri}"
    runs = client.search_runs([found.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("mgqe.output_dir") == str(output_dir.resolve())]


def _train(tiny_job: Path, out: Path, *settings: str) -> int:
    args = ["train", str(tiny_job), "--set", f'output_dir="{out}"']
    return main([*args, *[a for s in settings for a in ("--set", s)]])


def test_run_is_read_back_from_mlflow_and_tensorboard(tiny_job: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    out = tmp_path / "run"
    assert _train(tiny_job, out, f'tracking.uri="{uri}"') == 0
    metrics = json.loads((out / "metrics.json").read_text())
    [run] = tracked_runs(uri, out)
    client = MlflowClient(uri)
    assert run.info.status == "FINISHED" and run.info.run_name == str(out)
    params = run.data.params
    assert params["name"] == "tiny" and params["seed"] == "0"
    assert params["train.epochs"] == "2" and params["embedding.kind"] == "mgqe"
    assert params["embedding.num_centroids"] == "[16, 4]"
    assert params["tracking.uri"] == uri
    losses = [r["loss"] for r in metrics["history"]]
    history = client.get_metric_history(run.info.run_id, "epoch/loss")
    assert [(m.step, m.value) for m in history] == list(enumerate(losses, start=1))
    valid = client.get_metric_history(run.info.run_id, "epoch/valid_ndcg_at_10")
    assert [m.value for m in valid] == [r["valid_ndcg@10"] for r in metrics["history"]]
    assert run.data.metrics["hr_at_10"] == metrics["hr@10"]
    assert run.data.metrics["size_pct_of_full"] == metrics["size_pct_of_full"]
    listed = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert listed == {"model/model.pt", "model/model.json", "model/metrics.json"}
    local = Path(client.download_artifacts(run.info.run_id, "model/metrics.json", str(tmp_path)))
    assert local.read_bytes() == (out / "metrics.json").read_bytes()
    assert run.info.artifact_uri.startswith((tmp_path / "store" / "artifacts").as_uri())

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    scalars = [(e.step, e.value) for e in events.Scalars("epoch/loss")]
    assert [s for s, _ in scalars] == [1, 2]
    assert [v for _, v in scalars] == pytest.approx(losses)
    [final] = events.Scalars("final/hr_at_10")
    assert final.value == pytest.approx(metrics["hr@10"])


def test_no_backends_writes_and_imports_nothing(tiny_job: Path, tmp_path: Path) -> None:
    """tracking.backends = []: no store, no event files, and neither library is imported."""
    store, out = tmp_path / "store", tmp_path / "run"
    code = (
        "import sys\n"
        "from mgqe_dist.cli import main\n"
        f"assert main(['train', {str(tiny_job)!r}, '--set', 'output_dir=\"{out}\"', '--set',"
        f" 'tracking.backends=[]', '--set', 'tracking.uri=\"sqlite:///{store}/mlflow.db\"']) == 0\n"
        "assert 'mlflow' not in sys.modules and 'torch.utils.tensorboard' not in sys.modules\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}/env.db"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "metrics.json").is_file()
    assert not store.exists() and not (out / "tensorboard").exists()
    assert "tracking:" not in done.stdout


def test_unusable_store_fails_before_training(
    tiny_job: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "afile").write_text("not a directory")
    uri = f"sqlite:///{tmp_path / 'afile' / 'mlflow.db'}"
    assert _train(tiny_job, tmp_path / "run", f'tracking.uri="{uri}"') == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0
    assert err.startswith(f"mgqe-dist train: error: tracking: mlflow is unusable ({uri}")
    assert "leave 'mlflow' out of tracking.backends" in err
    assert "epoch 1" not in captured.out
    assert not (tmp_path / "run").exists()


def test_logging_failure_mid_run_keeps_the_run(
    tiny_job: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The store accepts the run but not its artifacts (their directory is a file): the run
    still writes its outputs and exits 0, with one warning line; MLflow marks the run FAILED
    and keeps what was logged before."""
    store, out = tmp_path / "store", tmp_path / "run"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    job = load_job(tiny_job, [f'tracking.uri="{uri}"'])
    create_experiments([job])
    (store / "artifacts").write_text("in the way")
    assert _train(tiny_job, out, f'tracking.uri="{uri}"') == 0
    assert (out / "metrics.json").is_file() and (out / "model.pt").is_file()
    warnings = [line for line in capsys.readouterr().err.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING: mlflow tracking failed")
    [run] = tracked_runs(uri, out)
    assert run.info.status == "FAILED"
    assert len(MlflowClient(uri).get_metric_history(run.info.run_id, "epoch/loss")) == 2
    assert EventAccumulator(str(out / "tensorboard")).Reload().Scalars("final/hr_at_10")


def test_every_configurable_backend_has_a_tracker() -> None:
    entry = typing.get_args(typing.get_type_hints(TrackingConfig)["backends"])[0]
    assert set(TRACKERS) == set(typing.get_args(entry))


def test_runs_starting_together_share_a_fresh_store(tmp_path: Path) -> None:
    """Two processes open the same new SQLite store at once (as the demo's two runs do): MLflow
    creates its tables on first use, which must happen once."""
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    code = (
        "import sys\n"
        "from mgqe_dist.config import JobConfig, TrackingConfig\n"
        "from mgqe_dist.train.tracking import open_tracking, run_info\n"
        f"tracking = TrackingConfig(backends=('mlflow',), uri={uri!r})\n"
        f"job = JobConfig(name=sys.argv[1], output_dir={str(tmp_path)!r} + '/' + sys.argv[1],"
        " tracking=tracking)\n"
        "open_tracking(job.tracking, run_info(job)).close('FINISHED')\n"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", code, name], stderr=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-2000:]
    for name in ("a", "b"):
        [run] = tracked_runs(uri, tmp_path / name, experiment=name)
        assert run.info.status == "FINISHED"
