"""Fig. 8's matrices survive in results.json while their runs do; a changed run or draw drops
them when the run directory is not there to compute them again."""

from pathlib import Path

from mgqe_dist.config import JobConfig, to_dict
from mgqe_dist.report.derived import code_figure_data
from mgqe_dist.report.experiment import Experiment, Study
from mgqe_dist.report.grid import Cell


def _setup(tmp_path: Path, outputs: str) -> tuple[Experiment, list[Cell], dict]:
    exp = Experiment(
        name="x",
        seeds=(0,),
        studies=(Study("gmf", "GMF", "job.toml", ("hr@10",)),),
        variants={"SQ": (), "MGQE": ()},
        tables=(),
        code_study="gmf",
        code_variants=("SQ", "MGQE"),
        genres=("a", "b"),
        movies_per_genre=2,
    )
    cells = []
    for variant in exp.code_variants:
        job = JobConfig(name=variant, output_dir=str(tmp_path / variant))  # no run directory
        run = {"config": to_dict(job), "outputs": {"model.pt": outputs}, "seed": 0}
        cells.append(Cell("gmf", variant, 0, job, committed=run))
    previous = code_figure_data(exp, [], None)
    previous.update(origin="o", available={"a": 4, "b": 4}, sets={"A": {}, "B": {}})
    previous["runs"] = {
        f"{v}|0": {"variant": v, "seed": 0, "outputs": {"model.pt": "abc"}, "matrix": [[1.0]]}
        for v in exp.code_variants
    }
    return exp, cells, previous


def test_kept_matrices_of_unchanged_runs_are_reused(tmp_path: Path) -> None:
    exp, cells, previous = _setup(tmp_path, outputs="abc")
    data = code_figure_data(exp, cells, previous)
    assert data["runs"] == previous["runs"] and data["sets"] == previous["sets"]


def test_matrices_of_retrained_runs_are_dropped(tmp_path: Path) -> None:
    exp, cells, previous = _setup(tmp_path, outputs="retrained")
    assert code_figure_data(exp, cells, previous)["runs"] == {}


def test_a_changed_draw_drops_everything(tmp_path: Path) -> None:
    exp, cells, previous = _setup(tmp_path, outputs="abc")
    previous["key"] = {**previous["key"], "movies_per_genre": 200}
    data = code_figure_data(exp, cells, previous)
    assert data["runs"] == {} and "sets" not in data
