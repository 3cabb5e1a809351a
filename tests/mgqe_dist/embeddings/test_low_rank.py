import torch

from mgqe_dist.embeddings import build_embedding


def test_embedding_is_factor_times_projection() -> None:
    table = build_embedding("lrf", 30, 8, rank=3)
    ids = torch.tensor([[0, 29], [5, 5]])
    torch.testing.assert_close(table(ids), table.factors[ids] @ table.projection)


def test_serving_bits_is_nr_plus_rd_floats() -> None:
    assert build_embedding("lrf", 1000, 64, rank=48).serving_bits() == (1000 * 48 + 48 * 64) * 32


def test_init_scale_matches_full_embedding() -> None:
    torch.manual_seed(0)
    table = build_embedding("lrf", 5000, 64, rank=48, init_std=0.01)
    std = table(torch.arange(5000)).std().item()
    assert 0.008 < std < 0.012


def test_both_factors_get_gradients() -> None:
    table = build_embedding("lrf", 30, 8, rank=3)
    table(torch.tensor([1, 2])).sum().backward()
    assert table.factors.grad[[1, 2]].abs().sum() > 0 and table.factors.grad[0].abs().sum() == 0
    assert table.projection.grad.abs().sum() > 0
