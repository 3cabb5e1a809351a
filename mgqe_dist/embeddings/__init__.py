"""Embedding kinds, pure PyTorch (no TorchRec needed): build one by name with `build_embedding`."""

from mgqe_dist.embeddings import cerp, full, low_rank, mgqe, scalar_quant  # noqa: F401  (registers)
from mgqe_dist.embeddings.base import (
    EmbeddingModule,
    build_embedding,
    embedding_kinds,
    register_embedding,
)
from mgqe_dist.embeddings.cerp import CERPEmbedding
from mgqe_dist.embeddings.full import FullEmbedding
from mgqe_dist.embeddings.low_rank import LowRankEmbedding
from mgqe_dist.embeddings.mgqe import MGQEEmbedding
from mgqe_dist.embeddings.scalar_quant import ScalarQuantEmbedding

__all__ = [
    "CERPEmbedding",
    "EmbeddingModule",
    "FullEmbedding",
    "LowRankEmbedding",
    "MGQEEmbedding",
    "ScalarQuantEmbedding",
    "build_embedding",
    "embedding_kinds",
    "register_embedding",
]
