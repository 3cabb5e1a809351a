"""What the trainer and evaluator need from every model."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class Recommender(nn.Module):
    """A model scoring (user, item) pairs and, for full-ranking evaluation, all items at once.

    `table_names` are the constructor arguments that are embedding tables; each is kept as an
    attribute of the same name, so its parameters sit under `<name>.` in the state dict.
    """

    table_names: ClassVar[tuple[str, ...]] = ("users", "items")

    def forward(self, user_ids: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        """Logits for (user, item) pairs of equal shape."""
        raise NotImplementedError

    def score_all_items(self, user_ids: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        """Logits of every user in `user_ids` against every item in `item_ids`: (U, I)."""
        raise NotImplementedError
