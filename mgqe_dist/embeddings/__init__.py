"""Embedding kinds, pure PyTorch (no TorchRec needed): build one by name with `build_embedding`."""

from mgqe_dist.embeddings import full, mgqe  # noqa: F401  (registers the kinds)
from mgqe_dist.embeddings.base import (
    EmbeddingModule,
    build_embedding,
    embedding_kinds,
    register_embedding,
)
from mgqe_dist.embeddings.full import FullEmbedding
from mgqe_dist.embeddings.mgqe import MGQEEmbedding

__all__ = [
    "EmbeddingModule",
    "FullEmbedding",
    "MGQEEmbedding",
    "build_embedding",
    "embedding_kinds",
    "register_embedding",
]
