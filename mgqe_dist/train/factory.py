"""Builds a model and its embedding tables from the job's model and embedding sections.

The build goes through a JSON-able model spec (model name, options, and per table its kind,
size and options), which is saved next to the trained weights so that export and serving can
rebuild exactly the same model without the job spec or the prepared data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import mgqe_dist.torchrec  # noqa: F401  (registers the TorchRec quantization kinds)
from mgqe_dist.config import EmbeddingConfig, ModelConfig
from mgqe_dist.embeddings import EmbeddingModule, build_embedding
from mgqe_dist.embeddings.base import embedding_options
from mgqe_dist.models import Recommender, build_model, model_options, model_tables
from mgqe_dist.train.data import PreparedData

# The prepared-data feature whose vocabulary sizes each table.
TABLE_FEATURES = {"users": "user_id", "items": "item_id"}
PAIRWISE_TABLES = ("users", "items")

TableBuilder = Callable[[str, Mapping[str, Any]], EmbeddingModule]


def model_spec(model_cfg: ModelConfig, emb_cfg: EmbeddingConfig, data: PreparedData) -> dict:
    """Everything needed to rebuild the job's model: name, options and one entry per table."""
    tables = {}
    for table in model_tables(model_cfg.name):
        feature = TABLE_FEATURES[table]
        num_ids = int(data.stats["features"][feature]["num_ids"])
        tables[table] = table_spec(emb_cfg, num_ids, data.tier_boundaries(feature))
    return {"model": model_cfg.name, "options": model_options(model_cfg.name), "tables": tables}


def table_spec(cfg: EmbeddingConfig, num_embeddings: int, tier_boundaries: list[int]) -> dict:
    """Pass each kind exactly the options its builder accepts: no per-kind code in the trainer."""
    candidates: dict[str, Any] = {
        "init_std": cfg.init_std,
        "num_subspaces": list(cfg.num_subspaces),
        "num_centroids": list(cfg.num_centroids),
        "shared_centroids": cfg.shared_centroids,
        "rank": cfg.rank,
        "bits": cfg.bits,
        "tier_boundaries": tier_boundaries,
    }
    accepted = embedding_options(cfg.kind)
    return {
        "kind": cfg.kind,
        "num_embeddings": num_embeddings,
        "embedding_dim": cfg.dim,
        "options": {name: value for name, value in candidates.items() if name in accepted},
    }


def build_table(name: str, spec: Mapping[str, Any]) -> EmbeddingModule:
    """A freshly initialised trainable table from its spec."""
    return build_embedding(
        spec["kind"], spec["num_embeddings"], spec["embedding_dim"], **spec["options"]
    )


def build_from_spec(
    spec: Mapping[str, Any], table_builder: TableBuilder = build_table
) -> Recommender:
    """The spec's model around tables made by `table_builder(name, table_spec)`."""
    tables = {name: table_builder(name, table) for name, table in spec["tables"].items()}
    return build_model(spec["model"], tables, **spec["options"])
