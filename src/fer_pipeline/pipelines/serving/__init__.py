"""serving stage: the inference pipeline logged with every training run as an MLflow model."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
