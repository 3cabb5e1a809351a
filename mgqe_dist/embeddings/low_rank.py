"""Low-rank factorisation (LRF): an n x r table times an r x d projection (paper baseline, r=48)."""

from __future__ import annotations

import math

import torch
from torch import nn

from mgqe_dist.embeddings.base import FLOAT_BITS, EmbeddingModule, register_embedding


@register_embedding("lrf")
class LowRankEmbedding(EmbeddingModule):
    """Embedding = factors[id] @ projection; serves n*r + r*d floats instead of n*d."""

    def __init__(
        self, num_embeddings: int, embedding_dim: int, rank: int = 48, init_std: float = 0.01
    ) -> None:
        super().__init__()
        if rank <= 0:
            raise ValueError(f"rank must be positive, got {rank}")
        self.num_embeddings, self.embedding_dim, self.rank = num_embeddings, embedding_dim, rank
        # factors ~ N(0, init_std) and projection ~ N(0, 1/r) give embeddings ~ N(0, init_std),
        # the same scale as the full table they replace.
        self.factors = nn.Parameter(torch.randn(num_embeddings, rank) * init_std)
        self.projection = nn.Parameter(torch.randn(rank, embedding_dim) / math.sqrt(rank))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(ids, self.factors) @ self.projection

    def serving_bits(self) -> int:
        return (self.num_embeddings * self.rank + self.rank * self.embedding_dim) * FLOAT_BITS
