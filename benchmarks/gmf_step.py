"""GMF training-step time per embedding kind, as a ratio to full embeddings (FE), and the
trainer's FE step against a minimal hand-written PyTorch GMF step (the floor).

One step is the trainer's own `train_step` (forward, log loss + centroid loss, backward, the
trainer's Adam) on one batch of the trainer's samples (positives plus sampled unseen
negatives), on MovieLens-1M-sized tables. The minimal step is two nn.Embedding tables, a
product, a linear layer and BCE on the same batch with the same Adam. Every kind is timed in
the same process, in interleaved rounds; the figure is the median over rounds.

    .venv/bin/python -m benchmarks.gmf_step [--batch-size 2048] [--steps 50] [--rounds 3]
        [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from torch import nn

from benchmarks.common import (
    DIM,
    KINDS,
    ML1M_ITEMS,
    ML1M_USERS,
    build,
    mean_seconds,
    training_ids,
)
from mgqe_dist.models import build_model
from mgqe_dist.train.data import Interactions
from mgqe_dist.train.loop import make_optimizer, train_step
from mgqe_dist.train.objectives import SampledLogLoss, Samples

REFERENCE = "torch_minimal"


class MinimalGMF(nn.Module):
    """GMF as one would write it by hand: two embedding tables, their product, a linear layer."""

    def __init__(self, num_users: int, num_items: int, dim: int) -> None:
        super().__init__()
        self.users, self.items = nn.Embedding(num_users, dim), nn.Embedding(num_items, dim)
        nn.init.normal_(self.users.weight, std=0.01)
        nn.init.normal_(self.items.weight, std=0.01)
        self.out = nn.Linear(dim, 1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.out(self.users(users) * self.items(items)).squeeze(-1)


def training_batch(batch: int, generator: torch.Generator) -> tuple[SampledLogLoss, Samples]:
    """The trainer's objective over a Zipf-shaped log, and one shuffled batch of its samples."""
    positives = 200_000
    log = Interactions(
        users=torch.randint(ML1M_USERS, (positives,), generator=generator),
        items=training_ids(ML1M_ITEMS, positives, generator),
    )
    objective = SampledLogLoss(log, ML1M_ITEMS, num_negatives=4)
    samples = objective.epoch_samples(generator)
    pick = torch.randperm(len(samples[0]), generator=generator)[:batch]
    return objective, tuple(t[pick] for t in samples)


def kind_step(
    name: str, objective: SampledLogLoss, batch: Samples, device: torch.device
) -> Callable[[], None]:
    """One trainer step of GMF with `name` embeddings."""
    torch.manual_seed(0)
    users, items = build(name, ML1M_USERS, device), build(name, ML1M_ITEMS, device)
    model = build_model("gmf", {"users": users, "items": items}).to(device)
    optimizer = make_optimizer(model, 1e-3)
    on_device = tuple(t.to(device) for t in batch)

    def step() -> None:
        train_step(model, optimizer, objective, [users, items], on_device)

    return step


def minimal_step(batch: Samples, device: torch.device) -> Callable[[], None]:
    """One step of the hand-written GMF with the trainer's Adam."""
    torch.manual_seed(0)
    model = MinimalGMF(ML1M_USERS, ML1M_ITEMS, DIM).to(device)
    optimizer = make_optimizer(model, 1e-3)
    users, items, labels = (t.to(device) for t in batch)

    def step() -> None:
        loss = nn.functional.binary_cross_entropy_with_logits(model(users, items), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    """Time every kind and the minimal step; print ms/step and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    objective, batch = training_batch(args.batch_size, torch.Generator().manual_seed(0))
    steps = {REFERENCE: minimal_step(batch, device)}
    steps |= {name: kind_step(name, objective, batch, device) for name in KINDS}
    rounds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            rounds[name].append(mean_seconds(step, args.steps, device))
    times = {name: statistics.median(values) for name, values in rounds.items()}
    print(
        f"GMF training step, batch {args.batch_size}, {args.steps} steps x {args.rounds} "
        f"rounds (median), {device}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    for name, seconds in times.items():
        print(
            f"  {name:<14}{1000 * seconds:8.2f} ms/step   ratio to FE "
            f"{seconds / times['full']:5.2f}"
        )
    print(f"  trainer FE step / minimal PyTorch step: {times['full'] / times[REFERENCE]:.2f}")


if __name__ == "__main__":
    main()
