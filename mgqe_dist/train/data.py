"""Prepared splits as tensors, and uniform negative sampling for implicit feedback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from data_pipeline.files import sha256_tree
from data_pipeline.prepare import load_stats

# Rounds of re-drawing negatives that hit a positive; leftovers after this are vanishingly
# rare (a user would need to have seen almost every item) and are kept as drawn.
_RESAMPLE_ROUNDS = 20


@dataclass(frozen=True)
class Interactions:
    """(user, item) id pairs of one split, sorted by user then item for determinism."""

    users: torch.Tensor
    items: torch.Tensor

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class PreparedData:
    """The three splits plus vocabulary sizes and the dataset's stats.json."""

    train: Interactions
    valid: Interactions
    test: Interactions
    num_users: int
    num_items: int
    stats: dict[str, Any]

    @property
    def num_known_items(self) -> int:
        """Items seen in training; the OOV item id equals this count."""
        return int(self.stats["features"]["item_id"]["oov_id"])

    def tier_boundaries(self, feature: str) -> list[int]:
        """Frequency-tier cut points of `user_id` or `item_id`."""
        return list(self.stats["features"][feature]["tier_boundaries"])


def load_prepared(prepared_dir: str | Path, verify: bool = True) -> PreparedData:
    """Load a prepared dataset; with `verify`, check every split against its stats.json checksum."""
    root = Path(prepared_dir)
    stats = load_stats(root)
    if verify:
        for name, expected in stats["checksums"].items():
            actual = sha256_tree(root / name)
            if actual != expected:
                raise ValueError(
                    f"{root / name}: checksum mismatch (stats.json {expected[:12]}..., "
                    f"file {actual[:12]}...); the prepared dataset was modified, re-run prepare"
                )
    splits = {name: _read_split(root / f"{name}.parquet") for name in ("train", "valid", "test")}
    return PreparedData(
        **splits,
        num_users=int(stats["features"]["user_id"]["num_ids"]),
        num_items=int(stats["features"]["item_id"]["num_ids"]),
        stats=stats,
    )


def _read_split(path: Path) -> Interactions:
    table = pq.read_table(path, columns=["user_id", "item_id"]).sort_by(
        [("user_id", "ascending"), ("item_id", "ascending")]
    )
    return Interactions(
        users=torch.from_numpy(table["user_id"].to_numpy().astype(np.int64)),
        items=torch.from_numpy(table["item_id"].to_numpy().astype(np.int64)),
    )


class NegativeSampler:
    """Draws items uniformly from the known items, re-drawing those the user interacted with."""

    def __init__(self, positives: Interactions, num_items: int) -> None:
        self.num_items = num_items
        self._positive_keys = torch.unique(positives.users * num_items + positives.items)

    def sample(self, users: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One negative item per entry of `users`."""
        items = torch.randint(self.num_items, users.shape, generator=generator)
        for _ in range(_RESAMPLE_ROUNDS):
            clash = self._is_positive(users, items)
            if not clash.any():
                break
            items[clash] = torch.randint(self.num_items, (int(clash.sum()),), generator=generator)
        return items

    def _is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users * self.num_items + items
        pos = torch.searchsorted(self._positive_keys, keys).clamp(max=len(self._positive_keys) - 1)
        return self._positive_keys[pos] == keys
