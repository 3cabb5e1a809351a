"""`mgqe-dist synth`: write a generated interaction log or item-item set from the command line.

Kept apart from cli.py so the report grid can generate a study's source from its `synth`
arguments without importing the command-line front end.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def add_synth_command(commands: argparse._SubParsersAction) -> None:
    """`synth OUT [--item-item]` with one option per field of PowerLawSpec and ItemPairSpec
    (same names; the defaults are those of the spec being generated)."""
    synth = commands.add_parser(
        "synth",
        help="write a synthetic power-law interaction log (Parquet, for scale tests), or with "
        "--item-item an item-item relevance set",
    )
    _add_arguments(synth)
    synth.set_defaults(run=_run)


def synthesize(argv: Sequence[str]) -> None:
    """Run `synth` on `argv` (OUT and options, as on the command line); bad options raise."""
    parser = argparse.ArgumentParser(prog="mgqe-dist synth", exit_on_error=False)
    _add_arguments(parser)
    _run(parser.parse_args(list(argv)))


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output directory (replaced atomically)")
    parser.add_argument(
        "--item-item",
        action="store_true",
        help="(query item, item, score) pairs in [-100, 100] instead of an interaction log",
    )
    for name, (default, item_default) in SYNTH_OPTIONS.items():
        defaults = [
            f"{d} ({what})"
            for d, what in ((default, "log"), (item_default, "--item-item"))
            if d is not None
        ]
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=type(default if default is not None else item_default),
            default=None,
            help="default " + ", ".join(defaults),
        )


def _run(args: argparse.Namespace) -> None:
    from data_pipeline.item_pairs import ItemPairSpec, write_item_pairs
    from data_pipeline.powerlaw import generate
    from data_pipeline.synth import PowerLawSpec

    spec_type = ItemPairSpec if args.item_item else PowerLawSpec
    names = {f.name for f in dataclasses.fields(spec_type)}
    chosen = {
        name: value
        for name, value in vars(args).items()
        if name in SYNTH_OPTIONS and value is not None
    }
    foreign = sorted(f"--{name.replace('_', '-')}" for name in chosen if name not in names)
    if foreign:
        kind = "--item-item" if args.item_item else "interaction logs (no --item-item)"
        raise ValueError(f"synth: {', '.join(foreign)}: not an option of {kind}")
    spec = spec_type(**chosen)
    if isinstance(spec, ItemPairSpec):
        record = write_item_pairs(spec, Path(args.out))
        print(
            f"wrote {record['rows']:,} item-item pairs ({record['sparsity']:.4%} sparse) to "
            f"{args.out}/pairs.parquet"
        )
        return
    record = generate(spec, Path(args.out))
    print(f"wrote {record['rows']:,} rows in {record['files']} file(s) to {args.out}")


def _synth_options() -> dict[str, tuple[Any, Any]]:
    """Option name -> (PowerLawSpec default, ItemPairSpec default), None where it has none."""
    from data_pipeline.item_pairs import ItemPairSpec
    from data_pipeline.synth import PowerLawSpec

    defaults = [
        {f.name: f.default for f in dataclasses.fields(t)} for t in (PowerLawSpec, ItemPairSpec)
    ]
    names = list(dict.fromkeys([*defaults[0], *defaults[1]]))
    return {name: (defaults[0].get(name), defaults[1].get(name)) for name in names}


SYNTH_OPTIONS = _synth_options()
