"""SASRec (Kang & McAuley 2018): causal self-attention over a user's recent items.

A user is their item history, left-padded with -1 to `max_len` (most recent last). The item
table (any embedding kind) is shared between the input sequence and the output scores, as in
the paper: the logit of item i after the sequence is <h_last, E[i]>. Defaults follow the
paper: 2 blocks, 1 head, dropout 0.2, max length 50.
"""

from __future__ import annotations

import torch
from torch import nn

from mgqe_dist.embeddings import EmbeddingModule
from mgqe_dist.models.base import Recommender
from mgqe_dist.models.registry import register_model

PAD = -1


class _Block(nn.Module):
    """Pre-norm causal self-attention and point-wise feed-forward, each with a residual."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim, eps=1e-8)
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.feed_forward_norm = nn.LayerNorm(dim, eps=1e-8)
        self.feed_forward = nn.Sequential(
            nn.Linear(dim, dim), nn.Dropout(dropout), nn.ReLU(), nn.Linear(dim, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, causal: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        # Layer placement follows the reference implementation: queries and the feed-forward
        # input are normalised, keys/values are not, residuals start from the normalised input.
        query = self.attention_norm(x)
        attended, _ = self.attention(query, x, x, attn_mask=causal, need_weights=False)
        x = self.feed_forward_norm(query + self.dropout(attended))
        x = x + self.dropout(self.feed_forward(x))
        return x * keep  # padded positions stay zero


@register_model("sasrec")
class SASRec(Recommender):
    """Next-item model over item histories; `user_ids` arguments are (B, L) item sequences."""

    table_names = ("items",)

    def __init__(
        self,
        items: EmbeddingModule,
        max_len: int = 50,
        num_blocks: int = 2,
        num_heads: int = 1,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        dim = items.embedding_dim
        if dim % num_heads:
            raise ValueError(f"SASRec: embedding dim {dim} is not divisible by {num_heads} heads")
        self.items, self.max_len = items, max_len
        self.positions = nn.Embedding(max_len, dim)
        self.input_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(dim, num_heads, dropout) for _ in range(num_blocks))
        self.final_norm = nn.LayerNorm(dim, eps=1e-8)

    def hidden(self, sequences: torch.Tensor) -> torch.Tensor:
        """Hidden state after every position of (B, L) left-padded histories: (B, L, d)."""
        length = sequences.shape[1]
        if length > self.max_len:
            raise ValueError(f"SASRec: sequences of length {length} exceed max_len {self.max_len}")
        keep = (sequences != PAD).unsqueeze(-1).to(self.positions.weight.dtype)
        x = self.items(sequences.clamp(min=0)) * self.items.embedding_dim**0.5
        x = x + self.positions.weight[self.max_len - length :]
        x = self.input_dropout(x) * keep
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
        for block in self.blocks:
            x = block(x, causal, keep)
        return self.final_norm(x)

    def forward(self, user_ids: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        """Logits of (B, C) candidate items after each of the (B, L) histories in `user_ids`."""
        last = self.hidden(user_ids)[:, -1]
        return (self.items(item_ids) * last.unsqueeze(1)).sum(-1)

    def score_all_items(self, user_ids: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        """Logits of every item in `item_ids` after each history in `user_ids`: (B, I)."""
        return self.hidden(user_ids)[:, -1] @ self.items(item_ids).T
