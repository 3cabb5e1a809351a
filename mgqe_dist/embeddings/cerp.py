"""CERP: compact compositional embeddings via regularized pruning (Liang et al. 2023).

Id x of a table of n ids is composed from one row of each of two meta-tables P and Q of b rows
(b >= sqrt(n), so no two ids share both rows): P[x mod b] + Q[x // ceil(n / b)], or their
concatenation (each meta-table then d/2 wide). Training runs in two phases:

1. Pruning: a meta-table V is used through sign(V) relu(|V| - sigmoid(S)), S a learnable
   threshold per element (or one per meta-table), while a complementarity regularizer,
   -gamma mean(tanh(eta e)^2) over the batch's composed values e, rewards non-zeros in the
   composition so that P and Q keep them in different places; gamma halves every epoch. An L2
   pull on S (the reference's weight decay, which our Adam does not apply) raises the
   thresholds steadily, and the task gradient holds up the values it needs. The
   phase ends after the first epoch whose non-zero count is at most the budget
   (1 - sparsity) x |P| + |Q|, or after `prune_epochs` epochs, when the largest values are kept
   up to the budget (the `forced` buffer, saved with the weights, says which).
2. Retraining (lottery ticket): P and Q restart from their initial values times the kept
   mask, with no threshold and the mask fixed.

Serving stores only the non-zeros of each meta-table, as CSR (see `csr_bits`).
Decisions where the reference differs or is silent: each table has its own meta-tables (the
reference puts users and items in one index space); the regularizer is a mean over the
batch's values, not a sum, so that gamma's scale does not depend on batch size or d; S starts
at -15 (sigmoid ~3e-7: nothing pruned) rather than -100, whose sigmoid gradient underflows in
float32 and would never move S; Adam's moments carry over into retraining.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mgqe_dist.embeddings.base import FLOAT_BITS, EmbeddingModule, register_embedding

PRUNING, RETRAINING = 0, 1
COMPOSITIONS = ("sum", "concat")
THRESHOLDS = ("element", "global")


@register_embedding("cerp")
class CERPEmbedding(EmbeddingModule):
    """Two pruned meta-tables composed per id; see the module docstring for the phases."""

    p_init: torch.Tensor
    q_init: torch.Tensor
    p_mask: torch.Tensor
    q_mask: torch.Tensor
    phase: torch.Tensor
    gamma: torch.Tensor
    epochs_pruned: torch.Tensor
    forced: torch.Tensor

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        buckets: int = 0,
        composition: str = "sum",
        threshold: str = "element",
        threshold_init: float = -15.0,
        sparsity: float = 0.8,
        prune_epochs: int = 5,
        regularizer_weight: float = 1.0,
        regularizer_sharpness: float = 100.0,
        threshold_decay: float = 1e-5,
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.buckets = buckets or math.isqrt(num_embeddings - 1) + 1  # ceil(sqrt(n))
        self.stride = -(-num_embeddings // self.buckets)  # ceil(n / b): ids per Q row
        _check(self, composition, threshold, sparsity, prune_epochs)
        self.composition, self.sparsity, self.prune_epochs = composition, sparsity, prune_epochs
        self.sharpness, self.threshold_decay = regularizer_sharpness, threshold_decay
        width = embedding_dim if composition == "sum" else embedding_dim // 2
        shape = (self.buckets, width)
        self.p = nn.Parameter(torch.randn(shape) * init_std)
        self.q = nn.Parameter(torch.randn(shape) * init_std)
        threshold_shape = shape if threshold == "element" else (1, 1)
        self.p_threshold = nn.Parameter(torch.full(threshold_shape, threshold_init))
        self.q_threshold = nn.Parameter(torch.full(threshold_shape, threshold_init))
        # The initial values (lottery-ticket restart) and the kept mask of retraining.
        self.register_buffer("p_init", self.p.detach().clone())
        self.register_buffer("q_init", self.q.detach().clone())
        self.register_buffer("p_mask", torch.ones(shape, dtype=torch.bool))
        self.register_buffer("q_mask", torch.ones(shape, dtype=torch.bool))
        self.register_buffer("phase", torch.tensor(PRUNING))
        self.register_buffer("gamma", torch.tensor(float(regularizer_weight)))
        self.register_buffer("epochs_pruned", torch.tensor(0))
        self.register_buffer("forced", torch.tensor(False))
        self._pending_loss: torch.Tensor | None = None

    def meta_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """P and Q as the forward uses them: soft-thresholded while pruning, masked after."""
        if int(self.phase) == RETRAINING:
            return self.p * self.p_mask, self.q * self.q_mask
        return _soft_threshold(self.p, self.p_threshold), _soft_threshold(self.q, self.q_threshold)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)
        p, q = self.meta_tables()
        rows = (p.index_select(0, flat % self.buckets), q.index_select(0, flat // self.stride))
        value = rows[0] + rows[1] if self.composition == "sum" else torch.cat(rows, dim=1)
        if torch.is_grad_enabled() and int(self.phase) == PRUNING:
            loss = -self.gamma * torch.tanh(self.sharpness * value).pow(2).mean()
            loss = loss + self.threshold_decay / 2 * (
                self.p_threshold.pow(2).sum() + self.q_threshold.pow(2).sum()
            )
            self._pending_loss = loss if self._pending_loss is None else self._pending_loss + loss
        return value.view(*ids.shape, self.embedding_dim)

    def extra_loss(self) -> torch.Tensor:
        """The complementarity regularizer and threshold pull of the lookups since the last
        call; resets it."""
        loss, self._pending_loss = self._pending_loss, None
        return loss if loss is not None else self.p.new_zeros(())

    def budget(self) -> int:
        """Non-zeros allowed in P and Q together at the target sparsity."""
        return math.floor((1 - self.sparsity) * (self.p.numel() + self.q.numel()))

    @torch.no_grad()
    def nonzeros(self) -> int:
        """Non-zero values of P and Q as the forward uses them now."""
        return sum(int(t.count_nonzero()) for t in self.meta_tables())

    @torch.no_grad()
    def end_epoch(self) -> None:
        """Halve the regularizer weight; end pruning once within budget or out of epochs."""
        if int(self.phase) == RETRAINING:
            return
        self.gamma.mul_(0.5)
        self.epochs_pruned.add_(1)
        within = self.nonzeros() <= self.budget()
        if within or int(self.epochs_pruned) >= self.prune_epochs:
            self._start_retraining(forced=not within)

    def selectable(self) -> bool:
        """Only retraining epochs meet the memory budget, so only they may be kept as best."""
        return int(self.phase) == RETRAINING

    def _start_retraining(self, forced: bool) -> None:
        p, q = self.meta_tables()
        values = torch.cat([p.reshape(-1), q.reshape(-1)]).abs()
        keep = values > 0
        if forced:  # keep the largest values up to the budget (ties by position, stable)
            keep = torch.zeros_like(keep)
            keep[values.argsort(descending=True, stable=True)[: self.budget()]] = True
            keep &= values > 0
        self.p_mask.copy_(keep[: p.numel()].view_as(p))
        self.q_mask.copy_(keep[p.numel() :].view_as(q))
        self.p.copy_(self.p_init * self.p_mask)
        self.q.copy_(self.q_init * self.q_mask)
        self.phase.fill_(RETRAINING)
        self.forced.fill_(forced)

    @torch.no_grad()
    def serving_bits(self) -> int:
        return sum(csr_bits(t) for t in self.meta_tables())


def csr_bits(table: torch.Tensor) -> int:
    """Bits of a 2-d table stored as CSR: each non-zero's value (32 bits) and column index
    (ceil(log2 columns) bits), and rows + 1 row pointers of ceil(log2(nnz + 1)) bits."""
    rows, columns = table.shape
    nnz = int(table.count_nonzero())
    return nnz * (FLOAT_BITS + _bits_for(columns)) + (rows + 1) * _bits_for(nnz + 1)


def _bits_for(values: int) -> int:
    """Bits that index `values` distinct values (at least 1)."""
    return max(1, math.ceil(math.log2(values)))


def _soft_threshold(table: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return torch.sign(table) * torch.relu(table.abs() - torch.sigmoid(threshold))


def _check(
    table: CERPEmbedding, composition: str, threshold: str, sparsity: float, prune_epochs: int
) -> None:
    if table.buckets**2 < table.num_embeddings:
        raise ValueError(
            f"buckets {table.buckets} < sqrt({table.num_embeddings}): ids would share both rows"
        )
    if composition not in COMPOSITIONS:
        raise ValueError(f"composition must be one of {COMPOSITIONS}, got {composition!r}")
    if composition == "concat" and table.embedding_dim % 2:
        raise ValueError(f"concat composition needs an even dim, got {table.embedding_dim}")
    if threshold not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {THRESHOLDS}, got {threshold!r}")
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if prune_epochs < 1:
        raise ValueError(f"prune_epochs must be at least 1, got {prune_epochs}")
