"""The report's tables: ours (mean ± standard error, in percent) beside the paper's, seed counts,
cells done, the data each ran on, and rows the paper does not have."""

import json
from pathlib import Path

from mgqe_dist.report.experiment import Column, Experiment, Study, Table
from mgqe_dist.report.render import results_text, study_data, table_lines

PAPER = {
    "t3": {"gmf": {"FE": {"hr@10": 7.79, "size_pct": 100.0}, "MGQE": {"hr@10": 8.03}}},
    "t6": {"gmf": {"shared (default)": {"hr@10": 8.03}, "unshared": {"hr@10": 7.79}}},
}


def _run(study: str, variant: str, seed: int, hr: float, **origin) -> dict:
    origin = {"format": "sasrec", "location": "ml-1m/ml-1m.txt", "synthetic": False, **origin}
    config = {
        "data": {"split": "leave_last_two_out", "random_fractions": [0.9, 0.0, 0.1]},
        "train": {"loss": "log", "target": "rating"},
    }
    return {
        "study": study,
        "variant": variant,
        "seed": seed,
        "hr@10": hr,
        "size_pct_of_full": 24.8,
        "data": {"origin": origin, "rows": {"input": 999611}},
        "config": config,
    }


def _experiment(tmp_path: Path) -> Experiment:
    (tmp_path / "paper.json").write_text(json.dumps(PAPER))
    table3 = Table(
        "3",
        "Task 1",
        ("FE", "MGQE", "MGQE (unshared)", "TorchRec int8"),
        (Column("gmf", "hr@10", "t3.gmf"),),
    )
    table6 = Table(
        "6",
        "Variants",
        ("MGQE (unshared)", "MGQE"),
        (Column("gmf", "hr@10", "t6.gmf"),),
        paper_rows={"MGQE": "shared (default)", "MGQE (unshared)": "unshared"},
    )
    variants = {v: () for v in ("FE", "MGQE", "MGQE (unshared)", "TorchRec int8")}
    return Experiment(
        name="x",
        seeds=(0, 1, 2),
        studies=(Study("gmf", "GMF", "job.toml", ("hr@10",)),),
        variants=variants,
        tables=(table3, table6),
        paper_results=str(tmp_path / "paper.json"),
    )


def _render(exp: Experiment, runs: list[dict], table: int = 0) -> str:
    results = {"runs": runs}
    data = {"gmf": study_data(exp, results, "gmf")}
    return "\n".join(table_lines(exp, exp.tables[table], results, data))


def test_table_shows_percent_with_standard_error_beside_the_paper(tmp_path: Path) -> None:
    runs = [_run("gmf", "FE", s, hr) for s, hr in enumerate([0.077, 0.078, 0.079])]
    runs += [_run("gmf", "MGQE", s, hr) for s, hr in enumerate([0.080, 0.082])]
    text = _render(_experiment(tmp_path), runs)
    # std of (7.7, 7.8, 7.9) is 0.1, its standard error 0.1 / sqrt(3).
    assert "| FE | 7.80 ± 0.06 | 7.79 | 24.8 | 100.0 |" in text
    assert "| MGQE | 8.10 ± 0.10 (n=2) | 8.03 | 24.8 | — |" in text
    assert "Cells done: **5 of 12**" in text
    assert "`ml-1m/ml-1m.txt` (sasrec format), 999,611 rows, leave-last-two-out" in text
    assert "GENERATED" not in text


def test_rows_the_table_lacks_say_where_the_paper_has_them(tmp_path: Path) -> None:
    text = _render(_experiment(tmp_path), [])
    assert "MGQE (unshared) (the paper reports them in its Table 6)" in text
    assert "TorchRec int8 (beyond the paper: in none of its tables)" in text


def test_paper_rows_map_variants_to_the_papers_method_names(tmp_path: Path) -> None:
    text = _render(_experiment(tmp_path), [_run("gmf", "MGQE", 0, 0.08)], table=1)
    assert "| MGQE | 8.00 (n=1) | 8.03 |" in text and "| MGQE (unshared) | — | 7.79 |" in text


def test_generated_data_is_named_in_the_title(tmp_path: Path) -> None:
    runs = [_run("gmf", "FE", 0, 0.2, synthetic=True, format="synthetic")]
    text = _render(_experiment(tmp_path), runs)
    assert text.startswith("## Table 3. GENERATED DATA — Task 1")
    assert "GENERATED MovieLens-shaped log" in text


def test_regression_on_a_file_without_ratings_is_flagged(tmp_path: Path) -> None:
    run = _run("gmf", "FE", 0, 0.2)
    run["config"]["train"]["loss"] = "squared"
    data = study_data(_experiment(tmp_path), {"runs": [run]}, "gmf")
    assert "has no ratings" in data.text and "RMSE compares nothing" in data.text


def test_results_json_keeps_one_run_per_line_and_parses() -> None:
    results = {"experiment": "x", "runs": [{"seed": 0, "history": [1, 2]}, {"seed": 1}]}
    text = results_text(results)
    assert json.loads(text) == results
    assert '    {"history": [1, 2], "seed": 0},\n' in text
