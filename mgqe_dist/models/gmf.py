"""GMF (He et al., NCF 2017): score = h^T (p_u * q_i) + b, embeddings of any kind."""

from __future__ import annotations

import torch
from torch import nn

from mgqe_dist.embeddings import EmbeddingModule
from mgqe_dist.models.base import Recommender
from mgqe_dist.models.registry import register_model


@register_model("gmf")
class GMF(Recommender):
    """Generalised matrix factorisation over a user table and an item table."""

    def __init__(self, users: EmbeddingModule, items: EmbeddingModule) -> None:
        super().__init__()
        if users.embedding_dim != items.embedding_dim:
            raise ValueError(
                f"GMF needs equal user/item dims, got {users.embedding_dim} and "
                f"{items.embedding_dim}"
            )
        self.users, self.items = users, items
        self.predict = nn.Linear(users.embedding_dim, 1)

    def forward(self, user_ids: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        """Logits for (user, item) pairs of equal shape."""
        return self.predict(self.users(user_ids) * self.items(item_ids)).squeeze(-1)

    def score_all_items(self, user_ids: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        """Logits of every user in `user_ids` against every item in `item_ids`: (U, I)."""
        weighted = self.users(user_ids) * self.predict.weight[0]
        return weighted @ self.items(item_ids).T + self.predict.bias
