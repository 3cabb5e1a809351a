"""`mgqe-dist report` end to end on a tiny grid: real training runs in child processes,
tables with mean ± standard error over seeds, figures, results.json, and resuming without
re-running, from run directories or from the committed results.json."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mgqe_dist.cli import main
from mgqe_dist.config import ConfigError, JobConfig, to_dict
from mgqe_dist.report.experiment import load_experiment
from mgqe_dist.report.grid import Cell
from mgqe_dist.report.results import Summary, paper_value, summarize
from mgqe_dist.train.outputs import write_run_outputs
from tests.mgqe_dist.train.test_tasks import REGRESSION
from tests.mgqe_dist.train.test_tracking import tracked_runs

EXPERIMENT = """
name = "tiny-grid"
seeds = [0, 1]
runs_dir = "{root}/runs"
reports_dir = "{root}/reports"

[variants]
FE = []
SQ = ['embedding.kind="sq"']
MGQE = ['embedding.kind="mgqe"']
"FE d=8" = ["embedding.dim=8"]

[[studies]]
id = "ratings"
title = "GMF ratings"
job = "{root}/job.toml"
metrics = ["rmse"]
lower_is_better = true
set = ["train.epochs=2"]

[[tables]]
id = "5"
title = "ratings RMSE"
rows = ["{rows}"]
columns = [{{study = "ratings", metric = "rmse"}}]

[size_figure]
studies = ["ratings"]
seeds = [0]
series = [{{label = "FE (d)", variants = ["FE d=8", "FE"]}}]

[loss_figure]
studies = ["ratings"]
variants = ["FE", "MGQE"]

[code_figure]
study = "ratings"
variants = ["SQ", "MGQE"]
genres = ["Sci-Fi", "Romance", "Animation", "Horror"]
"""


def _write(root: Path, rows: str = '", "'.join(["FE", "SQ", "MGQE"])) -> Path:
    (root / "job.toml").write_text(REGRESSION.format(root=root))
    spec = root / "experiment.toml"
    spec.write_text(EXPERIMENT.format(root=root, rows=rows))
    return spec


def test_report_runs_grid_then_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture, mlflow_store: str
) -> None:
    spec = _write(tmp_path)
    assert main(["report", str(spec)]) == 0
    out = tmp_path / "reports" / "tiny-grid"
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 7 and not results["missing"]  # 3 x 2 seeds + FE d=8
    report = (out / "README.md").read_text()
    fe = [r["rmse"] for r in results["runs"] if r["variant"] == "FE"]
    assert f"| FE | {np.mean(fe):.4f} ± {np.std(fe, ddof=1) / np.sqrt(2):.4f} |" in report
    assert "GENERATED DATA" in report and "GENERATED stand-in genres" in report
    for figure in ("fig6_size.png", "fig7_loss.png", "fig8_codes.png"):
        assert (out / figure).stat().st_size > 1000
    cells = {Path(r["config"]["output_dir"]) for r in results["runs"]}
    runs = [r for cell in cells for r in tracked_runs(mlflow_store, cell, experiment="tiny-grid")]
    assert len(runs) == 7 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r["variant"] for r in results["code_figure"]["runs"].values()} == {"SQ", "MGQE"}
    capsys.readouterr()
    assert main(["report", str(spec)]) == 0
    assert "7 finished, 0 to run" in capsys.readouterr().out


def test_runs_only_in_results_json_are_not_rerun_and_stay_in_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    spec = _write(tmp_path, rows="FE")
    assert main(["report", str(spec)]) == 0
    out = tmp_path / "reports" / "tiny-grid"
    before = json.loads((out / "results.json").read_text())
    (out / "fig8_codes.png").unlink()
    shutil.rmtree(tmp_path / "runs")  # a fresh checkout: run directories are not committed
    capsys.readouterr()
    assert main(["report", str(spec)]) == 0
    assert "7 finished, 0 to run" in capsys.readouterr().out
    after = json.loads((out / "results.json").read_text())
    assert after["runs"] == before["runs"] and after["code_figure"] == before["code_figure"]
    assert (out / "fig8_codes.png").stat().st_size > 1000  # drawn from the kept matrices
    # A committed run whose config no longer matches its cell is trained again; the other
    # cells (FE d=8 for figure 6, SQ and MGQE for figures 7 and 8) are kept.
    spec.write_text(spec.read_text().replace("FE = []", 'FE = ["train.learning_rate=0.01"]'))
    capsys.readouterr()
    assert main(["report", str(spec)]) == 0
    assert "5 finished, 2 to run" in capsys.readouterr().out


def test_finished_reads_the_recorded_config_with_todays_defaults(tmp_path: Path) -> None:
    cell = Cell("ratings", "FE", 0, JobConfig(name="fe", output_dir=str(tmp_path)))

    def record(config: dict) -> None:
        write_run_outputs(tmp_path, {}, {}, {"config": config, "rmse": 1.0})

    config = to_dict(cell.job)
    del config["data"]["synth_sequential"]  # a key added after the run, at its default
    record(config)
    assert (cell.finished() or {}).get("rmse") == 1.0
    config["train"]["epochs"] += 1
    record(config)
    assert cell.finished() is None
    record({**to_dict(cell.job), "retired_key": 1})
    assert cell.finished() is None


def test_tracking_settings_do_not_rerun_a_cell(tmp_path: Path) -> None:
    cell = Cell("ratings", "FE", 0, JobConfig(name="fe", output_dir=str(tmp_path)))
    config = to_dict(cell.job)
    config["tracking"] = {"backends": [], "uri": "sqlite:///elsewhere.db", "experiment": "x"}
    write_run_outputs(tmp_path, {}, {}, {"config": config, "rmse": 1.0})
    assert cell.finished() is not None


def test_half_written_run_is_not_finished(tmp_path: Path) -> None:
    cell = Cell("ratings", "FE", 0, JobConfig(name="fe", output_dir=str(tmp_path)))
    write_run_outputs(tmp_path, {}, {}, {"config": to_dict(cell.job), "rmse": 1.0})
    assert cell.finished() is not None
    torch.save({"w": torch.ones(1)}, tmp_path / "model.pt")  # a retrain killed before metrics
    assert cell.finished() is None


def test_summary_over_chosen_seeds() -> None:
    runs = [
        {"study": "s", "variant": "FE", "seed": seed, "rmse": rmse}
        for seed, rmse in [(0, 1.0), (1, 2.0), (2, 4.0)]
    ]
    assert summarize({"runs": runs}, "s", "FE", "rmse").mean == pytest.approx(7 / 3)
    assert summarize({"runs": runs}, "s", "FE", "rmse", seeds=[0]) == Summary(1.0, 0.0, 1)


def test_unknown_variant_fails_before_training(tmp_path: Path) -> None:
    spec = _write(tmp_path, rows="FE")
    spec.write_text(spec.read_text().replace('rows = ["FE"]', 'rows = ["FE", "PQ"]'))
    with pytest.raises(ConfigError, match="names unknown variant 'PQ'"):
        load_experiment(spec)


def test_bad_override_fails_before_training(tmp_path: Path) -> None:
    spec = _write(tmp_path, rows="FE")
    spec.write_text(spec.read_text().replace("train.epochs=2", "train.epoch=2"))
    with pytest.raises(ConfigError, match="unknown key"):
        load_experiment(spec)


def test_unknown_key_in_a_section_is_refused(tmp_path: Path) -> None:
    spec = _write(tmp_path, rows="FE")
    spec.write_text(spec.read_text().replace("[loss_figure]", '[loss_figure]\nstudy = "ratings"'))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'study' in \[loss_figure\]"):
        load_experiment(spec)


def test_committed_run_counts_as_finished_only_with_the_cells_config(tmp_path: Path) -> None:
    job = JobConfig(name="fe", output_dir=str(tmp_path / "absent"))
    run = {"study": "ratings", "variant": "FE", "seed": 0, "config": to_dict(job), "rmse": 1.0}
    cell = Cell("ratings", "FE", 0, job, committed=run)
    assert cell.run_dir_metrics() is None
    assert (cell.finished() or {}).get("rmse") == 1.0
    changed = to_dict(job)
    changed["train"]["epochs"] += 1
    assert Cell("ratings", "FE", 0, job, committed={**run, "config": changed}).finished() is None


@pytest.mark.parametrize("quick", [False, True])
def test_committed_experiment_spec_is_valid(quick: bool) -> None:
    exp = load_experiment("experiments/paper.toml", quick=quick)
    assert len(exp.tables) == 4 and {t.id for t in exp.tables} == {"3", "4", "5", "6"}
    kinds = {"FE", "LRF", "SQ", "DPQ", "MGQE", "MGQE (unshared)", "MGQE (var D)", "TorchRec int8"}
    assert kinds <= set(exp.table_variants)
    assert len(exp.seeds) == (1 if quick else 5)
    # Every column says where the paper's values are: the paper's MGQE row is found in each.
    for table in exp.tables:
        for column in table.columns:
            assert paper_value(exp, table, column, "MGQE", column.metric) is not None
