"""The local training loop: pointwise log loss with sampled negatives (NCF), Adam, progress."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mgqe_dist.config import TrainConfig
from mgqe_dist.size import embedding_modules
from mgqe_dist.train.data import Interactions, NegativeSampler


def train_epochs(
    model: nn.Module,
    train: Interactions,
    num_items: int,
    cfg: TrainConfig,
    seed: int,
    after_epoch: Callable[[int], dict[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """Train for cfg.epochs; returns one record per epoch (losses, time, after_epoch's metrics).

    Negatives are drawn from items [0, num_items) afresh every epoch, num_negatives per positive.
    """
    generator = torch.Generator().manual_seed(seed)
    sampler = NegativeSampler(train, num_items)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    tables = embedding_modules(model)
    history = []
    for epoch in range(1, cfg.epochs + 1):
        started = time.time()
        users, items, labels = _epoch_samples(train, sampler, cfg.num_negatives, generator)
        order = torch.randperm(len(users), generator=generator)
        batches = order.split(cfg.batch_size)
        report_every = max(1, len(batches) // cfg.progress_updates) if cfg.progress_updates else 0
        model.train()
        task_sum = aux_sum = 0.0
        for step, batch in enumerate(batches, start=1):
            logits = model(users[batch], items[batch])
            task = nn.functional.binary_cross_entropy_with_logits(logits, labels[batch])
            aux = sum((t.extra_loss() for t in tables), torch.zeros(()))
            optimizer.zero_grad(set_to_none=True)
            (task + aux).backward()
            optimizer.step()
            task_sum += task.item()
            aux_sum += aux.detach().item()
            if report_every and step % report_every == 0 and step < len(batches):
                rate = step * cfg.batch_size / (time.time() - started)
                print(
                    f"  epoch {epoch}/{cfg.epochs} step {step}/{len(batches)} "
                    f"loss {task_sum / step:.4f} ({rate / 1000:.1f}k samples/s)",
                    flush=True,
                )
        record: dict[str, Any] = {
            "epoch": epoch,
            "loss": task_sum / len(batches),
            "aux_loss": aux_sum / len(batches),
            "seconds": round(time.time() - started, 2),
        }
        if after_epoch is not None:
            record.update(after_epoch(epoch))
        history.append(record)
        extras = " ".join(
            f"{k} {v:.4f}"
            for k, v in record.items()
            if k not in ("epoch", "loss", "aux_loss", "seconds")
        )
        print(
            f"epoch {epoch}/{cfg.epochs} loss {record['loss']:.4f} aux {record['aux_loss']:.5f} "
            f"{extras} ({record['seconds']} s)",
            flush=True,
        )
    return history


def _epoch_samples(
    train: Interactions, sampler: NegativeSampler, num_negatives: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    neg_users = train.users.repeat(num_negatives)
    users = torch.cat([train.users, neg_users])
    items = torch.cat([train.items, sampler.sample(neg_users, generator)])
    labels = torch.cat([torch.ones(len(train)), torch.zeros(len(neg_users))])
    return users, items, labels
