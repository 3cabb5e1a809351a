"""The `mgqe-dist` command: prepare data, train, evaluate and export models, feed a feature store.

Job commands take a TOML job spec and `--set section.key=value` overrides. Bad input (a broken
job spec, a missing data file, an invalid log or artifact) prints one line naming the problem
and exits with code 2.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys
from collections.abc import Sequence

from data_pipeline.convert import ConversionError
from data_pipeline.schema import ValidationError
from data_pipeline.source import SourceError
from mgqe_dist.config import ConfigError, JobConfig, load_job
from mgqe_dist.submit import ClusterUnreachableError
from mgqe_dist.synth_command import add_synth_command

USER_ERRORS = (
    ClusterUnreachableError,
    ConfigError,
    SourceError,
    ValidationError,
    ConversionError,
    FileNotFoundError,
    ValueError,
)
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the command, map user errors to one line and exit code 2."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except USER_ERRORS as exc:
        print(f"mgqe-dist {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _job(args: argparse.Namespace) -> JobConfig:
    return load_job(args.job, args.set)


def _prepare(args: argparse.Namespace) -> None:
    from data_pipeline.prepare import prepare

    job = _job(args)
    prepare(job.data, job.seed, force=args.force)


def _train(args: argparse.Namespace) -> None:
    from mgqe_dist.train.run import train_job

    train_job(_job(args), resume=args.resume)


def _submit(args: argparse.Namespace) -> int:
    from mgqe_dist.submit import submit_job

    return submit_job(args.job, args.set, args.address, follow=not args.no_wait)


def _report(args: argparse.Namespace) -> int:
    from mgqe_dist.report.experiment import load_experiment
    from mgqe_dist.report.grid import grid_cells, prepare_data, run_cells
    from mgqe_dist.report.render import write_report
    from mgqe_dist.report.results import collect

    exp = load_experiment(args.experiment, quick=args.quick)
    cells = grid_cells(exp)
    failed = []
    if not args.no_run:
        prepare_data(exp, cells)
        failed = run_cells(cells, args.jobs, args.threads)
    out = write_report(exp, cells, collect(exp, cells, args.quick))
    print(f"report written to {out}/README.md")
    if failed:
        print(f"{len(failed)} cell(s) failed: {', '.join(c.name for c in failed)}", file=sys.stderr)
        return 1
    return 0


def _export(args: argparse.Namespace) -> None:
    from mgqe_dist.serve.artifact import export_artifact

    manifest = export_artifact(args.run_dir, args.out)
    size = manifest["size"]
    print(
        f"exported {args.run_dir} -> {args.out}: {size['model_file_bytes']:,} bytes of codes and "
        f"weights ({size['file_bytes_over_accounting']:.4f}x the model's accounted size)"
    )


def _evaluate(args: argparse.Namespace) -> None:
    from mgqe_dist.evaluate.run import evaluate_saved, summary_line

    record, written = evaluate_saved(args.dir, args.split, args.max_users, args.device, args.out)
    print(summary_line(record, written))


def _feast_init(args: argparse.Namespace) -> None:
    from mgqe_dist.serve.feature_store import init_repo

    repo = args.repo or f"{args.run_dir.rstrip('/')}/feature_repo"
    result = init_repo(args.run_dir, repo, args.online_store, args.redis_url)
    print(
        f"feature repository {result['repo']}: {result['items']:,} items' codes materialized "
        f"to the {args.online_store} online store (centroids {result['centroids_version'][:12]})"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mgqe-dist", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True)
    for name, run, help_text in (
        (
            "prepare",
            _prepare,
            "validate, split, rank and tier the job's interaction log (Ray)",
        ),
        ("train", _train, "train and evaluate the job's model (locally, or on Ray Train)"),
        ("submit", _submit, "run `train JOB` on a Ray cluster through Ray Jobs"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("job", help="path to a TOML job spec, e.g. jobs/ml1m_gmf_mgqe.toml")
        command.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="SECTION.KEY=VALUE",
            help="override one job-spec value (repeatable), e.g. train.epochs=1",
        )
        command.set_defaults(run=run)
    commands.choices["prepare"].add_argument(
        "--force", action="store_true", help="rebuild even if the prepared dataset is up to date"
    )
    commands.choices["train"].add_argument(
        "--resume",
        action="store_true",
        help="continue a stopped Ray Train run from its last checkpoint",
    )
    submit = commands.choices["submit"]
    submit.add_argument("--address", required=True, help="Ray dashboard, http://HOST:8265")
    submit.add_argument("--no-wait", action="store_true", help="print the job id and return")
    add_synth_command(commands)
    report = commands.add_parser(
        "report", help="run (or resume) an experiment grid and write its report"
    )
    report.add_argument("experiment", help="experiment spec, e.g. experiments/paper.toml")
    report.add_argument("--quick", action="store_true", help="the spec's small CI grid")
    report.add_argument("--jobs", type=int, default=2, help="cells trained at once (default 2)")
    report.add_argument("--threads", type=int, default=1, help="torch threads per cell (default 1)")
    report.add_argument(
        "--no-run", action="store_true", help="only render the report from finished cells"
    )
    report.set_defaults(run=_report)
    export = commands.add_parser(
        "export", help="write a training run's serving artifact (packed codes + weights)"
    )
    export.add_argument("run_dir", help="a finished run, e.g. runs/ml1m_gmf_mgqe")
    export.add_argument("--out", required=True, help="artifact directory to (re)write")
    export.set_defaults(run=_export)
    evaluate = commands.add_parser(
        "evaluate",
        help="re-evaluate a finished run or an exported artifact on its prepared data",
    )
    evaluate.add_argument("dir", help="a finished run or an artifact, e.g. runs/ml1m_gmf_mgqe")
    evaluate.add_argument("--split", default="test", help="test (default) or valid")
    evaluate.add_argument(
        "--max-users",
        type=int,
        help="evaluate a sample of at most N of the split's users (drawn with the job's seed)",
    )
    evaluate.add_argument(
        "--device",
        default="cpu",
        help="cpu (default), cuda or auto; metrics reproduce exactly on the device the run "
        "was evaluated on (cuda for a run trained locally on a GPU)",
    )
    evaluate.add_argument(
        "--out", help="where to write the JSON (default DIR/eval-SPLIT[-N-users].json)"
    )
    evaluate.set_defaults(run=_evaluate)
    feast = commands.add_parser("feast", help="Feast feature repository of a run's item codes")
    feast_commands = feast.add_subparsers(dest="feast_command", required=True)
    init = feast_commands.add_parser(
        "init", help="write, apply and materialize a feature repository for an MGQE/DPQ run"
    )
    init.add_argument("run_dir", help="a finished MGQE or DPQ run")
    init.add_argument("--repo", help="repository directory (default: RUN_DIR/feature_repo)")
    init.add_argument("--online-store", choices=("sqlite", "redis"), default="sqlite")
    init.add_argument("--redis-url", default="localhost:6379", help="host:port for redis")
    init.set_defaults(run=_feast_init)
    return parser


def _version() -> str:
    """This package's version, and those of the libraries a result depends on most."""
    from mgqe_dist import __version__

    found = []
    for name in ("torch", "torchrec", "ray"):
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return f"mgqe-dist {__version__} ({', '.join(found)}, Python {platform.python_version()})"


if __name__ == "__main__":
    sys.exit(main())
