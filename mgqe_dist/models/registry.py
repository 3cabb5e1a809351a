"""Model registry: a job spec names its model; builders take embedding tables by name.

Every model class lists the tables it needs in `table_names` (e.g. GMF: users, items); the
trainer builds those tables and the serving artifact rebuilds the same model around its
serving tables, so both paths share one constructor.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from mgqe_dist.models.base import Recommender
from mgqe_dist.registry import Registry

MODELS: Registry[type[Recommender]] = Registry("model")
register_model = MODELS.register


def model_names() -> list[str]:
    """Names accepted by `build_model`."""
    return MODELS.names()


def model_tables(name: str) -> tuple[str, ...]:
    """Names of the embedding tables the named model is built around."""
    return MODELS.get(name).table_names


def model_options(name: str, **options: Any) -> dict[str, Any]:
    """The model's hyper-parameters with defaults filled in (recorded next to trained weights)."""
    cls = MODELS.get(name)
    parameters = inspect.signature(cls).parameters
    accepted = set(parameters) - set(cls.table_names)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"model {name!r}: unknown option(s) {unknown}; accepted: {sorted(accepted)}"
        )
    return {
        key: options.get(key, parameters[key].default)
        for key in sorted(accepted)
        if key in options or parameters[key].default is not inspect.Parameter.empty
    }


def build_model(name: str, tables: Mapping[str, nn.Module], **options: Any) -> Recommender:
    """Build the named model around the given embedding tables (one per `model_tables(name)`)."""
    cls = MODELS.get(name)
    if set(tables) != set(cls.table_names):
        raise ValueError(
            f"model {name!r} needs tables {list(cls.table_names)}, got {sorted(tables)}"
        )
    return cls(**tables, **model_options(name, **options))
