"""MGQE: multi-granular quantized embeddings (Kang et al. 2020), DPQ-VQ per frequency tier.

Each id has a trainable query vector e (d floats). Split into D subvectors, each is replaced by
its nearest centroid among the K_i centroids its tier may use; the forward value is the
centroids, the gradient flows to e (straight-through), and a centroid loss pulls the chosen
centroids towards sg(e). Serving needs only the codes (argmin indices) and the centroids.

Tiers come from frequency-ranked ids: tier i holds ids in [boundaries[i-1], boundaries[i]).
Lookup is grouped: one batched search per tier, never a loop over ids (paper Alg. 1).
Variants: shared centroids with variable K (tier i searches the first K_i rows of one
codebook), unshared with variable K, unshared with variable D. DPQ is the one-tier case.
"""

from __future__ import annotations

import importlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import nn

from mgqe_dist.embeddings.base import FLOAT_BITS, EmbeddingModule, register_embedding


def _load_kernel() -> ModuleType | None:
    """The C search kernel (_search.c), built by the install step (setup.py); None on a
    machine where it could not be built, which then searches with torch ops."""
    try:
        return importlib.import_module("mgqe_dist.embeddings._search")
    except ImportError:
        return None


_search = _load_kernel()

# Distances for at most this many (id, subspace, centroid) triples are held at once: on CPU a
# block that stays in cache (for 3,000 ids, D = 32, K = 256 it searched 2.6x faster than a
# 1 << 24 block, and 6x faster than an einsum over (ids, D, K)), on an accelerator few large
# launches.
_CPU_SEARCH_CHUNK_ELEMENTS = 1 << 18
_SEARCH_CHUNK_ELEMENTS = 1 << 24
# Rows coded at once when a whole table is coded (export).
_EXPORT_CHUNK_ROWS = 1 << 16
# Widest subspace the C kernel searches (outwards from the value's place among centroids
# sorted by one coordinate, which prunes less as width grows); wider ones go to a matmul.
_COMPILED_MAX_WIDTH = 8


class TieredQuantizer(nn.Module):
    """MGQE's codebooks and tier layout: quantizes rows of query vectors given their ids.

    Kept apart from the query table so the per-id state can live elsewhere (a TorchRec
    EmbeddingCollection that DMP shards) while the codebooks stay data-parallel.
    """

    _boundaries: torch.Tensor

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        tier_boundaries: Sequence[int] = (),
        num_subspaces: int | Sequence[int] = 64,
        num_centroids: int | Sequence[int] = (256, 64),
        shared_centroids: bool = True,
        init_std: float = 0.01,
        centroid_loss_weight: float = 1.0,
        commitment_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.tier_boundaries = _check_boundaries(tier_boundaries, num_embeddings)
        num_tiers = len(self.tier_boundaries) + 1
        self.subspaces = _per_tier(num_subspaces, num_tiers, "num_subspaces")
        self.centroids_per_tier = _per_tier(num_centroids, num_tiers, "num_centroids")
        self.shared = shared_centroids
        for d_i in self.subspaces:
            if embedding_dim % d_i:
                raise ValueError(f"embedding_dim {embedding_dim} is not divisible by D={d_i}")
        if self.shared and len(set(self.subspaces)) > 1:
            raise ValueError("shared centroids need one num_subspaces for all tiers")
        if self.shared and list(self.centroids_per_tier) != sorted(
            self.centroids_per_tier, reverse=True
        ):
            raise ValueError(
                f"shared centroids need non-increasing num_centroids from head to tail, "
                f"got {self.centroids_per_tier}"
            )
        self.centroid_loss_weight = centroid_loss_weight
        self.commitment_weight = commitment_weight
        shapes = [
            (d_i, k_i, embedding_dim // d_i)
            for d_i, k_i in zip(self.subspaces, self.centroids_per_tier, strict=True)
        ]
        if self.shared:
            self.codebooks = nn.ParameterList([nn.Parameter(torch.randn(shapes[0]) * init_std)])
        else:
            self.codebooks = nn.ParameterList(
                nn.Parameter(torch.randn(s) * init_std) for s in shapes
            )
        self.register_buffer(
            "_boundaries", torch.tensor(self.tier_boundaries, dtype=torch.long), persistent=False
        )
        self._pending_loss: torch.Tensor | None = None

    def codebook(self, tier: int) -> torch.Tensor:
        """Centroids tier `tier` may use, shape (D_i, K_i, d / D_i)."""
        if self.shared:
            return self.codebooks[0][:, : self.centroids_per_tier[tier]]
        return self.codebooks[tier]

    def tiers(self, ids: torch.Tensor) -> torch.Tensor:
        """Tier index of every id (ids are frequency-ranked, so this is a bucketize)."""
        return torch.bucketize(ids, self._boundaries, right=True)

    def quantize(self, ids: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The quantized value of query `rows`, one per entry of the 1-d `ids` (any order,
        repeats allowed, as a KeyedJaggedTensor lookup returns them).

        Each distinct id is searched once, from one of its (identical) rows; the task gradient
        of every entry goes to its own row (straight-through), so the table's gradient per id
        is unchanged.
        """
        unique, inverse, counts = torch.unique(ids, return_inverse=True, return_counts=True)
        # Any one occurrence per id will do: scatter writes each position's index to its id.
        one_each = torch.empty_like(unique).scatter_(
            0, inverse, torch.arange(len(ids), device=ids.device)
        )
        value = self.quantize_sorted(unique, rows.index_select(0, one_each), counts)
        value = value.index_select(0, inverse)
        return _StraightThrough.apply(rows, value) if torch.is_grad_enabled() else value

    def quantize_sorted(
        self, ids: torch.Tensor, rows: torch.Tensor, counts: torch.Tensor
    ) -> torch.Tensor:
        """The centroids (no autograd) that quantize query `rows` of strictly increasing
        `ids`, each standing for counts[i] occurrences in the batch: bit-identical to serving.

        With autograd on, the centroid (and commitment) loss, a mean over the batch's
        occurrences and dimensions as in DPQ, accumulates for `extra_loss`; the caller passes
        the task gradient straight through to the rows.
        """
        training = torch.is_grad_enabled()
        chosen, loss = [], rows.new_zeros(())
        for tier, lo, hi in self._tier_ranges(ids):
            e = rows[lo:hi].view(hi - lo, self.subspaces[tier], -1)
            book = self.codebook(tier)
            weight = counts[lo:hi].to(rows.dtype)
            found = _assign(e.detach(), book.detach(), weight)
            chosen.append(found.chosen.reshape(hi - lo, -1))
            if training:
                loss = loss + self.centroid_loss_weight * _centroid_loss(found, book)
            if training and self.commitment_weight:
                loss = loss + self.commitment_weight * (
                    (e - found.chosen).pow(2).sum((1, 2)) @ weight
                )
        value = torch.cat(chosen) if chosen else rows.new_empty((0, self.embedding_dim))
        if training and len(ids):
            loss = loss / (counts.sum() * self.embedding_dim)
            self._pending_loss = loss if self._pending_loss is None else self._pending_loss + loss
        return value

    @torch.no_grad()
    def codes_sorted(self, ids: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Integer codes of query `rows` of strictly increasing `ids`, shape (len, max D);
        -1 pads tiers with fewer subspaces."""
        out = torch.full((len(ids), max(self.subspaces)), -1, dtype=torch.long, device=ids.device)
        for tier, lo, hi in self._tier_ranges(ids):
            e = rows[lo:hi].view(hi - lo, self.subspaces[tier], -1)
            out[lo:hi, : self.subspaces[tier]] = _nearest(e, self.codebook(tier))
        return out

    def _tier_ranges(self, ids: torch.Tensor) -> list[tuple[int, int, int]]:
        """(tier, start, stop) of each non-empty tier's slice of strictly increasing `ids`.

        Ids are frequency-ranked, so a tier is a contiguous id range and, in sorted ids, a
        contiguous slice: one batched search per tier (paper Alg. 1) with no regrouping.
        """
        cuts = torch.searchsorted(ids, self._boundaries).tolist() if len(self._boundaries) else []
        edges = [0, *cuts, len(ids)]
        return [
            (tier, lo, hi) for tier, (lo, hi) in enumerate(itertools.pairwise(edges)) if hi > lo
        ]

    def extra_loss(self) -> torch.Tensor:
        """Centroid (and commitment) loss of the quantizations since the last call; resets it."""
        loss, self._pending_loss = self._pending_loss, None
        return loss if loss is not None else self.codebooks[0].new_zeros(())

    def tier_sizes(self) -> list[int]:
        """Number of ids in each tier."""
        edges = [0, *self.tier_boundaries, self.num_embeddings]
        return [hi - lo for lo, hi in itertools.pairwise(edges)]

    def serving_bits(self) -> int:
        """Codes at ceil(log2 K_i) bits per subspace, plus every centroid at 32 bits."""
        code_bits = sum(
            n_i * d_i * math.ceil(math.log2(k_i))
            for n_i, d_i, k_i in zip(
                self.tier_sizes(), self.subspaces, self.centroids_per_tier, strict=True
            )
        )
        centroid_values = sum(p.numel() for p in self.codebooks)
        return code_bits + centroid_values * FLOAT_BITS


@register_embedding("mgqe")
class MGQEEmbedding(TieredQuantizer, EmbeddingModule):
    """Quantized embedding with per-tier codebook sizes: the tiered quantizer plus the
    trainable per-id query vectors it quantizes; see the module docstring."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        tier_boundaries: Sequence[int] = (),
        num_subspaces: int | Sequence[int] = 64,
        num_centroids: int | Sequence[int] = (256, 64),
        shared_centroids: bool = True,
        init_std: float = 0.01,
        centroid_loss_weight: float = 1.0,
        commitment_weight: float = 0.0,
    ) -> None:
        super().__init__(
            num_embeddings,
            embedding_dim,
            tier_boundaries,
            num_subspaces,
            num_centroids,
            shared_centroids,
            init_std,
            centroid_loss_weight,
            commitment_weight,
        )
        self.query = nn.Parameter(torch.randn(num_embeddings, embedding_dim) * init_std)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # Each distinct id is searched once, however often the batch holds it.
        flat = ids.reshape(-1)
        unique, inverse, counts = torch.unique(flat, return_inverse=True, return_counts=True)
        # Only the commitment loss differentiates through the searched rows.
        query = self.query if self.commitment_weight else self.query.detach()
        value = self.quantize_sorted(unique, query.index_select(0, unique), counts)
        if torch.is_grad_enabled():
            out = _QuantizedLookup.apply(self.query, flat, value, inverse)
        else:
            out = value.index_select(0, inverse)
        return out.view(*ids.shape, self.embedding_dim)

    @torch.no_grad()
    def codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Integer codes of each id, shape (*ids.shape, max D); -1 pads tiers with fewer D.

        Distinct ids are coded in chunks, each gathering only its own query rows, so that
        coding a whole table (export) copies no table-sized block of queries."""
        unique, inverse = torch.unique(ids.reshape(-1), return_inverse=True)
        chunks = unique.split(_EXPORT_CHUNK_ROWS)  # one (empty) chunk when there are no ids
        coded = torch.cat(
            [self.codes_sorted(part, self.query.index_select(0, part)) for part in chunks]
        )
        return coded[inverse].reshape(*ids.shape, coded.shape[1])


@register_embedding("dpq")
def build_dpq(
    num_embeddings: int,
    embedding_dim: int,
    num_subspaces: int | Sequence[int] = 64,
    num_centroids: int | Sequence[int] = 256,
    init_std: float = 0.01,
    centroid_loss_weight: float = 1.0,
    commitment_weight: float = 0.0,
) -> MGQEEmbedding:
    """DPQ-VQ (Chen et al.): MGQE with a single tier, so every id may use all K centroids."""
    return MGQEEmbedding(
        num_embeddings,
        embedding_dim,
        tier_boundaries=(),
        num_subspaces=num_subspaces,
        num_centroids=num_centroids,
        shared_centroids=True,
        init_std=init_std,
        centroid_loss_weight=centroid_loss_weight,
        commitment_weight=commitment_weight,
    )


@dataclass(frozen=True)
class _Assignment:
    """Rows' nearest centroids, and what the centroid loss needs of them."""

    codes: torch.Tensor  # (n, D) centroid index per row and subspace
    chosen: torch.Tensor  # (n, D, w) the centroids' values
    counts: torch.Tensor  # (D, K) summed row weight assigned to each centroid
    sums: torch.Tensor  # (D, K, w) weighted sum of the rows assigned to each centroid
    squared_error: torch.Tensor  # sum over rows of weight * ||row - chosen||^2


def _assign(e: torch.Tensor, book: torch.Tensor, weight: torch.Tensor) -> _Assignment:
    """Nearest centroids of rows e (n, D, w) in `book` (D, K, w), with row weights (n,)."""
    if _compiled(e, book):
        return _assign_compiled(e, book, weight)
    num_sub, num_codes, width = book.shape
    codes = _nearest(e, book)
    flat = (codes + torch.arange(num_sub, device=codes.device) * num_codes).reshape(-1)
    chosen = book.reshape(-1, width).index_select(0, flat).view(e.shape)
    per_value = weight[:, None].expand(codes.shape).reshape(-1)
    counts = e.new_zeros(num_sub * num_codes).index_add_(0, flat, per_value)
    weighted = (e * weight[:, None, None]).reshape(-1, width)
    sums = e.new_zeros(num_sub * num_codes, width).index_add_(0, flat, weighted)
    return _Assignment(
        codes,
        chosen,
        counts.view(num_sub, num_codes),
        sums.view(book.shape),
        (e - chosen).pow(2).sum((1, 2)) @ weight,
    )


def _centroid_loss(found: _Assignment, book: torch.Tensor) -> torch.Tensor:
    """The centroid loss of an assignment, differentiable in `book` (see _CentroidLoss)."""
    return _CentroidLoss.apply(book, found.counts, found.sums, found.squared_error)


class _CentroidLoss(torch.autograd.Function):
    """sum_i weight_i ||sg(e_i) - c(e_i)||^2 with its gradient to the centroids, 2 (N c - S):
    the same value and gradient as autograd through a gather of the chosen centroids, from
    the per-centroid counts N and sums S of the search alone: one op each way."""

    @staticmethod
    def forward(
        ctx: Any,
        book: torch.Tensor,
        counts: torch.Tensor,
        sums: torch.Tensor,
        squared_error: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(book, counts, sums)
        return squared_error.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        book, counts, sums = ctx.saved_tensors
        return grad * 2 * (counts[..., None] * book - sums), None, None, None


class _StraightThrough(torch.autograd.Function):
    """The centroids forward, the task gradient unchanged to the rows backward (STE): the
    forward value is exactly what serving returns."""

    @staticmethod
    def forward(ctx: Any, rows: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return value

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return grad, None


class _QuantizedLookup(torch.autograd.Function):
    """value[inverse] forward; backward, the straight-through gradient of each entry is added
    to its id's query row in one index_add, the cost of a plain embedding's backward."""

    @staticmethod
    def forward(
        ctx: Any,
        query: torch.Tensor,
        ids: torch.Tensor,
        value: torch.Tensor,
        inverse: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.num_ids = query.shape[0]
        return value.index_select(0, inverse)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (ids,) = ctx.saved_tensors
        table = grad.new_zeros((ctx.num_ids, grad.shape[-1])).index_add_(0, ids, grad)
        return table, None, None, None


def _compiled(e: torch.Tensor, book: torch.Tensor) -> bool:
    """Whether the C kernel handles this search: float32 on CPU, subspaces of at most
    _COMPILED_MAX_WIDTH dimensions (wider ones are a matmul's job)."""
    return (
        _search is not None
        and book.shape[-1] <= _COMPILED_MAX_WIDTH
        and e.device.type == "cpu"
        and e.dtype == book.dtype == torch.float32
    )


def _assign_compiled(e: torch.Tensor, book: torch.Tensor, weight: torch.Tensor) -> _Assignment:
    """`_assign` by the C kernel (see _search.c)."""
    assert _search is not None
    rows, num_sub, width = e.shape
    e, book = e.contiguous(), book.contiguous()
    codes = torch.empty((rows, num_sub), dtype=torch.long)
    chosen = torch.empty((rows, num_sub, width))
    counts, sums = torch.empty(book.shape[:2]), torch.empty(book.shape)
    squared_error = _search.assign(
        e.numpy(),
        book.numpy(),
        weight.to(torch.float32).contiguous().numpy(),
        codes.numpy(),
        chosen.numpy(),
        counts.numpy(),
        sums.numpy(),
        rows,
        num_sub,
        book.shape[1],
        width,
    )
    return _Assignment(codes, chosen, counts, sums, torch.tensor(squared_error))


def _nearest(e: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    """argmin_k ||e[:, j] - book[j, k]||^2 for every row and subspace j; shape (rows, D)."""
    if _compiled(e, book):
        return _assign_compiled(e, book, e.new_ones(len(e))).codes
    return _nearest_torch(e, book)


def _nearest_torch(e: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    """`_nearest` in torch ops, for any device and dtype."""
    if book.shape[-1] == 1:
        return _nearest_scalar(e[..., 0], book[..., 0])
    # ||e||^2 is the same for every k, so it is left out of the comparison. Distances are laid
    # out (D, rows, K): one baddbmm writes them and argmin reads them contiguously.
    book_sq = book.pow(2).sum(-1).unsqueeze(1)
    book_t = book.transpose(1, 2)
    budget = _CPU_SEARCH_CHUNK_ELEMENTS if e.device.type == "cpu" else _SEARCH_CHUNK_ELEMENTS
    chunk = max(1, budget // (book.shape[0] * book.shape[1]))
    parts = [
        torch.baddbmm(book_sq, part.transpose(0, 1), book_t, alpha=-2).argmin(-1)
        for part in e.split(chunk)
    ]
    if not parts:
        return e.new_empty((0, book.shape[0]), dtype=torch.long)
    return torch.cat(parts, dim=1).T.contiguous()


def _nearest_scalar(e: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    """One-dimensional subspaces in torch ops (any device or dtype): the nearest centroid is
    found by bisecting the sorted centroids' midpoints, O(D log K) per row instead of O(D K);
    this is the paper's d/D = 1 setting (D = d = 64). The C kernel gives the same codes."""
    values, order = book.sort(dim=1, stable=True)
    midpoints = (values[:, 1:] + values[:, :-1]) / 2
    # Of equal centroids only the first (lowest index, as argmin) may be reached: a duplicate's
    # midpoint becomes the next real one, which leaves it an empty range and keeps the order.
    duplicate = values[:, 1:] == values[:, :-1]
    midpoints = midpoints.masked_fill(duplicate, math.inf).flip(1).cummin(1).values.flip(1)
    slot = torch.searchsorted(midpoints, e.T.contiguous())
    return order.gather(1, slot).T


def _per_tier(value: int | Sequence[int], num_tiers: int, name: str) -> tuple[int, ...]:
    values = (value,) * num_tiers if isinstance(value, int) else tuple(value)
    if len(values) == 1:
        values = values * num_tiers
    if len(values) != num_tiers:
        raise ValueError(f"{name} has {len(values)} entries for {num_tiers} tiers")
    if any(v < 1 for v in values):
        raise ValueError(f"{name} must be positive, got {values}")
    return values


def _check_boundaries(boundaries: Sequence[int], n: int) -> tuple[int, ...]:
    values = tuple(int(b) for b in boundaries)
    if any(not 0 < b < n for b in values) or list(values) != sorted(set(values)):
        raise ValueError(
            f"tier_boundaries must be strictly increasing ids in (0, {n}), got {list(values)}"
        )
    return values
