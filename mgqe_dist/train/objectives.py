"""Training objectives: what one epoch's samples are and the task loss of one batch.

The training loop is the same for every model; an objective supplies the epoch's samples
(tensors indexed together along their first dimension, shuffled into batches by the loop)
and the loss of a batch of them:

- `SampledLogLoss`: implicit feedback, each positive (user, item) plus `num_negatives` fresh
  uniform negatives, log loss (NCF's GMF and NeuMF).
- `SquaredLoss`: explicit targets (ratings, relevance scores), squared error (GMF regression).
- `NextItemLogLoss`: item sequences; at every position the next item against one sampled
  negative, log loss (SASRec).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from mgqe_dist.models.sasrec import PAD, SASRec
from mgqe_dist.train.data import Interactions, NegativeSampler

Samples = tuple[torch.Tensor, ...]


class Objective(Protocol):
    """One epoch's samples and the mean task loss of a batch of them."""

    def epoch_samples(self, generator: torch.Generator) -> Samples: ...

    def loss(self, model: nn.Module, batch: Samples) -> torch.Tensor: ...


class SampledLogLoss:
    """Log loss of positives against num_negatives uniform unseen items each (NCF)."""

    def __init__(self, train: Interactions, num_items: int, num_negatives: int) -> None:
        self.train, self.num_negatives = train, num_negatives
        self.sampler = NegativeSampler(train, num_items)

    def epoch_samples(self, generator: torch.Generator) -> Samples:
        return epoch_samples(self.train, self.sampler, self.num_negatives, generator)

    def loss(self, model: nn.Module, batch: Samples) -> torch.Tensor:
        users, items, labels = batch
        return nn.functional.binary_cross_entropy_with_logits(model(users, items), labels)


class SquaredLoss:
    """Mean squared error of the model's output against each pair's target."""

    def __init__(self, train: Interactions) -> None:
        if train.targets is None:
            raise ValueError("squared loss needs targets: load the split with its target column")
        self.train = train
        self.targets: torch.Tensor = train.targets

    def epoch_samples(self, generator: torch.Generator) -> Samples:
        return self.train.users, self.train.items, self.targets

    def loss(self, model: nn.Module, batch: Samples) -> torch.Tensor:
        users, items, targets = batch
        return nn.functional.mse_loss(model(users, items), targets)


class NextItemLogLoss:
    """SASRec's loss: at each non-pad position, log loss of the next item (label 1) and of one
    item the user never interacted with (label 0).

    `histories` is (U, L + 1): each user's latest training items, left-padded with PAD; inputs
    are its first L columns and the positives its last L.
    """

    def __init__(self, histories: torch.Tensor, train: Interactions, num_items: int) -> None:
        self.histories = histories
        self.sampler = NegativeSampler(train, num_items)

    def epoch_samples(self, generator: torch.Generator) -> Samples:
        users = torch.arange(len(self.histories))
        positives = self.histories[:, 1:]
        negatives = self.sampler.sample(users[:, None].expand_as(positives), generator)
        return self.histories[:, :-1], positives, negatives

    def loss(self, model: nn.Module, batch: Samples) -> torch.Tensor:
        if not isinstance(model, SASRec):
            raise TypeError(f"next-item loss needs a SASRec model, got {type(model).__name__}")
        inputs, positives, negatives = batch
        hidden = model.hidden(inputs)
        keep = positives != PAD
        pos = (hidden * model.items(positives.clamp(min=0))).sum(-1)[keep]
        neg = (hidden * model.items(negatives)).sum(-1)[keep]
        logits = torch.cat([pos, neg])
        labels = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
        return nn.functional.binary_cross_entropy_with_logits(logits, labels)


def epoch_samples(
    train: Interactions, sampler: NegativeSampler, num_negatives: int, generator: torch.Generator
) -> Samples:
    """Users, items and 1/0 labels of every positive plus num_negatives fresh negatives each."""
    neg_users = train.users.repeat(num_negatives)
    users = torch.cat([train.users, neg_users])
    items = torch.cat([train.items, sampler.sample(neg_users, generator)])
    labels = torch.cat([torch.ones(len(train)), torch.zeros(len(neg_users))])
    return users, items, labels
