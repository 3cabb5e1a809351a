import argparse
from pathlib import Path

import pytest

from mgqe_dist.synth_command import synthesize


def test_synthesize_writes_what_the_command_writes(tmp_path: Path) -> None:
    synthesize([str(tmp_path / "pairs"), "--item-item", "--items", "300"])
    assert (tmp_path / "pairs" / "pairs.parquet").exists()


def test_synthesize_names_a_foreign_or_unknown_option(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--users: not an option of --item-item"):
        synthesize([str(tmp_path / "x"), "--item-item", "--users", "5"])
    with pytest.raises(argparse.ArgumentError, match="--items"):
        synthesize([str(tmp_path / "x"), "--items", "many"])
