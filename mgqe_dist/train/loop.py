"""The local training loop: any objective (see objectives.py), Adam, progress (progress.py).

After every epoch the model is validated; the best-validation weights are kept and restored
at the end (model selection on validation), and training stops early once validation has not
improved for `early_stopping_patience` epochs. Without a validation split (select_by None)
the last epoch's weights are kept.
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
from mgqe_dist.progress import Mode, Progress
from mgqe_dist.size import embedding_modules
from mgqe_dist.train.objectives import Objective, Samples

# Points of the per-step training-loss curve recorded per epoch (each the mean task loss of a
# window of consecutive steps), for loss-vs-step plots such as the paper's Fig. 7.
LOSS_CURVE_POINTS = 20


@dataclass(frozen=True)
class TrainResult:
    """Per-epoch records, and which epoch's weights the model holds now."""

    history: list[dict[str, Any]]
    best_epoch: int
    stopped_early: bool


def train_epochs(
    model: nn.Module,
    objective: Objective,
    cfg: TrainConfig,
    seed: int,
    validate: Callable[[], dict[str, float]],
    select_by: str | None,
    maximize: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train, validate each epoch, keep the weights with the best `validate()[select_by]`
    (highest if `maximize`, else lowest); select_by None keeps the last epoch's weights.
    `on_epoch` receives each epoch's record (run tracking)."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer(model, cfg.learning_rate)
    tables = embedding_modules(model)
    history: list[dict[str, Any]] = []
    sign = 1.0 if maximize else -1.0
    best_score, best_epoch, best_state = -float("inf"), 0, _snapshot(model)
    for epoch in range(1, cfg.epochs + 1):
        started = time.time()
        samples = objective.epoch_samples(generator)
        batches = torch.randperm(len(samples[0]), generator=generator).split(cfg.batch_size)
        model.train()
        losses = _run_epoch(model, optimizer, objective, tables, samples, batches, cfg, epoch)
        trained = time.time()
        model.eval()
        record: dict[str, Any] = {"epoch": epoch, **losses, **validate()}
        record["train_seconds"] = round(trained - started, 2)
        record["seconds"] = round(time.time() - started, 2)
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        # A table outside its memory budget (CERP while pruning) cannot give the best epoch.
        selectable = all(t.selectable() for t in tables)
        score = sign * record[select_by] if select_by else float(epoch)
        if selectable and score > best_score:
            best_score, best_epoch = score, epoch
            best_state = _snapshot(model) if select_by else best_state
        for table in tables:
            table.end_epoch()
        print_epoch(record, cfg.epochs, best=best_epoch == epoch and select_by is not None)
        patience = cfg.early_stopping_patience if select_by else 0
        if patience and selectable and epoch - best_epoch >= patience:
            print(
                f"no better {select_by} for {patience} epochs: stopping; "
                f"restoring epoch {best_epoch}",
                flush=True,
            )
            break
    if not best_epoch:
        raise ValueError(
            f"no epoch of {len(history)} met every table's memory budget (CERP prunes for up "
            "to embedding.prune_epochs epochs first): train for more epochs"
        )
    if select_by:
        model.load_state_dict(best_state)
    return TrainResult(history, best_epoch, stopped_early=len(history) < cfg.epochs)


def make_optimizer(model: nn.Module, learning_rate: float) -> torch.optim.Optimizer:
    """Adam over all parameters, as NCF and SASRec train. The fused kernel (one pass over each
    parameter, no temporaries) takes a fifth of the for-loop implementation's time on CPU,
    which for full tables is most of a training step; same update rule."""
    return torch.optim.Adam(model.parameters(), lr=learning_rate, fused=True)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    objective: Objective,
    tables: list[EmbeddingModule],
    batch: Samples,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on a batch: task loss plus the tables' auxiliary (centroid) losses;
    returns both, detached."""
    task = objective.loss(model, batch)
    aux = sum((t.extra_loss() for t in tables), torch.zeros(()))
    optimizer.zero_grad(set_to_none=True)
    (task + aux).backward()
    optimizer.step()
    return task.detach(), aux.detach()


def print_epoch(record: dict[str, Any], epochs: int, best: bool) -> None:
    """The per-epoch summary line: losses, validation metrics, time, and whether it is the best."""
    metrics = " ".join(f"{k} {v:.4g}" for k, v in record.items() if k.startswith("valid_"))
    print(
        f"epoch {record['epoch']}/{epochs} loss {record['loss']:.4f} "
        f"aux {record['aux_loss']:.5f} {metrics} ({record['seconds']} s){' *best' if best else ''}",
        flush=True,
    )


def _run_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    objective: Objective,
    tables: list[EmbeddingModule],
    samples: Samples,
    batches: tuple[torch.Tensor, ...],
    cfg: TrainConfig,
    epoch: int,
) -> dict[str, Any]:
    """One pass over the shuffled samples; returns the mean task and auxiliary losses and the
    loss curve: [step within the epoch, mean task loss of the window ending there] pairs.

    Samples stay on the CPU (negative sampling happens there); each batch moves to the model.
    """
    device = next(model.parameters()).device
    curve_every = -(-len(batches) // LOSS_CURVE_POINTS)  # ceil: at most that many points
    task_sum = aux_sum = window_sum = 0.0
    curve: list[list[float]] = []
    progress = epoch_progress(len(samples[0]), epoch, cfg)
    for step, batch in enumerate(batches, start=1):
        task, aux = train_step(
            model, optimizer, objective, tables, tuple(t[batch].to(device) for t in samples)
        )
        loss = task.item()
        task_sum += loss
        window_sum += loss
        aux_sum += aux.item()
        if step % curve_every == 0 or step == len(batches):
            window = step - (int(curve[-1][0]) if curve else 0)
            curve.append([step, round(window_sum / window, 6)])
            window_sum = 0.0
        progress.advance(len(batch), status=f"loss {task_sum / step:.4f}")
    progress.close()
    return {
        "loss": task_sum / len(batches),
        "aux_loss": aux_sum / len(batches),
        "steps": len(batches),
        "loss_curve": curve,
    }


def epoch_progress(
    samples: int, epoch: int, cfg: TrainConfig, show: bool = True, initial: int = 0
) -> Progress:
    """One epoch's progress over its samples (`initial` of them trained before a resume): a bar
    on a terminal, else `cfg.progress_updates` lines; neither when that is 0 or not `show`."""
    mode: Mode = "auto" if cfg.progress_updates and show else "off"
    label = f"epoch {epoch}/{cfg.epochs}"
    return Progress(
        samples, label, "samples", lines=cfg.progress_updates, initial=initial, mode=mode
    )


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}
