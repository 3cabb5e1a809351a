"""KJT-in collections that replace TorchRec's EmbeddingBagCollection and EmbeddingCollection
with compressed tables (MGQE, DPQ, or full), so a model written for EBC/EC runs unchanged.

The per-id state (MGQE/DPQ query vectors, or a full table's rows) lives in an inner TorchRec
EmbeddingCollection, which DistributedModelParallel shards with its stock sharder like any
embedding table; the codebooks are ordinary parameters, which DMP keeps data-parallel. Rows are
quantized before pooling, exactly as the pure-PyTorch tables and serving do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torchrec import (
    EmbeddingBagConfig,
    EmbeddingCollection,
    EmbeddingConfig,
    JaggedTensor,
    KeyedJaggedTensor,
    KeyedTensor,
)
from torchrec.modules.embedding_configs import BaseEmbeddingConfig, PoolingType

from mgqe_dist.embeddings.base import FLOAT_BITS
from mgqe_dist.embeddings.mgqe import TieredQuantizer

# Kinds a collection can hold, and the name of the per-id (n x d) tensor in the kind's
# pure-PyTorch table: the part TorchRec shards.
PER_ID_TENSOR = {"full": "weight", "dpq": "query", "mgqe": "query"}


@dataclass(frozen=True)
class TableCompression:
    """How one table is stored: an embedding kind and its options (as the kind's builder takes
    them, e.g. tier_boundaries, num_subspaces, num_centroids, init_std)."""

    kind: str = "full"
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in PER_ID_TENSOR:
            raise ValueError(
                f"embedding kind {self.kind!r} cannot live in a TorchRec collection; "
                f"supported: {sorted(PER_ID_TENSOR)}"
            )


class _CompressedLookup(nn.Module):
    """Looks up every feature's rows in the inner EmbeddingCollection and quantizes them."""

    def __init__(
        self,
        tables: Sequence[BaseEmbeddingConfig],
        compression: Mapping[str, TableCompression] | None = None,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        compression = dict(compression or {})
        unknown = sorted(set(compression) - {t.name for t in tables})
        if unknown:
            raise ValueError(f"compression given for unknown table(s) {unknown}")
        per_id, quantizers = [], {}
        for table in tables:
            spec = compression.get(table.name, TableCompression())
            options = dict(spec.options)
            # Uniform init with the kind's init_std; TorchRec's sharded kernels init uniformly.
            bound = math.sqrt(3.0) * float(options.get("init_std", 0.01))
            per_id.append(
                EmbeddingConfig(
                    name=table.name,
                    embedding_dim=table.embedding_dim,
                    num_embeddings=table.num_embeddings,
                    feature_names=list(table.feature_names),
                    weight_init_min=-bound,
                    weight_init_max=bound,
                )
            )
            if spec.kind != "full":
                quantizers[table.name] = TieredQuantizer(
                    table.num_embeddings, table.embedding_dim, **options
                )
        self.embeddings = EmbeddingCollection(tables=per_id, device=device)
        self.quantizers = nn.ModuleDict(quantizers)
        self._configs = list(tables)
        self._table_of = {f: t.name for t in tables for f in t.feature_names}

    def lookup(self, features: KeyedJaggedTensor) -> dict[str, JaggedTensor]:
        """Quantized rows of every id, per feature, in the input's order."""
        if features.weights_or_none() is not None:
            raise ValueError("weighted features (per-id weights) are not supported")
        missing = sorted(set(self._table_of) - set(features.keys()))
        if missing:
            raise ValueError(f"features {missing} are missing from the KeyedJaggedTensor")
        rows = self.embeddings(features)
        out = {}
        for feature, table in self._table_of.items():
            looked_up = rows[feature]
            values = looked_up.values()
            if table in self.quantizers:
                values = self._quantizer(table).quantize(features[feature].values(), values)
            out[feature] = JaggedTensor(values=values, lengths=looked_up.lengths())
        return out

    def extra_loss(self) -> torch.Tensor:
        """Centroid losses of all quantized tables since the last call."""
        return sum((self._quantizer(t).extra_loss() for t in self.quantizers), torch.zeros(()))

    def _quantizer(self, table: str) -> TieredQuantizer:
        quantizer = self.quantizers[table]
        assert isinstance(quantizer, TieredQuantizer)
        return quantizer

    def table_serving_bits(self, table: str) -> int:
        """Bits to serve one table: codes and centroids, or float rows."""
        if table in self.quantizers:
            return self._quantizer(table).serving_bits()
        config = next(c for c in self._configs if c.name == table)
        return config.num_embeddings * config.embedding_dim * FLOAT_BITS


class MGQEEmbeddingBagCollection(_CompressedLookup):
    """Drop-in for EmbeddingBagCollection: KJT in, pooled KeyedTensor out (SUM or MEAN).

    Tables not named in `compression` are full tables. `device="meta"` defers the per-id
    tables' allocation to DistributedModelParallel, as with TorchRec's own collections.
    """

    _configs: list[EmbeddingBagConfig]

    def __init__(
        self,
        tables: Sequence[EmbeddingBagConfig],
        compression: Mapping[str, TableCompression] | None = None,
        device: torch.device | None = None,
    ) -> None:
        for table in tables:
            if table.pooling not in (PoolingType.SUM, PoolingType.MEAN):
                raise ValueError(f"table {table.name!r}: pooling {table.pooling} unsupported")
        super().__init__(tables, compression, device)

    def embedding_bag_configs(self) -> list[EmbeddingBagConfig]:
        """The table configs, as EmbeddingBagCollection reports them."""
        return self._configs

    def is_weighted(self) -> bool:
        return False

    def forward(self, features: KeyedJaggedTensor) -> KeyedTensor:
        looked_up = self.lookup(features)
        keys, dims, pooled = [], [], []
        for table in self._configs:
            for feature in table.feature_names:
                keys.append(feature)
                dims.append(table.embedding_dim)
                pooled.append(_pool(looked_up[feature], table.pooling))
        return KeyedTensor(keys=keys, length_per_key=dims, values=torch.cat(pooled, dim=1))


class MGQEEmbeddingCollection(_CompressedLookup):
    """Drop-in for EmbeddingCollection: KJT in, one JaggedTensor of (quantized) rows per feature."""

    _configs: list[EmbeddingConfig]

    def embedding_configs(self) -> list[EmbeddingConfig]:
        """The table configs, as EmbeddingCollection reports them."""
        return self._configs

    def forward(self, features: KeyedJaggedTensor) -> dict[str, JaggedTensor]:
        return self.lookup(features)


def _pool(rows: JaggedTensor, pooling: PoolingType) -> torch.Tensor:
    """Sum (or mean) of each bag's rows; an empty bag pools to zeros."""
    lengths = rows.lengths().long()
    bags = torch.repeat_interleave(torch.arange(len(lengths), device=lengths.device), lengths)
    values = rows.values()
    pooled = values.new_zeros(len(lengths), values.shape[1]).index_add(0, bags, values)
    if pooling == PoolingType.MEAN:
        pooled = pooled / lengths.clamp(min=1).unsqueeze(1).to(pooled.dtype)
    return pooled
