"""Serving: export artifacts of packed codes + weights, load them for inference, feature store."""

from mgqe_dist.serve.artifact import (
    ArtifactError,
    ServedModel,
    export_artifact,
    export_model,
    load_artifact,
)

__all__ = ["ArtifactError", "ServedModel", "export_artifact", "export_model", "load_artifact"]
