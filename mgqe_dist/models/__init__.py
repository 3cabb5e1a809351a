"""Recommendation models; each takes embedding modules of any kind."""

from mgqe_dist.models import gmf  # noqa: F401  (registers the model)
from mgqe_dist.models.base import Recommender
from mgqe_dist.models.gmf import GMF
from mgqe_dist.models.registry import build_model, model_names, register_model

__all__ = ["GMF", "Recommender", "build_model", "model_names", "register_model"]
