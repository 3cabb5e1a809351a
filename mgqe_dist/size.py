"""Serving-size accounting (DESIGN.md): embedding bits by kind plus dense parameters at 32 bits."""

from __future__ import annotations

from torch import nn

from mgqe_dist.embeddings.base import FLOAT_BITS, EmbeddingModule


def embedding_modules(model: nn.Module) -> list[EmbeddingModule]:
    """The embedding tables of a model; a table's own submodules are not searched."""
    if isinstance(model, EmbeddingModule):
        return [model]
    return [table for child in model.children() for table in embedding_modules(child)]


def dense_parameter_count(model: nn.Module) -> int:
    """Parameters outside embedding tables (served as 32-bit floats)."""
    inside = {id(p) for table in embedding_modules(model) for p in table.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in inside)


def model_serving_bits(model: nn.Module) -> int:
    """Bits to serve the whole model: every table's serving bits plus dense weights."""
    tables = sum(table.serving_bits() for table in embedding_modules(model))
    return tables + FLOAT_BITS * dense_parameter_count(model)


def full_embedding_model_bits(model: nn.Module) -> int:
    """Bits of the same model with every table a full float embedding (the 100% reference)."""
    tables = sum(t.num_embeddings * t.embedding_dim * FLOAT_BITS for t in embedding_modules(model))
    return tables + FLOAT_BITS * dense_parameter_count(model)
