"""Frequency ranking and tier assignment (MGQE paper, Sec. 4.1).

Ids get new ids 0..n-1 from most to least frequent (ties broken by raw id ascending, so the
result does not depend on input order). One extra id, n, is reserved for ids never seen in
training; it is the least frequent id and so lands in the lowest tier. Tiers are cut by shares
of the vocabulary or by minimum training counts; a tier is `bucketize(new_id, boundaries,
right=True)`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class TierRule:
    """How one vocabulary is cut into tiers, from the head down: `fractions` are per-tier
    shares of the known ids ((0.1,) = top 10% in tier 0, the rest in tier 1); `min_counts`,
    when given, replaces them: tier i holds ids with at least min_counts[i] training rows."""

    fractions: tuple[float, ...] = (0.1,)
    min_counts: tuple[int, ...] = ()

    def boundaries(self, sorted_counts: np.ndarray, what: str) -> list[int]:
        """Cut points for ids ranked by descending count; `what` names the feature in errors."""
        if not self.min_counts:
            return tier_boundaries(len(sorted_counts), self.fractions)
        return count_boundaries(sorted_counts, self.min_counts, what)


def build_vocab(
    raw_ids: pa.Array, counts: pa.Array, rule: TierRule, what: str = "ids"
) -> tuple[pa.Table, list[int]]:
    """Rank ids by count and cut tiers; returns (columns raw_id, id, count, tier) and the tier
    boundaries. The last row is the OOV id (raw_id null, count 0)."""
    if len(raw_ids) != len(counts):
        raise ValueError(f"raw_ids ({len(raw_ids)}) and counts ({len(counts)}) differ in length")
    if pc.any(pc.is_null(raw_ids)).as_py():
        raise ValueError("raw_ids contain nulls")
    table = pa.table({"raw_id": raw_ids, "count": pa.array(counts, pa.int64())})
    table = table.sort_by([("count", "descending"), ("raw_id", "ascending")])
    n = table.num_rows
    boundaries = rule.boundaries(table["count"].to_numpy(), what)
    ids = np.arange(n + 1, dtype=np.int64)
    oov = pa.table(
        {
            "raw_id": pa.nulls(1, table.schema.field("raw_id").type),
            "count": pa.array([0], pa.int64()),
        }
    )
    table = pa.concat_tables([table, oov])
    vocab = pa.table(
        {
            "raw_id": table["raw_id"],
            "id": ids,
            "count": table["count"],
            "tier": np.searchsorted(np.asarray(boundaries), ids, side="right").astype(np.int32),
        }
    )
    return vocab, boundaries


def tier_boundaries(num_known: int, tier_fractions: tuple[float, ...]) -> list[int]:
    """Id cut points: tier i holds ids in [boundaries[i-1], boundaries[i]).

    Each fraction is the share of known ids in one tier, from the head down; the remaining ids
    (and the OOV id) form the last tier. Every tier keeps at least one id where possible.
    """
    if any(not 0 < f < 1 for f in tier_fractions) or sum(tier_fractions) >= 1:
        raise ValueError(f"tier_fractions must be in (0, 1) and sum below 1, got {tier_fractions}")
    boundaries, cut = [], 0
    for fraction in tier_fractions:
        cut = min(max(cut + math.ceil(fraction * num_known), cut + 1), num_known)
        boundaries.append(cut)
    return boundaries


def count_boundaries(
    sorted_counts: np.ndarray, min_counts: tuple[int, ...], what: str
) -> list[int]:
    """Cut points where descending counts fall below each threshold; every tier non-empty."""
    if any(c < 1 for c in min_counts) or list(min_counts) != sorted(set(min_counts), reverse=True):
        raise ValueError(f"tier_min_counts must be strictly decreasing and >= 1, got {min_counts}")
    # Ids with count >= t are a prefix of the descending counts.
    boundaries = [int(np.searchsorted(-sorted_counts, -t, side="right")) for t in min_counts]
    edges = [0, *boundaries, len(sorted_counts) + 1]  # the OOV id always ends the last tier
    for i, (low, high) in enumerate(itertools.pairwise(edges)):
        if low >= high:
            top, bottom = sorted_counts.max(initial=0), sorted_counts.min(initial=0)
            raise ValueError(
                f"{what}: tier_min_counts {list(min_counts)} leave tier {i} empty (training "
                f"counts run from {top} down to {bottom})"
            )
    return boundaries
