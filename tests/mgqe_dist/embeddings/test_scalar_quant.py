import pytest
import torch

from mgqe_dist.embeddings import build_embedding


def _trained(bits: int):
    torch.manual_seed(0)
    table = build_embedding("sq", 500, 16, bits=bits, init_std=1.0)
    before = table.weight.detach().clone()
    table.finalize()
    return table, before


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_round_trip_error_is_at_most_half_a_bucket(bits: int) -> None:
    table, before = _trained(bits)
    error = (table.weight - before).abs()
    assert (error <= table.step / 2 + 1e-6).all()
    assert error.max() > 0


def test_levels_use_the_per_dimension_range() -> None:
    table, before = _trained(4)
    torch.testing.assert_close(table.minimum, before.min(0).values)
    torch.testing.assert_close(table.step, (before.max(0).values - before.min(0).values) / 15)
    codes = table.codes(torch.arange(500))
    assert codes.min() == 0 and codes.max() == 15
    assert len(torch.unique(table.weight[:, 0])) <= 16


def test_training_forward_is_full_precision_until_finalized() -> None:
    table = build_embedding("sq", 50, 4, bits=2, init_std=1.0)
    assert len(torch.unique(table.weight[:, 0])) == 50
    assert not table.quantized


def test_finalize_is_idempotent() -> None:
    table, _ = _trained(3)
    once = table.weight.detach().clone()
    table.finalize()
    torch.testing.assert_close(table.weight, once)


def test_serving_bits_b_per_value_plus_range() -> None:
    table = build_embedding("sq", 1000, 64, bits=8)
    assert table.serving_bits() == 1000 * 64 * 8 + 2 * 64 * 32
