"""Writes reports/<name>/: README.md (the report), results.json and the figures' PNGs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from data_pipeline.files import atomic_path, write_json_atomic
from mgqe_dist.report import figures
from mgqe_dist.report.experiment import Experiment, Table
from mgqe_dist.report.genres import genre_index, item_codes
from mgqe_dist.report.grid import Cell
from mgqe_dist.report.results import paper_value, summarize

METRIC_NAMES = {"hr@10": "HR@10", "ndcg@10": "NDCG@10", "rmse": "RMSE"}


def write_report(exp: Experiment, cells: list[Cell], results: dict[str, Any]) -> Path:
    """Render every table and figure from `results`; returns the report directory."""
    out = Path(exp.reports_dir) / exp.name
    write_json_atomic(results, out / "results.json")
    lines = [f"# MGQE paper reproduction: `{exp.name}`", ""]
    lines += _preamble(exp, cells, results)
    for table in exp.tables:
        lines += _table(exp, table, results)
    lines += _figures(exp, cells, results, out)
    lines += _settings(exp, results)
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return out


def _preamble(exp: Experiment, cells: list[Cell], results: dict[str, Any]) -> list[str]:
    lines = []
    origins = {
        r["study"]: r["data"]["origin"] for r in results["runs"] if r["data"]["origin"]["synthetic"]
    }
    if origins:
        lines += [
            "> **GENERATED DATA.** MovieLens-1M was not found in `../shared/data/ml-1m`, so the "
            "MovieLens studies ran on a generated MovieLens-shaped log (same numbers of users, "
            "items and ratings; see `data_pipeline/synth.py`). These are not MovieLens-1M "
            f"results. Studies affected: {', '.join(sorted(origins))}.",
            "",
        ]
        ordered = sorted(
            {r["study"] for r in results["runs"] if r["config"]["data"].get("synth_sequential")}
            & set(origins)
        )
        if ordered:
            lines += [
                f"In {', '.join(ordered)}, each user's generated items are time-ordered along a "
                "random drift of taste (`data.synth_sequential`), so that the sequence carries "
                "a signal, as real watch histories do; with random times a sequence model can "
                "learn popularity only.",
                "",
            ]
    if results["quick"]:
        lines += ["> **QUICK GRID** (CI smoke run): tiny data, one epoch. Not results.", ""]
    done, total = results["compute"]["runs"], results["cells"]
    compute = results["compute"]
    lines += [
        f"Cells finished: **{done} of {total}** (seeds {list(exp.seeds)}). Compute: "
        f"{compute['run_hours_total']} h of run time over {done} runs on "
        f"{', '.join(compute['devices'])} ({compute['cpu_count']} CPU cores, cells run in "
        "parallel child processes).",
        "",
    ]
    if results["missing"]:
        lines += [
            f"**{len(results['missing'])} cell(s) have not finished yet**; `mgqe-dist report` "
            "resumes them. Values below average the seeds that finished (count in brackets).",
            "",
        ]
    if exp.note:
        lines += [exp.note, ""]
    lines += [
        "Values are mean ± sample standard deviation over seeds (seed count in brackets when "
        "fewer than all finished). Size is the serving size as % of the same model with full "
        "float32 embeddings (embedding tables plus every dense parameter at 32 bits). "
        "HR@10/NDCG@10 rank each user's held-out item against **all** items (seen items "
        "masked), not against 100 sampled negatives as in NCF/SASRec, so absolute values are "
        "lower than sampled-metric numbers.",
        "",
        "Paper column: the MGQE paper's own values are not transcribed (no copy of the paper "
        'was available offline); its cells read "—" until they are entered in the experiment '
        "spec (`[tables.paper]`, keys `variant|study|metric`).",
        "",
    ]
    return lines


def _table(exp: Experiment, table: Table, results: dict[str, Any]) -> list[str]:
    studies = list(dict.fromkeys(c.study for c in table.columns))
    header = ["Method"]
    for study in studies:
        for column in (c for c in table.columns if c.study == study):
            name = f"{study} {METRIC_NAMES.get(column.metric, column.metric)}"
            header += [name, "paper"]
        header.append(f"{study} size %")
    lines = [f"## Table {table.id}. {table.title}", ""]
    if table.note:
        lines += [table.note, ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant in table.rows:
        row = [variant]
        for study in studies:
            for column in (c for c in table.columns if c.study == study):
                row.append(_cell(summarize(results, study, variant, column.metric), len(exp.seeds)))
                paper = paper_value(exp, table, column, variant, column.metric)
                row.append("—" if paper is None else f"{paper:g}")
            size = summarize(results, study, variant, "size_pct_of_full")
            row.append("—" if not size.n else f"{size.mean:.1f}")
        lines.append("| " + " | ".join(row) + " |")
    return [*lines, ""]


def _cell(summary: Any, seeds: int) -> str:
    text: str = summary.text()
    return text if summary.n in (0, seeds) else f"{text} ({summary.n})"


def _figures(exp: Experiment, cells: list[Cell], results: dict[str, Any], out: Path) -> list[str]:
    lines = ["## Figures", ""]
    for study in exp.size_studies:
        path = figures.size_figure(exp, results, study, out / f"fig6_size_{study}.png")
        lines += [
            f"### Fig. 6: {exp.study(study).title}, {exp.study(study).metrics[0]} vs size "
            f"(seeds {list(exp.size_seeds)})",
            "",
            f"![size]({path.name})",
            "",
        ]
    if exp.loss_studies:
        path = figures.loss_figure(exp, results, out / "fig7_loss.png")
        lines += [
            f"### Fig. 7: training loss, {' vs '.join(exp.loss_variants)}",
            "",
            f"![loss]({path.name})",
            "",
        ]
    if exp.code_study:
        lines += _code_section(exp, cells, out)
    return lines


def _code_section(exp: Experiment, cells: list[Cell], out: Path) -> list[str]:
    seed = exp.seeds[0]
    chosen = {
        c.variant: c
        for c in cells
        if c.study == exp.code_study and c.seed == seed and c.variant in exp.code_variants
    }
    finished = {v: c for v, c in chosen.items() if c.finished() is not None}
    title = (
        f"Fig. 8: code agreement between genres ({exp.study(exp.code_study).title}, seed {seed})"
    )
    if len(finished) < len(exp.code_variants):
        return [f"### {title}", "", "Not drawn yet: its runs have not finished.", ""]
    genre_of, origin = genre_index(next(iter(finished.values())).job, exp.genres)
    matrices = {}
    for variant, cell in finished.items():
        codes = item_codes(cell.job.output_dir)
        matrices[variant] = figures.code_similarity(codes[: len(genre_of)], genre_of, exp.genres)
    path = figures.code_figure(matrices, exp.genres, title, out / "fig8_codes.png")
    counts = {g: int((genre_of == i).sum()) for i, g in enumerate(exp.genres)}
    lines = [
        f"### {title}",
        "",
        f"![codes]({path.name})",
        "",
        f"Genres: {origin}. Items with exactly one of the genres: {counts}. A cell is the mean "
        "share of code positions on which two different items of the two genres agree.",
        "",
    ]
    for variant, matrix in matrices.items():
        inside = float(sum(matrix[i, i] for i in range(len(matrix))) / len(matrix))
        between = float(
            (matrix.sum() - sum(matrix[i, i] for i in range(len(matrix))))
            / (matrix.size - len(matrix))
        )
        ratio = inside / between if between > 0 and not math.isnan(between) else math.nan
        lines.append(
            f"- {variant}: within-genre agreement {inside:.4f}, between-genre {between:.4f} "
            f"(ratio {ratio:.3f})"
        )
    return [*lines, ""]


def _settings(exp: Experiment, results: dict[str, Any]) -> list[str]:
    lines = ["## Settings", "", "| study | job spec | overrides for this report |", "|---|---|---|"]
    for study in exp.studies:
        lines.append(f"| {study.title} | `{study.job}` | `{' '.join(study.set) or '—'}` |")
    lines += ["", "| variant | overrides |", "|---|---|"]
    lines += [f"| {name} | `{' '.join(sets) or '—'}` |" for name, sets in exp.variants.items()]
    runs = results["runs"]
    if runs:
        versions = runs[0]["versions"]
        lines += [
            "",
            "Versions (first run): "
            + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if v),
        ]
    seconds: dict[str, float] = {}
    for run in runs:
        seconds[run["study"]] = seconds.get(run["study"], 0.0) + run["wall_seconds"]
    lines += [
        "",
        "Run time per study: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items()),
    ]
    return [*lines, ""]
