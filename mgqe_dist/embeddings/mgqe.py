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

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from mgqe_dist.embeddings.base import FLOAT_BITS, EmbeddingModule, register_embedding

# Distances for at most this many (id, subspace, centroid) triples are held at once: on CPU a
# block that stays in cache (for 3,000 ids, D = 32, K = 256 it searched 2.6x faster than a
# 1 << 24 block, and 6x faster than an einsum over (ids, D, K)), on an accelerator few large
# launches.
_CPU_SEARCH_CHUNK_ELEMENTS = 1 << 18
_SEARCH_CHUNK_ELEMENTS = 1 << 24


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
        """The quantized value of query `rows` (one per id in the 1-d `ids`, any order).

        Straight-through: the value is the centroids, the gradient goes to the rows. Without
        autograd the centroids themselves are returned, bit-identical to serving. The centroid
        (and commitment) loss, a mean over the rows, accumulates for `extra_loss`.
        """
        grouped, restore = self._group_by_tier(ids)
        parts = []
        loss = rows.new_zeros(())
        for tier, index in grouped:
            e = rows.index_select(0, index).view(len(index), self.subspaces[tier], -1)
            chosen = self._centroids(tier, _nearest(e.detach(), self.codebook(tier).detach()))
            value = e + (chosen - e).detach() if torch.is_grad_enabled() else chosen
            parts.append(value.reshape(len(index), -1))
            if torch.is_grad_enabled():
                loss = loss + self.centroid_loss_weight * (e.detach() - chosen).pow(2).sum()
                if self.commitment_weight:
                    loss = loss + self.commitment_weight * (e - chosen.detach()).pow(2).sum()
        if torch.is_grad_enabled() and len(ids):
            loss = loss / (len(ids) * self.embedding_dim)
            self._pending_loss = loss if self._pending_loss is None else self._pending_loss + loss
        if not parts:
            return rows.new_empty((0, self.embedding_dim))
        return torch.cat(parts).index_select(0, restore)

    @torch.no_grad()
    def codes_of(self, ids: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Integer codes of query `rows` (ids 1-d), shape (len, max D); -1 pads smaller D."""
        out = torch.full((len(ids), max(self.subspaces)), -1, dtype=torch.long, device=ids.device)
        for tier, index in self._group_by_tier(ids)[0]:
            e = rows.index_select(0, index).view(len(index), self.subspaces[tier], -1)
            out[index, : self.subspaces[tier]] = _nearest(e, self.codebook(tier))
        return out

    def _group_by_tier(
        self, ids: torch.Tensor
    ) -> tuple[list[tuple[int, torch.Tensor]], torch.Tensor]:
        """Row indices of each non-empty tier (one batched search per tier, paper Alg. 1), and
        the permutation that puts the concatenated tier results back in row order."""
        tiers = self.tiers(ids)
        order = torch.argsort(tiers, stable=True)
        counts = torch.bincount(tiers, minlength=len(self.subspaces)).tolist()
        grouped = [(tier, index) for tier, index in enumerate(order.split(counts)) if len(index)]
        restore = torch.empty_like(order)
        restore[order] = torch.arange(len(order), device=order.device)
        return grouped, restore

    def _centroids(self, tier: int, codes: torch.Tensor) -> torch.Tensor:
        """Centroid vectors for codes (rows, D_i) -> (rows, D_i, d / D_i), differentiable.

        A flat index_select (backward: index_add) into the stored parameter, which for shared
        centroids is the whole codebook: tier i's codes are < K_i, so they address its prefix.
        """
        book = self.codebooks[0 if self.shared else tier]
        num_sub, num_codes, width = book.shape
        flat = codes + torch.arange(num_sub, device=codes.device) * num_codes
        return book.reshape(-1, width).index_select(0, flat.reshape(-1)).view(*codes.shape, width)

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
        unique, inverse = torch.unique(ids.reshape(-1), return_inverse=True)
        quantized = self.quantize(unique, nn.functional.embedding(unique, self.query))
        return nn.functional.embedding(inverse, quantized).reshape(*ids.shape, self.embedding_dim)

    @torch.no_grad()
    def codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Integer codes of each id, shape (*ids.shape, max D); -1 pads tiers with fewer D."""
        unique, inverse = torch.unique(ids.reshape(-1), return_inverse=True)
        codes = self.codes_of(unique, self.query[unique])
        return codes[inverse].reshape(*ids.shape, -1)


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


def _nearest(e: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    """argmin_k ||e[:, j] - book[j, k]||^2 for every row and subspace j; shape (rows, D)."""
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
    """One-dimensional subspaces: the nearest centroid is found by bisecting sorted midpoints.

    O(D log K) per row instead of O(D K); this is the paper's d/D = 1 setting (D = d = 64).
    """
    values, order = book.sort(dim=1)
    midpoints = (values[:, 1:] + values[:, :-1]) / 2
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
