"""TorchRec's own post-training quantization as an embedding kind: the industrial baseline.

Trained as a full embedding; `finalize()` converts the table into a TorchRec
QuantEmbeddingBagCollection (row-wise int8 or int4 with a per-row fp16 scale and bias, run
by fbgemm's CPU/GPU kernels), and lookups go through it from then on. The serving size is
the bytes TorchRec actually stores for the table, alignment padding included.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from mgqe_dist.embeddings.base import register_embedding
from mgqe_dist.embeddings.full import FullEmbedding

FEATURE = "ids"
WEIGHT_DTYPES = {"int8": torch.qint8, "int4": torch.quint4x2}


class TorchRecQuantEmbedding(FullEmbedding):
    """Full embedding in training; a TorchRec quantized EmbeddingBagCollection once finalized."""

    def __init__(
        self, num_embeddings: int, embedding_dim: int, weight_dtype: str, init_std: float = 0.01
    ) -> None:
        super().__init__(num_embeddings, embedding_dim, init_std=init_std)
        if weight_dtype not in WEIGHT_DTYPES:
            raise ValueError(f"weight_dtype must be one of {sorted(WEIGHT_DTYPES)}")
        self.weight_dtype = weight_dtype
        self.quantized: nn.Module | None = None

    @torch.no_grad()
    def finalize(self) -> None:
        """Quantize the trained table with TorchRec; later lookups use the quantized table."""
        self.quantized = self._quantize()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.quantized is None:
            return super().forward(ids)
        from torchrec import KeyedJaggedTensor

        flat = ids.reshape(-1).cpu()  # the quantized table is built and kept on the CPU
        # One id per bag: sum pooling of a single row is the row itself.
        kjt = KeyedJaggedTensor.from_lengths_sync(
            keys=[FEATURE], values=flat, lengths=torch.ones_like(flat, dtype=torch.int32)
        )
        rows = self.quantized(kjt).to_dict()[FEATURE]
        return rows.to(self.weight).reshape(*ids.shape, self.embedding_dim)

    def serving_bits(self) -> int:
        """Bits of the quantized weights TorchRec stores (built on demand before finalize)."""
        module = self.quantized if self.quantized is not None else self._quantize()
        return 8 * sum(t.numel() * t.element_size() for t in module.state_dict().values())

    def _quantize(self) -> nn.Module:
        return quantize_table(self.weight.cpu(), self.weight_dtype)


@torch.no_grad()
def quantize_table(weight: torch.Tensor, weight_dtype: str) -> nn.Module:
    """A TorchRec QuantEmbeddingBagCollection holding `weight` (n x d) as one table whose
    feature is "ids", quantized row-wise to `weight_dtype` ("int8" or "int4")."""
    import torch.ao.quantization as quant
    from torchrec import EmbeddingBagCollection, EmbeddingBagConfig
    from torchrec.modules.embedding_configs import PoolingType
    from torchrec.quant.embedding_modules import (
        EmbeddingBagCollection as QuantEmbeddingBagCollection,
    )

    table = EmbeddingBagConfig(
        name="table",
        embedding_dim=weight.shape[1],
        num_embeddings=weight.shape[0],
        feature_names=[FEATURE],
        pooling=PoolingType.SUM,
        init_fn=lambda _: None,  # the weights are copied in below
    )
    float_ebc = EmbeddingBagCollection(tables=[table], device=torch.device("meta"))
    float_ebc.embedding_bags["table"].weight = nn.Parameter(weight, requires_grad=False)
    float_ebc.qconfig = quant.QConfig(
        activation=quant.PlaceholderObserver.with_args(dtype=torch.float),
        weight=quant.PlaceholderObserver.with_args(dtype=WEIGHT_DTYPES[weight_dtype]),
    )
    return QuantEmbeddingBagCollection.from_float(float_ebc)


register_embedding("torchrec_int8")(functools.partial(TorchRecQuantEmbedding, weight_dtype="int8"))
register_embedding("torchrec_int4")(functools.partial(TorchRecQuantEmbedding, weight_dtype="int4"))
