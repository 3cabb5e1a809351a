"""Model registry: a job spec names its model; builders take the user and item embeddings."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from mgqe_dist.models.base import Recommender

ModelBuilder = Callable[..., Recommender]
_MODELS: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator adding a model builder (class or function) under `name`."""

    def add(builder: ModelBuilder) -> ModelBuilder:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = builder
        return builder

    return add


def model_names() -> list[str]:
    """Names accepted by `build_model`."""
    return sorted(_MODELS)


def build_model(name: str, users: nn.Module, items: nn.Module) -> Recommender:
    """Build the named model around the given user and item embedding modules."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known: {model_names()}")
    return _MODELS[name](users, items)
