"""The contract every embedding kind implements, and the name -> builder registry.

An embedding maps a LongTensor of ids (any shape) to (*ids.shape, dim). Besides `forward` it
reports the bits needed to serve it and any auxiliary training loss it produced, so models,
trainers and size accounting never need to know which kind they hold.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mgqe_dist.registry import Registry

FLOAT_BITS = 32


class EmbeddingModule(nn.Module):
    """Base class of all embedding kinds; subclasses set num_embeddings and embedding_dim."""

    num_embeddings: int
    embedding_dim: int

    def serving_bits(self) -> int:
        """Bits needed to serve this table (codes or weights plus centroids)."""
        raise NotImplementedError

    def extra_loss(self) -> torch.Tensor:
        """Auxiliary loss accumulated since the last call (zero for kinds without one)."""
        return torch.zeros(())

    def finalize(self) -> None:
        """Post-training step before serving and final evaluation (e.g. SQ quantizes here)."""

    def end_epoch(self) -> None:
        """Called after every training epoch (CERP ends its pruning phase here)."""

    def selectable(self) -> bool:
        """Whether the table as it is now may be kept as a run's best (CERP: once pruned)."""
        return True


EmbeddingBuilder = Callable[..., EmbeddingModule]
EMBEDDINGS: Registry[EmbeddingBuilder] = Registry("embedding kind")
register_embedding = EMBEDDINGS.register


def embedding_kinds() -> list[str]:
    """Names accepted by `build_embedding`."""
    return EMBEDDINGS.names()


def embedding_options(kind: str) -> set[str]:
    """Keyword options the builder of `kind` accepts besides num_embeddings and embedding_dim."""
    parameters = inspect.signature(EMBEDDINGS.get(kind)).parameters
    return set(parameters) - {"num_embeddings", "embedding_dim"}


def build_embedding(
    kind: str, num_embeddings: int, embedding_dim: int, **options: Any
) -> EmbeddingModule:
    """Build an embedding table of the named kind; options are the kind's own keyword arguments."""
    builder = EMBEDDINGS.get(kind)
    if num_embeddings <= 0 or embedding_dim <= 0:
        raise ValueError(
            f"embedding {kind!r}: num_embeddings and embedding_dim must be positive, "
            f"got {num_embeddings} and {embedding_dim}"
        )
    accepted = embedding_options(kind)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"embedding {kind!r}: unknown option(s) {unknown}; accepted: {sorted(accepted)}"
        )
    return builder(num_embeddings, embedding_dim, **options)
