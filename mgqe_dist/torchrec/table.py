"""An EmbeddingModule whose per-id state lives in a TorchRec collection, so that models written
against plain id tensors (GMF, NeuMF) train under DistributedModelParallel with that state
sharded. After training, `local_key_map` renames its state to the pure-PyTorch table's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torchrec import EmbeddingConfig, KeyedJaggedTensor

from mgqe_dist.embeddings.base import EmbeddingModule
from mgqe_dist.torchrec.collections import PER_ID_TENSOR, MGQEEmbeddingCollection, TableCompression


class CollectionTable(EmbeddingModule):
    """One table of kind full, dpq or mgqe, looked up through an MGQEEmbeddingCollection."""

    def __init__(
        self,
        name: str,
        kind: str,
        num_embeddings: int,
        embedding_dim: int,
        options: Mapping[str, Any],
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        # The feature is the table's name; the TorchRec table gets a suffix because names such
        # as "items" clash with ModuleDict attributes inside TorchRec's collections.
        self.name, self.table, self.kind = name, f"{name}_table", kind
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        config = EmbeddingConfig(
            name=self.table,
            embedding_dim=embedding_dim,
            num_embeddings=num_embeddings,
            feature_names=[name],
        )
        self.collection = MGQEEmbeddingCollection(
            [config], {self.table: TableCompression(kind, options)}, device=device
        )

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1).contiguous()  # all-to-all needs contiguous ids
        features = KeyedJaggedTensor.from_lengths_sync(
            keys=[self.name], values=flat, lengths=torch.ones_like(flat, dtype=torch.int32)
        )
        rows = self.collection(features)[self.name].values()
        return rows.reshape(*ids.shape, self.embedding_dim)

    def extra_loss(self) -> torch.Tensor:
        return self.collection.extra_loss()

    def serving_bits(self) -> int:
        return self.collection.table_serving_bits(self.table)

    def local_names(self) -> dict[str, str]:
        """This table's state-dict keys -> the keys of the same state in the pure table."""
        names = {f"collection.embeddings.embeddings.{self.table}.weight": PER_ID_TENSOR[self.kind]}
        if self.table in self.collection.quantizers:
            quantizer = self.collection.quantizers[self.table]
            for key in quantizer.state_dict():
                names[f"collection.quantizers.{self.table}.{key}"] = key
        return names


def local_key_map(model: nn.Module) -> dict[str, str]:
    """Every state-dict key of a model built from CollectionTables -> the key of the same
    tensor in the same model built from pure-PyTorch tables (dense keys map to themselves)."""
    mapping = {key: key for key in model.state_dict()}
    for prefix, module in model.named_modules():
        if isinstance(module, CollectionTable):
            for key, local in module.local_names().items():
                mapping[f"{prefix}.{key}"] = f"{prefix}.{local}"
    return mapping
