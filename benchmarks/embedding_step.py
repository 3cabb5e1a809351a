"""Embedding forward+backward time per batch, every kind, as a ratio to full embeddings (FE).

Tables of MovieLens-1M item size, 1M and 10M ids; batch of 4096 ids (Zipf positives, uniform
negatives); at 10M only FE, DPQ and MGQE. Each kind's peak RSS (table, dense gradient, search)
is measured in its own window. Up to 1M ids also MGQE's grouped lookup (one search per tier
over that tier's ids, paper Alg. 1) against an ungrouped one (every id searched in every
tier's codebook, then selected by tier), to show what grouping saves.

    .venv/bin/python -m benchmarks.embedding_step [--steps 20] [--device cpu]
        [--sizes 3707,1000000,10000000]
"""

from __future__ import annotations

import argparse
from functools import partial

import torch

from benchmarks.common import (
    KINDS,
    ML1M_ITEMS,
    build,
    mean_seconds,
    peak_rss_gib,
    reset_peak_rss,
    training_ids,
)
from mgqe_dist.embeddings import EmbeddingModule, MGQEEmbedding
from mgqe_dist.embeddings.mgqe import _nearest

BATCH = 4096
# Above this many ids only these kinds run (every other kind's table is as large as FE's).
LARGE = 1_000_000
LARGE_KINDS = ("full", "dpq", "mgqe")


def fwd_bwd(table: EmbeddingModule, ids: torch.Tensor) -> None:
    """One forward and backward through the table (sum of outputs + auxiliary loss)."""
    (table(ids).sum() + table.extra_loss()).backward()


def ungrouped_codes(table: MGQEEmbedding, ids: torch.Tensor) -> torch.Tensor:
    """Codes without grouping: search all ids in every tier's codebook, keep each id's own tier."""
    tiers = table.tiers(ids)
    result = torch.zeros(len(ids), table.subspaces[0], dtype=torch.long, device=ids.device)
    for tier in range(len(table.centroids_per_tier)):
        e = table.query[ids].view(len(ids), table.subspaces[tier], -1)
        codes = _nearest(e, table.codebook(tier))
        result = torch.where((tiers == tier)[:, None], codes, result)
    return result


def main() -> None:
    """Print ms per batch and ratio to FE for every kind and table size, then grouped vs not."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default=f"{ML1M_ITEMS},1000000,10000000")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(
        f"embedding forward+backward, batch {BATCH}, {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    for n in (int(size) for size in args.sizes.split(",")):
        ids = training_ids(n, BATCH, torch.Generator().manual_seed(0)).to(device)
        times, peaks = {}, {}
        for name in KINDS if n <= LARGE else LARGE_KINDS:
            torch.manual_seed(0)
            reset_peak_rss()
            table = build(name, n, device)
            times[name] = mean_seconds(partial(fwd_bwd, table, ids), args.steps, device)
            peaks[name] = peak_rss_gib()
            del table
        print(f" n = {n}")
        for name, seconds in times.items():
            print(
                f"  {name:<14}{1000 * seconds:8.2f} ms   ratio to FE {seconds / times['full']:5.2f}"
                f"   peak RSS {peaks[name]:5.2f} GiB"
            )
        if n > LARGE:
            continue

        table = build("mgqe", n, device)
        assert isinstance(table, MGQEEmbedding)
        with torch.no_grad():
            grouped = mean_seconds(partial(table.codes, ids), args.steps, device)
            ungrouped = mean_seconds(partial(ungrouped_codes, table, ids), args.steps, device)
            assert torch.equal(table.codes(ids), ungrouped_codes(table, ids))
        print(
            f"  mgqe code search: grouped {1000 * grouped:.2f} ms, ungrouped "
            f"{1000 * ungrouped:.2f} ms (grouped / ungrouped {grouped / ungrouped:.2f})"
        )


if __name__ == "__main__":
    main()
