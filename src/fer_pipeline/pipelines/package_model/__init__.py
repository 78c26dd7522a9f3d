"""package_model stage: log the model on disk as the MLflow model to serve, with its card."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
