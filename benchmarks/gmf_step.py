"""GMF training-step time, MGQE vs full embedding, on MovieLens-1M-sized tables.

Prints each kind's mean step time (forward + backward + Adam) and its ratio to FE measured in
the same process. Ids are drawn Zipf-like, as in the training data.

    .venv/bin/python benchmarks/gmf_step.py [--batch-size 2048] [--steps 50] [--device cpu]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch

from mgqe_dist.embeddings import build_embedding
from mgqe_dist.models import build_model

USERS, ITEMS, DIM = 6041, 3707, 64
# Options per kind for a table of n frequency-ranked ids (head = top 10%, as in the jobs).
KIND_OPTIONS: dict[str, Callable[[int], dict[str, Any]]] = {
    "full": lambda n: {},
    "mgqe": lambda n: {
        "tier_boundaries": [n // 10],
        "num_subspaces": 64,
        "num_centroids": [256, 64],
    },
}


def zipf_ids(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Frequency-ranked ids with P(id) proportional to 1 / (id + 1)."""
    weights = 1.0 / torch.arange(1, n + 1, dtype=torch.float64)
    return torch.multinomial(weights, size, replacement=True, generator=generator)


def step_seconds(kind: str, batch: int, steps: int, device: torch.device) -> float:
    """Mean seconds of one optimiser step after warm-up."""
    torch.manual_seed(0)
    users, items = (build_embedding(kind, n, DIM, **KIND_OPTIONS[kind](n)) for n in (USERS, ITEMS))
    model = build_model("gmf", users, items).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    batches = [
        (zipf_ids(USERS, batch, generator).to(device), zipf_ids(ITEMS, batch, generator).to(device))
        for _ in range(steps + 5)
    ]
    labels = (torch.rand(batch, generator=generator) < 0.2).float().to(device)
    elapsed = 0.0
    for index, (user_ids, item_ids) in enumerate(batches):
        start = time.perf_counter()
        logits = model(user_ids, item_ids)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        loss = loss + users.extra_loss() + items.extra_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if index >= 5:
            elapsed += time.perf_counter() - start
    return elapsed / steps


def main() -> None:
    """Run every kind and print times and ratios to FE."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    times = {kind: step_seconds(kind, args.batch_size, args.steps, device) for kind in KIND_OPTIONS}
    print(
        f"GMF step, batch {args.batch_size}, {args.steps} steps, {device}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    for kind, seconds in times.items():
        print(
            f"  {kind:<6} {1000 * seconds:8.2f} ms/step   ratio to FE {seconds / times['full']:.2f}"
        )


if __name__ == "__main__":
    main()
