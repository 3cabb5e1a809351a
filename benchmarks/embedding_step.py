"""Embedding forward+backward time per batch, every kind, as a ratio to full embeddings (FE).

Tables of MovieLens-1M item size and of 1M ids; batch of 4096 ids (Zipf positives, uniform
negatives). Also MGQE's grouped lookup (one search per tier over that tier's ids, paper
Alg. 1) against an ungrouped one (every id searched in every tier's codebook, then selected
by tier), to show what grouping saves.

    .venv/bin/python -m benchmarks.embedding_step [--steps 20] [--device cpu]
"""

from __future__ import annotations

import argparse
from functools import partial

import torch

from benchmarks.common import KINDS, ML1M_ITEMS, build, mean_seconds, training_ids
from mgqe_dist.embeddings import EmbeddingModule, MGQEEmbedding
from mgqe_dist.embeddings.mgqe import _nearest

BATCH = 4096


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
    args = parser.parse_args()
    device = torch.device(args.device)
    print(
        f"embedding forward+backward, batch {BATCH}, {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    for n in (ML1M_ITEMS, 1_000_000):
        ids = training_ids(n, BATCH, torch.Generator().manual_seed(0)).to(device)
        times = {}
        for name in KINDS:
            torch.manual_seed(0)
            table = build(name, n, device)
            times[name] = mean_seconds(partial(fwd_bwd, table, ids), args.steps, device)
        print(f" n = {n}")
        for name, seconds in times.items():
            print(
                f"  {name:<14}{1000 * seconds:8.2f} ms   ratio to FE {seconds / times['full']:5.2f}"
            )

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
