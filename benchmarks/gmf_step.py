"""GMF training-step time per embedding kind, as a ratio to full embeddings (FE).

One step = forward, loss (+ centroid loss), backward and Adam, on MovieLens-1M-sized tables
with GMF-like batches (Zipf positives, uniform negatives). All kinds run in one process.

    .venv/bin/python -m benchmarks.gmf_step [--batch-size 2048] [--steps 50] [--device cpu]
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import KINDS, ML1M_ITEMS, ML1M_USERS, build, mean_seconds, training_ids
from mgqe_dist.models import build_model


def step_seconds(name: str, batch: int, steps: int, device: torch.device) -> float:
    """Mean seconds of one GMF optimiser step with `name` embeddings."""
    torch.manual_seed(0)
    users, items = build(name, ML1M_USERS, device), build(name, ML1M_ITEMS, device)
    model = build_model("gmf", {"users": users, "items": items}).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    user_ids = training_ids(ML1M_USERS, batch, generator).to(device)
    item_ids = training_ids(ML1M_ITEMS, batch, generator).to(device)
    labels = (torch.rand(batch, generator=generator) < 0.2).float().to(device)

    def step() -> None:
        logits = model(user_ids, item_ids)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        loss = loss + users.extra_loss() + items.extra_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return mean_seconds(step, steps, device)


def main() -> None:
    """Time every kind and print ms/step and the ratio to FE."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    times = {name: step_seconds(name, args.batch_size, args.steps, device) for name in KINDS}
    print(
        f"GMF training step, batch {args.batch_size}, {args.steps} steps, {device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    for name, seconds in times.items():
        ratio = seconds / times["full"]
        print(f"  {name:<14}{1000 * seconds:8.2f} ms/step   ratio to FE {ratio:5.2f}")


if __name__ == "__main__":
    main()
