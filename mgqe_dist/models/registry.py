"""Model registry: a job spec names its model; builders take the user and item embeddings."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from mgqe_dist.models.base import Recommender
from mgqe_dist.registry import Registry

ModelBuilder = Callable[..., Recommender]
MODELS: Registry[ModelBuilder] = Registry("model")
register_model = MODELS.register


def model_names() -> list[str]:
    """Names accepted by `build_model`."""
    return MODELS.names()


def build_model(name: str, users: nn.Module, items: nn.Module) -> Recommender:
    """Build the named model around the given user and item embedding modules."""
    return MODELS.get(name)(users, items)
