"""The local training loop: pointwise log loss with sampled negatives (NCF), Adam, progress.

After every epoch the model is validated; the best-validation weights are kept and restored
at the end (model selection on validation), and training stops early once validation has not
improved for `early_stopping_patience` epochs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mgqe_dist.config import TrainConfig
from mgqe_dist.embeddings import EmbeddingModule
from mgqe_dist.size import embedding_modules
from mgqe_dist.train.data import Interactions, NegativeSampler


@dataclass(frozen=True)
class TrainResult:
    """Per-epoch records, and which epoch's weights the model holds now."""

    history: list[dict[str, Any]]
    best_epoch: int
    stopped_early: bool


def train_epochs(
    model: nn.Module,
    train: Interactions,
    num_items: int,
    cfg: TrainConfig,
    seed: int,
    validate: Callable[[], dict[str, float]],
    select_by: str,
) -> TrainResult:
    """Train, validate each epoch, keep the weights with the highest `validate()[select_by]`.

    Negatives are drawn from items [0, num_items) afresh every epoch, num_negatives per positive.
    """
    generator = torch.Generator().manual_seed(seed)
    sampler = NegativeSampler(train, num_items)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    tables = embedding_modules(model)
    history: list[dict[str, Any]] = []
    best_score, best_epoch, best_state = -float("inf"), 0, _snapshot(model)
    for epoch in range(1, cfg.epochs + 1):
        started = time.time()
        users, items, labels = epoch_samples(train, sampler, cfg.num_negatives, generator)
        batches = torch.randperm(len(users), generator=generator).split(cfg.batch_size)
        model.train()
        losses = _run_epoch(model, optimizer, tables, (users, items, labels), batches, cfg, epoch)
        model.eval()
        record: dict[str, Any] = {"epoch": epoch, **losses, **validate()}
        record["seconds"] = round(time.time() - started, 2)
        history.append(record)
        if record[select_by] > best_score:
            best_score, best_epoch, best_state = record[select_by], epoch, _snapshot(model)
        print_epoch(record, cfg.epochs, best=best_epoch == epoch)
        if cfg.early_stopping_patience and epoch - best_epoch >= cfg.early_stopping_patience:
            print(
                f"no better {select_by} for {cfg.early_stopping_patience} epochs: stopping; "
                f"restoring epoch {best_epoch}",
                flush=True,
            )
            break
    model.load_state_dict(best_state)
    return TrainResult(history, best_epoch, stopped_early=len(history) < cfg.epochs)


def print_epoch(record: dict[str, Any], epochs: int, best: bool) -> None:
    """The per-epoch summary line: losses, validation metrics, time, and whether it is the best."""
    metrics = " ".join(f"{k} {v:.4f}" for k, v in record.items() if k.startswith("valid_"))
    print(
        f"epoch {record['epoch']}/{epochs} loss {record['loss']:.4f} "
        f"aux {record['aux_loss']:.5f} {metrics} ({record['seconds']} s){' *best' if best else ''}",
        flush=True,
    )


def _run_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    tables: list[EmbeddingModule],
    samples: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    batches: tuple[torch.Tensor, ...],
    cfg: TrainConfig,
    epoch: int,
) -> dict[str, float]:
    """One pass over the shuffled samples; returns the mean task and auxiliary losses.

    Samples stay on the CPU (negative sampling happens there); each batch moves to the model.
    """
    users, items, labels = samples
    device = next(model.parameters()).device
    report_every = max(1, len(batches) // cfg.progress_updates) if cfg.progress_updates else 0
    started = time.time()
    task_sum = aux_sum = 0.0
    for step, batch in enumerate(batches, start=1):
        logits = model(users[batch].to(device), items[batch].to(device))
        task = nn.functional.binary_cross_entropy_with_logits(logits, labels[batch].to(device))
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
    return {"loss": task_sum / len(batches), "aux_loss": aux_sum / len(batches)}


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def epoch_samples(
    train: Interactions, sampler: NegativeSampler, num_negatives: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Users, items and 1/0 labels of every positive plus num_negatives fresh negatives each."""
    neg_users = train.users.repeat(num_negatives)
    users = torch.cat([train.users, neg_users])
    items = torch.cat([train.items, sampler.sample(neg_users, generator)])
    labels = torch.cat([torch.ones(len(train)), torch.zeros(len(neg_users))])
    return users, items, labels
