"""Prepared splits as tensors, and uniform negative sampling for implicit feedback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from data_pipeline.files import sha256_tree
from data_pipeline.stats import load_stats


@dataclass(frozen=True)
class Interactions:
    """(user, item) id pairs of one split, sorted by user then item for determinism, with each
    pair's target value (e.g. its rating) when one was asked for."""

    users: torch.Tensor
    items: torch.Tensor
    targets: torch.Tensor | None = None

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
    root: Path

    @property
    def num_known_items(self) -> int:
        """Items seen in training; the OOV item id equals this count."""
        return int(self.stats["features"]["item_id"]["oov_id"])

    def tier_boundaries(self, feature: str) -> list[int]:
        """Frequency-tier cut points of `user_id` or `item_id`."""
        return list(self.stats["features"][feature]["tier_boundaries"])


def load_prepared(
    prepared_dir: str | Path, verify: bool = True, target: str | None = None
) -> PreparedData:
    """Load a prepared dataset; with `verify`, check every split against its stats.json
    checksum; with `target`, also read that column of every split as float targets."""
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
    splits = {
        name: _read_split(root / f"{name}.parquet", target) for name in ("train", "valid", "test")
    }
    return PreparedData(
        **splits,
        num_users=int(stats["features"]["user_id"]["num_ids"]),
        num_items=int(stats["features"]["item_id"]["num_ids"]),
        stats=stats,
        root=root,
    )


def _read_split(path: Path, target: str | None) -> Interactions:
    columns = ["user_id", "item_id"]
    if target is not None:
        names = pq.ParquetDataset(path).schema.names
        if target not in names:
            raise ValueError(
                f"{path}: no target column {target!r} (train.target); columns are {names}"
            )
        columns.append(target)
    table = pq.read_table(path, columns=columns).sort_by(
        [("user_id", "ascending"), ("item_id", "ascending")]
    )
    targets = None
    if target is not None:
        if table[target].null_count:
            raise ValueError(f"{path}: {table[target].null_count} null {target!r} target(s)")
        targets = torch.from_numpy(table[target].to_numpy().astype(np.float32))
    return Interactions(
        users=torch.from_numpy(table["user_id"].to_numpy().astype(np.int64)),
        items=torch.from_numpy(table["item_id"].to_numpy().astype(np.int64)),
        targets=targets,
    )


def load_histories(data: PreparedData, length: int) -> torch.Tensor:
    """(num_users, length) tensor of each user's latest training items from sequences.parquet,
    oldest first and left-padded with -1 (users without training items are all padding)."""
    path = data.root / "sequences.parquet"
    if not path.is_file():
        raise ValueError(
            f"{path} not found: sequence models need data.sequence_length > 0 in prepare"
        )
    table = pq.read_table(path)
    histories = torch.full((data.num_users, length), -1, dtype=torch.long)
    items = table["items"].combine_chunks()
    offsets = items.offsets.to_numpy()
    values = items.values.to_numpy().astype(np.int64)
    for user, start, stop in zip(
        table["user_id"].to_numpy(), offsets[:-1], offsets[1:], strict=True
    ):
        row = values[max(start, stop - length) : stop]
        histories[user, length - len(row) :] = torch.from_numpy(row)
    return histories


class NegativeSampler:
    """Draws items uniformly from those a user has not interacted with, exactly, in one pass.

    With a user's positives sorted as p_0 < p_1 < ..., the r-th item the user has not seen is
    r + #{j : p_j - j <= r}; keeping the keys user * n + (p_j - j) sorted turns that count into
    one searchsorted for the whole batch, so no draw is ever rejected and re-drawn.
    """

    def __init__(self, positives: Interactions, num_items: int) -> None:
        self.num_items = num_items
        keys = torch.unique(positives.users * num_items + positives.items)
        users = keys // num_items
        _, counts = torch.unique_consecutive(users, return_counts=True)
        rank_in_user = torch.arange(len(keys)) - torch.repeat_interleave(
            counts.cumsum(0) - counts, counts
        )
        self._shifted = keys - rank_in_user

    def sample(self, users: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One negative item per entry of `users`."""
        base = users * self.num_items
        start = torch.searchsorted(self._shifted, base)
        free = self.num_items - (torch.searchsorted(self._shifted, base + self.num_items) - start)
        if (free <= 0).any():
            user = int(users[free <= 0][0])
            raise ValueError(f"user {user} has interacted with every item: no negative exists")
        r = (torch.rand(users.shape, generator=generator, dtype=torch.float64) * free).long()
        seen_before = torch.searchsorted(self._shifted, base + r, right=True) - start
        return r + seen_before
