"""Recommendation models; each takes embedding modules of any kind."""

from mgqe_dist.models import gmf, neumf, sasrec  # noqa: F401  (registers the models)
from mgqe_dist.models.base import Recommender
from mgqe_dist.models.gmf import GMF
from mgqe_dist.models.neumf import NeuMF
from mgqe_dist.models.registry import (
    build_model,
    model_names,
    model_options,
    model_tables,
    register_model,
)
from mgqe_dist.models.sasrec import SASRec

__all__ = [
    "GMF",
    "NeuMF",
    "Recommender",
    "SASRec",
    "build_model",
    "model_names",
    "model_options",
    "model_tables",
    "register_model",
]
