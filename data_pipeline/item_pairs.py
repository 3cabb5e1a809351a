"""`mgqe-dist synth --item-item`: a synthetic item-item relevance set, standing in for the
paper's private app-app relevance (AAR) data.

Each row is a (query item, candidate item, score) triple: the query item sits in the
`user_id` column so the (user, item) pipeline and models apply unchanged, the score is the
regression target. Both sides follow one power-law item frequency, pairs are unique and never
an item with itself, and `density` of all n x n pairs are present (the paper: 99.98% sparse).
Scores are a noisy bilinear function of latent item factors, clipped to [-100, 100], so a
model that learns item embeddings can predict them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data_pipeline.files import atomic_path, write_json_atomic
from data_pipeline.synth import SYNTH_RECORD

SCORE_RANGE = 100.0


@dataclass(frozen=True)
class ItemPairSpec:
    """Shape of a generated item-item relevance set."""

    items: int = 30_000
    density: float = 0.0002  # share of the items x items pairs present
    item_exponent: float = 1.0  # Zipf exponent of how often an item appears in pairs
    latent_dim: int = 16
    noise: float = 10.0  # score noise standard deviation
    seed: int = 0

    @property
    def pairs(self) -> int:
        """Number of rows: density x items^2."""
        return round(self.density * self.items * self.items)

    def check(self) -> None:
        """Raise ValueError naming the first impossible setting."""
        if self.items < 2 or self.latent_dim < 1 or self.noise < 0:
            raise ValueError(f"synth --item-item: needs items >= 2, latent_dim >= 1: {self}")
        if not 0 < self.density <= 0.5:
            raise ValueError(f"synth --item-item: density must be in (0, 0.5], got {self.density}")
        if self.pairs < 1:
            raise ValueError(
                f"synth --item-item: {self.items} items at density {self.density} give no pairs"
            )


def generate_item_pairs(spec: ItemPairSpec) -> pa.Table:
    """user_id (query item), item_id (candidate), score; deterministic given `spec`."""
    spec.check()
    rng = np.random.default_rng([spec.seed, 1])
    weights = 1.0 / np.arange(1, spec.items + 1, dtype=np.float64) ** spec.item_exponent
    weights = weights[rng.permutation(spec.items)]  # raw id order carries no popularity signal
    cdf = np.cumsum(weights / weights.sum())
    factors = rng.normal(size=(spec.items, spec.latent_dim)) / spec.latent_dim**0.25
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < spec.pairs:
        draw = 2 * (spec.pairs - len(keys)) + 1024
        query = np.searchsorted(cdf, rng.random(draw), side="right").clip(max=spec.items - 1)
        other = np.searchsorted(cdf, rng.random(draw), side="right").clip(max=spec.items - 1)
        new = (query * spec.items + other)[query != other]
        keys = np.unique(np.concatenate([keys, new]))
    keys = np.sort(rng.choice(keys, spec.pairs, replace=False))
    query, other = keys // spec.items, keys % spec.items
    signal = 40.0 * np.einsum("ij,ij->i", factors[query], factors[other])
    score = np.clip(signal + rng.normal(0, spec.noise, len(keys)), -SCORE_RANGE, SCORE_RANGE)
    return pa.table({"user_id": query + 1, "item_id": other + 1, "score": np.round(score, 2)})


def write_item_pairs(spec: ItemPairSpec, out: Path) -> dict[str, Any]:
    """Write pairs.parquet and _synth.json into `out`, atomically; returns the record."""
    table = generate_item_pairs(spec)
    with atomic_path(out, marker=SYNTH_RECORD) as tmp:
        tmp.mkdir()
        pq.write_table(table, tmp / "pairs.parquet")
        record = {
            "kind": "item-item",
            "spec": dataclasses.asdict(spec),
            "rows": table.num_rows,
            "sparsity": 1 - table.num_rows / spec.items**2,
            "items_in_pairs": len(np.union1d(table["user_id"], table["item_id"])),
        }
        write_json_atomic(record, tmp / SYNTH_RECORD)
    return record
