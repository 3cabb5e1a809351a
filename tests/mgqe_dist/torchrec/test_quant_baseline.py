"""TorchRec's QuantEmbeddingBagCollection as a post-training baseline kind (real fbgemm kernels)."""

import pytest
import torch

import mgqe_dist.torchrec  # noqa: F401  (registers the kinds)
from mgqe_dist.embeddings import build_embedding

N, D = 300, 64


def _finalized(kind: str):
    torch.manual_seed(0)
    table = build_embedding(kind, N, D, init_std=0.1)
    before = table.weight.detach().clone()
    table.finalize()
    return table, before


@pytest.mark.parametrize(("kind", "bits"), [("torchrec_int8", 8), ("torchrec_int4", 4)])
def test_lookups_match_the_float_table_within_row_wise_quantization_error(
    kind: str, bits: int
) -> None:
    table, before = _finalized(kind)
    ids = torch.tensor([[0, 17], [299, 17]])
    out = table(ids)
    assert out.shape == (2, 2, D)
    # Row-wise affine quantization: error <= half a step of that row's range (+ fp16 scale).
    step = (before.max(1).values - before.min(1).values) / (2**bits - 1)
    bound = step[ids][..., None] * 0.5 + 1e-3
    assert ((out - before[ids]).abs() <= bound).all()
    assert not torch.equal(out, before[ids])  # really quantized


def test_serving_bits_are_the_bytes_torchrec_stores() -> None:
    table, _ = _finalized("torchrec_int8")
    stored = sum(t.numel() * t.element_size() for t in table.quantized.state_dict().values())
    assert table.serving_bits() == 8 * stored
    # int8 values plus a per-row fp16 scale and bias, padded: between the two bounds.
    assert N * D * 8 < table.serving_bits() <= N * (D + 16) * 8


def test_serving_bits_known_before_finalize() -> None:
    table = build_embedding("torchrec_int8", N, D)
    before = table.serving_bits()
    table.finalize()
    assert table.serving_bits() == before
