"""What a job trains for and how it is evaluated, chosen from its model and loss.

- ranking: (user, item) models with log loss; full-ranking HR@k / NDCG@k of each user's
  held-out item, seen items masked (GMF, NeuMF).
- regression: (user, item) models with squared loss; RMSE of the held-out targets (GMF on
  ratings or item-item relevance scores).
- next item: SASRec over each user's latest training items; full-ranking HR@k / NDCG@k of the
  next item after the history (for test, the history includes the validation item).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mgqe_dist.config import EvalConfig, JobConfig
from mgqe_dist.evaluate.ranking import evaluate_ranking
from mgqe_dist.models import Recommender, model_options, model_tables
from mgqe_dist.models.sasrec import PAD
from mgqe_dist.train.data import Interactions, PreparedData, load_histories, load_prepared
from mgqe_dist.train.objectives import NextItemLogLoss, Objective, SampledLogLoss, SquaredLoss

SPLITS = ("valid", "test")
Evaluate = Callable[[Recommender, str], dict[str, float]]


@dataclass(frozen=True)
class Task:
    """The objective to train, per-split evaluation, and the validation metric to select by."""

    objective: Objective
    evaluate: Evaluate  # (model, "valid" | "test") -> metrics, unprefixed
    select_by: str | None  # a key of evaluate(model, "valid"), prefixed "valid_"; None = last
    maximize: bool


def load_task_data(job: JobConfig) -> PreparedData:
    """The job's verified prepared data, with targets when the loss regresses them."""
    target = job.train.target if job.train.loss == "squared" else None
    return load_prepared(job.data.prepared_dir, target=target)


def build_task(job: JobConfig, data: PreparedData) -> Task:
    """The task of the job's model and loss (see the module docstring)."""
    sequence_model = model_tables(job.model.name) == ("items",)
    if job.train.loss == "squared":
        if sequence_model:
            raise ValueError(
                f"train.loss = 'squared' needs a (user, item) model, not {job.model.name!r}"
            )
        return _regression(data)
    if sequence_model:
        return _next_item(job, data)
    objective = SampledLogLoss(data.train, data.num_known_items, job.train.num_negatives)

    def evaluate(model: Recommender, split: str) -> dict[str, float]:
        return evaluate_pairs(model, data, split, job.eval)

    return Task(objective, evaluate, f"valid_ndcg@{job.eval.k}", maximize=True)


def evaluate_pairs(
    model: Recommender, data: PreparedData, split: str, cfg: EvalConfig
) -> dict[str, float]:
    """Full ranking of the split's items for its users, masking the splits before it."""
    model.eval()  # the training loop sets train mode again at the start of each epoch
    device = next(model.parameters()).device
    candidates = torch.arange(data.num_known_items, device=device)

    def scores(users: torch.Tensor) -> torch.Tensor:
        return model.score_all_items(users.to(device), candidates).cpu()

    return _rank(scores, data, split, cfg)


def _rank(
    scores: Callable[[torch.Tensor], torch.Tensor], data: PreparedData, split: str, cfg: EvalConfig
) -> dict[str, float]:
    held_out: Interactions = getattr(data, split)
    masked = (data.train,) if split == "valid" else (data.train, data.valid)
    result = evaluate_ranking(
        scores,
        held_out.users,
        held_out.items,
        seen=(torch.cat([m.users for m in masked]), torch.cat([m.items for m in masked])),
        num_candidates=data.num_known_items,
        k=cfg.k,
        user_batch_size=cfg.user_batch_size,
        label=f"evaluating {split}",
    )
    return {**result.as_dict(), "evaluated_users": result.users}


def _regression(data: PreparedData) -> Task:
    def evaluate(model: Recommender, split: str) -> dict[str, float]:
        held_out: Interactions = getattr(data, split)
        if not len(held_out):  # e.g. no validation split: nothing to report
            return {}
        return {"rmse": rmse(model, held_out), "rows": len(held_out)}

    select_by = "valid_rmse" if len(data.valid) else None
    return Task(SquaredLoss(data.train), evaluate, select_by, maximize=False)


def rmse(model: Recommender, pairs: Interactions, batch_size: int = 65536) -> float:
    """Root mean squared error of the model's outputs against the pairs' targets."""
    if not len(pairs):
        return math.nan
    assert pairs.targets is not None, "pairs were loaded without targets"
    device = next(model.parameters()).device
    squared = 0.0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            stop = start + batch_size
            users, items = pairs.users[start:stop].to(device), pairs.items[start:stop].to(device)
            error = model(users, items).double().cpu() - pairs.targets[start:stop].double()
            squared += float((error**2).sum())
    return math.sqrt(squared / len(pairs))


def _next_item(job: JobConfig, data: PreparedData) -> Task:
    max_len = int(model_options(job.model.name)["max_len"])
    train_histories = load_histories(data, max_len + 1)
    last_valid = torch.full((data.num_users, 1), PAD, dtype=torch.long)
    last_valid[data.valid.users, 0] = data.valid.items
    histories = {
        "valid": train_histories[:, 1:],
        "test": torch.cat([train_histories, last_valid], dim=1)[:, -max_len:],
    }
    objective = NextItemLogLoss(train_histories, data.train, data.num_known_items)

    def evaluate(model: Recommender, split: str) -> dict[str, float]:
        model.eval()  # no dropout while ranking
        device = next(model.parameters()).device
        candidates = torch.arange(data.num_known_items, device=device)

        def scores(users: torch.Tensor) -> torch.Tensor:
            sequences = histories[split][users].to(device)
            return model.score_all_items(sequences, candidates).cpu()

        return _rank(scores, data, split, job.eval)

    return Task(objective, evaluate, f"valid_ndcg@{job.eval.k}", maximize=True)
