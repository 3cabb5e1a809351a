"""NeuMF (He et al., NCF 2017): GMF and a 3-layer pyramid MLP side by side, no pre-training.

Both branches read the same user and item tables (of any embedding kind), so the model has
one table per entity like GMF and its size accounting compares like for like; the NCF paper
gives each branch its own tables, which would double the embedding state being compressed.
"""

from __future__ import annotations

import torch
from torch import nn

from mgqe_dist.embeddings import EmbeddingModule
from mgqe_dist.models.base import Recommender
from mgqe_dist.models.registry import register_model


@register_model("neumf")
class NeuMF(Recommender):
    """score = h^T [p_u * q_i ; MLP([p_u ; q_i])] + b, MLP widths 2d -> d -> d/2 -> d/4."""

    def __init__(self, users: EmbeddingModule, items: EmbeddingModule) -> None:
        super().__init__()
        dim = users.embedding_dim
        if items.embedding_dim != dim or dim % 4:
            raise ValueError(
                f"NeuMF needs equal user/item dims divisible by 4, got {dim} and "
                f"{items.embedding_dim}"
            )
        self.users, self.items = users, items
        self.mlp = nn.Sequential(
            nn.Linear(2 * dim, dim),
            nn.ReLU(),
            nn.Linear(dim, dim // 2),
            nn.ReLU(),
            nn.Linear(dim // 2, dim // 4),
            nn.ReLU(),
        )
        self.predict = nn.Linear(dim + dim // 4, 1)

    def forward(self, user_ids: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        """Logits for (user, item) pairs of equal shape."""
        p, q = self.users(user_ids), self.items(item_ids)
        hidden = self.mlp(torch.cat([p, q], dim=-1))
        return self.predict(torch.cat([p * q, hidden], dim=-1)).squeeze(-1)

    def score_all_items(self, user_ids: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        """Logits of every user against every item: (U, I).

        The first MLP layer is split into its user and item halves, so it runs once per user
        and once per item rather than once per pair.
        """
        p, q = self.users(user_ids), self.items(item_ids)
        first = self.mlp[0]
        assert isinstance(first, nn.Linear)
        dim = p.shape[-1]
        from_users = p @ first.weight[:, :dim].T + first.bias
        from_items = q @ first.weight[:, dim:].T
        hidden = self.mlp[1:](from_users[:, None, :] + from_items[None, :, :])
        gmf_weight, mlp_weight = self.predict.weight[0, :dim], self.predict.weight[0, dim:]
        return (p * gmf_weight) @ q.T + hidden @ mlp_weight + self.predict.bias
