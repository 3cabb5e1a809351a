"""The `mgqe-dist` command: prepare data, train models, export artifacts, feed a feature store.

Job commands take a TOML job spec and `--set section.key=value` overrides. Bad input (a broken
job spec, a missing data file, an invalid log or artifact) prints one line naming the problem
and exits with code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from data_pipeline.convert import ConversionError
from data_pipeline.schema import ValidationError
from data_pipeline.source import SourceError
from mgqe_dist.config import ConfigError, JobConfig, load_job

USER_ERRORS = (
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


def _synth(args: argparse.Namespace) -> None:
    from data_pipeline.powerlaw import generate
    from data_pipeline.synth import PowerLawSpec

    spec = PowerLawSpec(**{f.name: getattr(args, f.name) for f in dataclasses.fields(PowerLawSpec)})
    record = generate(spec, Path(args.out))
    print(f"wrote {record['rows']:,} rows in {record['files']} file(s) to {args.out}")


def _export(args: argparse.Namespace) -> None:
    from mgqe_dist.serve.artifact import export_artifact

    manifest = export_artifact(args.run_dir, args.out)
    size = manifest["size"]
    print(
        f"exported {args.run_dir} -> {args.out}: {size['model_file_bytes']:,} bytes of codes and "
        f"weights ({size['file_bytes_over_accounting']:.4f}x the model's accounted size)"
    )


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
    _add_synth(commands)
    export = commands.add_parser(
        "export", help="write a training run's serving artifact (packed codes + weights)"
    )
    export.add_argument("run_dir", help="a finished run, e.g. runs/ml1m_gmf_mgqe")
    export.add_argument("--out", required=True, help="artifact directory to (re)write")
    export.set_defaults(run=_export)
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


def _add_synth(commands: argparse._SubParsersAction) -> None:
    """`synth OUT` with one option per PowerLawSpec field (same names, same defaults)."""
    from data_pipeline.synth import PowerLawSpec

    synth = commands.add_parser(
        "synth", help="write a synthetic power-law interaction log (Parquet, for scale tests)"
    )
    synth.add_argument("out", help="output directory (replaced atomically)")
    for field in dataclasses.fields(PowerLawSpec):
        default = field.default
        synth.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=type(default),
            default=default,
            help=f"default {default}",
        )
    synth.set_defaults(run=_synth)


if __name__ == "__main__":
    sys.exit(main())
