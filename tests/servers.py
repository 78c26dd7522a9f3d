"""Servers started by tests: the package's own helpers (``fer_pipeline.processes``)."""

from fer_pipeline.processes import alive, descendants, free_port, start, stop, wait_http

__all__ = ["alive", "descendants", "free_port", "start", "stop", "wait_http"]
