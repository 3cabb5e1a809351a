"""Experiment specs: a grid of studies (a job spec each) x variants (embedding settings) x seeds,
and the tables and figures of the report built from it.

A variant is a list of `--set` overrides applied to every study's job; the tables list the
variants as rows, figure 6 draws series of variants against their model size. Everything is
validated when the spec is read, so a typo fails before any training starts.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgqe_dist.config import ConfigError, JobConfig, load_job, read_toml


@dataclass(frozen=True)
class Study:
    """One model on one dataset: a job spec plus overrides shared by all its cells."""

    id: str
    title: str
    job: str
    metrics: tuple[str, ...]  # test metric keys, the first one drawn in figures
    lower_is_better: bool = False
    set: tuple[str, ...] = ()
    # `mgqe-dist synth` arguments that generate the job's data.source when it is missing.
    synth: tuple[str, ...] = ()


@dataclass(frozen=True)
class Column:
    """A table column: one metric of one study."""

    study: str
    metric: str
    # Where the paper's value is in the results JSON: a dotted path to a {method: {metric}}
    # mapping, e.g. "table3_movielens_task1.gmf" ("" = the paper has no such column).
    paper: str = ""


@dataclass(frozen=True)
class Table:
    """A report table in the layout of one of the paper's: variants as rows."""

    id: str
    title: str
    rows: tuple[str, ...]
    columns: tuple[Column, ...]
    # The paper's method name of a row where it differs from the variant's, e.g. "MGQE" ->
    # "shared, D=64, K=[256,64] (default)" in Table 6.
    paper_rows: dict[str, str] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Series:
    """Figure 6: variants of one method at several sizes, drawn as one line."""

    label: str
    variants: tuple[str, ...]


@dataclass(frozen=True)
class Experiment:
    """A whole experiment spec."""

    name: str
    seeds: tuple[int, ...]
    studies: tuple[Study, ...]
    variants: dict[str, tuple[str, ...]]
    tables: tuple[Table, ...]
    size_series: tuple[Series, ...] = ()
    size_studies: tuple[str, ...] = ()  # studies figure 6 is drawn for
    size_seeds: tuple[int, ...] = ()  # seeds of the figure-6-only variants (default: seeds)
    loss_studies: tuple[str, ...] = ()  # figure 7: training loss of FE vs MGQE, a panel each
    loss_variants: tuple[str, ...] = ()
    code_study: str = ""  # figure 8: code similarity between genres on this study
    code_variants: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    movies_per_genre: int = 200  # figure 8: items drawn per genre, in each of two sets
    paper_results: str = ""  # the paper's results as JSON (see Column.paper)
    runs_dir: str = "runs/report"
    reports_dir: str = "reports"
    note: str = ""

    @property
    def table_variants(self) -> tuple[str, ...]:
        """Variants that appear in a table (run with every seed)."""
        return tuple(dict.fromkeys(v for t in self.tables for v in t.rows))

    def study(self, study_id: str) -> Study:
        """The study with this id."""
        return {s.id: s for s in self.studies}[study_id]

    @property
    def report_dir(self) -> Path:
        """Where the report is written (README.md, results.json, figures)."""
        return Path(self.reports_dir) / self.name


def committed_results(exp: Experiment) -> dict[str, Any]:
    """The experiment's results.json as last written (committed with the report), or {} when
    it is missing, unreadable or another experiment's."""
    try:
        results = json.loads((exp.report_dir / "results.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(results, dict) or results.get("experiment") != exp.name:
        return {}
    return results


def load_experiment(path: str | Path, quick: bool = False) -> Experiment:
    """Read and validate an experiment spec; `quick` applies its [quick] section (a small grid
    for CI: fewer seeds, and per-study overrides such as one epoch on a small dataset)."""
    path = Path(path)
    raw = read_toml(path, "experiment spec")
    where = str(path)
    _check_keys(raw, where)
    quick_raw = raw.pop("quick", {})
    try:
        experiment = _parse(raw, quick_raw if quick else None)
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{where}: missing or malformed entry: {exc}") from exc
    _check(experiment, where)
    return experiment


# The keys each section of a spec may hold; anything else is a ConfigError naming it (a stale
# or misspelt key would otherwise be ignored silently, e.g. `study` in [loss_figure]).
TOP_KEYS = {
    "name",
    "seeds",
    "runs_dir",
    "reports_dir",
    "paper_results",
    "note",
    "variants",
    "studies",
    "tables",
    "size_figure",
    "loss_figure",
    "code_figure",
    "quick",
}
SECTION_KEYS = {
    "studies": {"id", "title", "job", "metrics", "lower_is_better", "set", "synth"},
    "tables": {"id", "title", "rows", "columns", "paper_rows", "note"},
    "tables.columns": {"study", "metric", "paper"},
    "size_figure": {"studies", "seeds", "series"},
    "size_figure.series": {"label", "variants"},
    "loss_figure": {"studies", "variants"},
    "code_figure": {"study", "variants", "genres", "movies_per_genre"},
    "quick": {"name", "seeds", "size_seeds", "size_studies", "set", "synth"},
}


def _check_keys(raw: dict[str, Any], where: str) -> None:
    """Refuse keys a section does not define, naming the section and the allowed keys."""

    def refuse(section: str, entry: Any, allowed: set[str]) -> None:
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: [{section}] must be a table, got {entry!r}")
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))} in [{section}]; "
                f"allowed: {', '.join(sorted(allowed))}"
            )

    refuse("top level", raw, TOP_KEYS)
    for section in ("size_figure", "loss_figure", "code_figure", "quick"):
        if section in raw:
            refuse(section, raw[section], SECTION_KEYS[section])
    for entry in raw.get("studies", []):
        refuse("studies", entry, SECTION_KEYS["studies"])
    for entry in raw.get("tables", []):
        refuse("tables", entry, SECTION_KEYS["tables"])
        for column in entry.get("columns", []):
            refuse("tables.columns", column, SECTION_KEYS["tables.columns"])
    for series in raw.get("size_figure", {}).get("series", []):
        refuse("size_figure.series", series, SECTION_KEYS["size_figure.series"])


def _parse(raw: dict[str, Any], quick: dict[str, Any] | None) -> Experiment:
    studies = []
    for s in raw.pop("studies"):
        extra = tuple(quick.get("set", {}).get(s["id"], ())) if quick is not None else ()
        synth = tuple(s.get("synth", ()))
        if quick is not None:
            synth = tuple(quick.get("synth", {}).get(s["id"], synth))
        studies.append(
            Study(
                id=s["id"],
                title=s["title"],
                job=s["job"],
                metrics=tuple(s["metrics"]),
                lower_is_better=bool(s.get("lower_is_better", False)),
                set=tuple(s.get("set", ())) + extra,
                synth=synth,
            )
        )
    tables = tuple(
        Table(
            id=str(t["id"]),
            title=t["title"],
            rows=tuple(t["rows"]),
            columns=tuple(
                Column(c["study"], c["metric"], c.get("paper", "")) for c in t["columns"]
            ),
            paper_rows=dict(t.get("paper_rows", {})),
            note=t.get("note", ""),
        )
        for t in raw.pop("tables")
    )
    size = raw.pop("size_figure", {})
    loss = raw.pop("loss_figure", {})
    codes = raw.pop("code_figure", {})
    name = raw.pop("name")
    seeds = tuple(raw.pop("seeds"))
    size_seeds = tuple(size.get("seeds", seeds))
    size_studies = tuple(size.get("studies", ()))
    if quick is not None:
        name = quick.get("name", f"{name}-quick")
        seeds = tuple(quick.get("seeds", seeds))
        size_seeds = tuple(quick.get("size_seeds", size_seeds))
        size_studies = tuple(quick.get("size_studies", size_studies))
    return Experiment(
        name=name,
        seeds=seeds,
        studies=tuple(studies),
        variants={k: tuple(v) for k, v in raw.pop("variants").items()},
        tables=tables,
        size_series=tuple(Series(s["label"], tuple(s["variants"])) for s in size.get("series", [])),
        size_studies=size_studies,
        size_seeds=size_seeds,
        loss_studies=tuple(loss.get("studies", ())),
        loss_variants=tuple(loss.get("variants", ())),
        code_study=codes.get("study", ""),
        code_variants=tuple(codes.get("variants", ())),
        genres=tuple(codes.get("genres", ())),
        movies_per_genre=int(codes.get("movies_per_genre", 200)),
        **raw,
    )


def _check(exp: Experiment, where: str) -> None:
    """Every reference names something defined; every study's job spec loads with every
    variant's overrides (so a bad override fails now, not hours into the grid)."""
    studies = {s.id for s in exp.studies}
    if not exp.seeds:
        raise ConfigError(f"{where}: seeds is empty")
    references = [(t.id, v) for t in exp.tables for v in t.rows]
    references += [(f"size series {s.label}", v) for s in exp.size_series for v in s.variants]
    references += [("loss_figure", v) for v in exp.loss_variants]
    references += [("code_figure", v) for v in exp.code_variants]
    for owner, variant in references:
        if variant not in exp.variants:
            raise ConfigError(f"{where}: {owner} names unknown variant {variant!r}")
    used = [c.study for t in exp.tables for c in t.columns] + list(exp.size_studies)
    used += [*exp.loss_studies, *([exp.code_study] if exp.code_study else [])]
    for study_id in used:
        if study_id not in studies:
            raise ConfigError(f"{where}: unknown study {study_id!r}; defined: {sorted(studies)}")
    for study in exp.studies:
        for variant in exp.variants:
            job_for(exp, study, variant, exp.seeds[0])


def job_for(exp: Experiment, study: Study, variant: str, seed: int) -> JobConfig:
    """The job of one grid cell: the study's spec with its overrides, the variant's, the seed
    and the cell's output directory (and a per-seed prepared directory for random splits,
    whose rows depend on the seed); its tracked runs go to the experiment's name unless the
    study's job names an experiment."""
    cell_dir = Path(exp.runs_dir) / exp.name / study.id / slug(variant) / f"seed{seed}"
    overrides = [*study.set, *exp.variants[variant], f"seed={seed}", f'output_dir="{cell_dir}"']
    job = load_job(study.job, overrides)
    tracking = dataclasses.replace(job.tracking, experiment=job.tracking.experiment or exp.name)
    job = dataclasses.replace(job, tracking=tracking)
    if job.data.split == "random":
        data = dataclasses.replace(job.data, prepared_dir=f"{job.data.prepared_dir}-seed{seed}")
        job = dataclasses.replace(job, data=data)
    return job


def slug(variant: str) -> str:
    """A directory name for a variant label such as "MGQE (var D)"."""
    return "".join(c if c.isalnum() else "_" for c in variant.lower()).strip("_")
