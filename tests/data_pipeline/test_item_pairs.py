"""The synthetic item-item relevance set: unique pairs, exact sparsity, bounded scores."""

from pathlib import Path

import numpy as np
import pytest

from data_pipeline.item_pairs import ItemPairSpec, generate_item_pairs, write_item_pairs
from mgqe_dist.cli import main

SPEC = ItemPairSpec(items=2000, density=0.002)


def test_pairs_unique_not_self_and_exact_count() -> None:
    table = generate_item_pairs(SPEC)
    query, other = table["user_id"].to_numpy(), table["item_id"].to_numpy()
    assert table.num_rows == SPEC.pairs == 8000
    assert len(np.unique(query * 10_000 + other)) == table.num_rows
    assert not (query == other).any()
    assert query.min() >= 1 and max(query.max(), other.max()) <= SPEC.items
    scores = table["score"].to_numpy()
    assert scores.min() >= -100 and scores.max() <= 100 and scores.std() > 10


def test_frequencies_follow_a_power_law() -> None:
    table = generate_item_pairs(SPEC)
    counts = np.sort(np.bincount(table["user_id"].to_numpy(), minlength=SPEC.items + 1))[::-1]
    assert counts[0] > 20 * np.median(counts)  # a heavy head and a long tail


def test_deterministic_and_seeded() -> None:
    assert generate_item_pairs(SPEC).equals(generate_item_pairs(SPEC))
    other = ItemPairSpec(items=2000, density=0.002, seed=1)
    assert not generate_item_pairs(SPEC).equals(generate_item_pairs(other))


def test_write_records_sparsity(tmp_path: Path) -> None:
    record = write_item_pairs(SPEC, tmp_path / "pairs")
    assert record["sparsity"] == pytest.approx(0.998)
    assert (tmp_path / "pairs" / "pairs.parquet").is_file()


def test_cli_rejects_options_of_the_other_generator(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["synth", str(tmp_path / "x"), "--item-item", "--users", "5"]) == 2
    assert "--users: not an option of --item-item" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "x"), "--item-item", "--items", "300"]) == 0
    assert not (tmp_path / "x" / "part-00000.parquet").exists()
    assert (tmp_path / "x" / "pairs.parquet").is_file()


def test_bad_density_is_named() -> None:
    with pytest.raises(ValueError, match="density"):
        generate_item_pairs(ItemPairSpec(density=0.9))
