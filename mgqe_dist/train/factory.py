"""Builds a model and its embedding tables from the job's model and embedding sections."""

from __future__ import annotations

from typing import Any

import mgqe_dist.torchrec  # noqa: F401  (registers the TorchRec quantization kinds)
from mgqe_dist.config import EmbeddingConfig, ModelConfig
from mgqe_dist.embeddings import EmbeddingModule, build_embedding
from mgqe_dist.embeddings.base import embedding_options
from mgqe_dist.models import Recommender, build_model
from mgqe_dist.train.data import PreparedData


def build_recommender(
    model_cfg: ModelConfig, emb_cfg: EmbeddingConfig, data: PreparedData
) -> Recommender:
    """The named model with a user table and an item table of the configured embedding kind."""
    users = _table(emb_cfg, data.num_users, data.tier_boundaries("user_id"))
    items = _table(emb_cfg, data.num_items, data.tier_boundaries("item_id"))
    return build_model(model_cfg.name, users, items)


def _table(
    cfg: EmbeddingConfig, num_embeddings: int, tier_boundaries: list[int]
) -> EmbeddingModule:
    """Pass each kind exactly the options its builder accepts: no per-kind code in the trainer."""
    candidates: dict[str, Any] = {
        "init_std": cfg.init_std,
        "num_subspaces": cfg.num_subspaces,
        "num_centroids": cfg.num_centroids,
        "shared_centroids": cfg.shared_centroids,
        "rank": cfg.rank,
        "bits": cfg.bits,
        "tier_boundaries": tier_boundaries,
    }
    accepted = embedding_options(cfg.kind)
    options = {name: value for name, value in candidates.items() if name in accepted}
    return build_embedding(cfg.kind, num_embeddings, cfg.dim, **options)
