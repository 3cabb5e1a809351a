"""Frequency ranking and tier assignment (MGQE paper, Sec. 4.1).

Ids get new ids 0..n-1 from most to least frequent (ties broken by raw id ascending, so the
result does not depend on input order). One extra id, n, is reserved for ids never seen in
training; it is the least frequent id and so lands in the lowest tier. A tier is then
`bucketize(new_id, boundaries, right=True)`.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def build_vocab(raw_ids: pa.Array, counts: pa.Array, tier_fractions: tuple[float, ...]) -> pa.Table:
    """Rank ids by count and cut tiers; returns columns raw_id, id, count, tier.

    The last row is the OOV id (raw_id null, count 0). `tier_fractions` are per-tier shares
    from the head down: (0.1,) puts the top 10% of known ids in tier 0 and the rest in tier 1.
    """
    if len(raw_ids) != len(counts):
        raise ValueError(f"raw_ids ({len(raw_ids)}) and counts ({len(counts)}) differ in length")
    if pc.any(pc.is_null(raw_ids)).as_py():
        raise ValueError("raw_ids contain nulls")
    table = pa.table({"raw_id": raw_ids, "count": pa.array(counts, pa.int64())})
    table = table.sort_by([("count", "descending"), ("raw_id", "ascending")])
    n = table.num_rows
    boundaries = tier_boundaries(n, tier_fractions)
    ids = np.arange(n + 1, dtype=np.int64)
    oov = pa.table(
        {
            "raw_id": pa.nulls(1, table.schema.field("raw_id").type),
            "count": pa.array([0], pa.int64()),
        }
    )
    table = pa.concat_tables([table, oov])
    return pa.table(
        {
            "raw_id": table["raw_id"],
            "id": ids,
            "count": table["count"],
            "tier": np.searchsorted(np.asarray(boundaries), ids, side="right").astype(np.int32),
        }
    )


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
