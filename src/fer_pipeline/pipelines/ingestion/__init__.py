"""Ingestion: faces from a FER2013 folder, the contest CSV or an ImageFolder tree -> one dataset."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
