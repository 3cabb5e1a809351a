import pytest
import torch

from mgqe_dist.embeddings import build_embedding, embedding_kinds


def test_full_embedding_is_a_row_lookup() -> None:
    table = build_embedding("full", 10, 4)
    ids = torch.tensor([[3, 3], [9, 0]])
    torch.testing.assert_close(table(ids), table.weight[ids])


def test_full_embedding_init_std() -> None:
    torch.manual_seed(0)
    table = build_embedding("full", 20_000, 16, init_std=0.01)
    assert abs(table.weight.std().item() - 0.01) < 5e-4


def test_full_serving_bits_is_n_d_32() -> None:
    assert build_embedding("full", 1000, 64).serving_bits() == 1000 * 64 * 32


def test_full_has_no_extra_loss() -> None:
    table = build_embedding("full", 10, 4)
    table(torch.tensor([1]))
    assert table.extra_loss() == 0


def test_unknown_kind_lists_known_kinds() -> None:
    with pytest.raises(ValueError, match=r"unknown embedding kind 'fe'.*'full'"):
        build_embedding("fe", 10, 4)
    assert {"full", "mgqe", "dpq"} <= set(embedding_kinds())
