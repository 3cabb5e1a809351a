"""Scalar quantization (SQ): a full table trained as usual, quantized after training.

Each dimension j gets its own range [min_j, max_j] over all rows, cut into 2^b - 1 equal
steps; a value is stored as the index of its nearest level (b bits) and served as
min_j + index * step_j. Serving size: n*d*b bits plus min and step per dimension.
"""

from __future__ import annotations

import torch

from mgqe_dist.embeddings.base import FLOAT_BITS, register_embedding
from mgqe_dist.embeddings.full import FullEmbedding


@register_embedding("sq")
class ScalarQuantEmbedding(FullEmbedding):
    """Full embedding during training; `finalize()` replaces the weights by their b-bit levels."""

    minimum: torch.Tensor
    step: torch.Tensor
    quantized: torch.Tensor

    def __init__(
        self, num_embeddings: int, embedding_dim: int, bits: int = 8, init_std: float = 0.01
    ) -> None:
        super().__init__(num_embeddings, embedding_dim, init_std=init_std)
        if not 1 <= bits <= 16:
            raise ValueError(f"bits must be in [1, 16], got {bits}")
        self.bits = bits
        self.register_buffer("minimum", torch.zeros(embedding_dim))
        self.register_buffer("step", torch.zeros(embedding_dim))
        self.register_buffer("quantized", torch.tensor(False))

    @torch.no_grad()
    def finalize(self) -> None:
        """Quantize the trained weights in place (idempotent: levels map to themselves)."""
        weight = self.weight
        self.minimum.copy_(weight.min(0).values)
        span = weight.max(0).values - self.minimum
        self.step.copy_(span / (2**self.bits - 1))
        weight.copy_(
            self.minimum
            + self.codes(torch.arange(self.num_embeddings, device=weight.device)) * self.step
        )
        self.quantized.fill_(True)

    @torch.no_grad()
    def codes(self, ids: torch.Tensor) -> torch.Tensor:
        """The b-bit level index of every value of the given rows: (*ids.shape, d)."""
        safe_step = torch.where(self.step > 0, self.step, torch.ones_like(self.step))
        levels = torch.round((self.weight[ids] - self.minimum) / safe_step)
        return levels.clamp_(0, 2**self.bits - 1).long()

    def serving_bits(self) -> int:
        return (
            self.num_embeddings * self.embedding_dim * self.bits
            + 2 * self.embedding_dim * FLOAT_BITS
        )
