"""Fixtures shared by the core's photo and video tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fer_pipeline.core.models import build_resnet34, model_config


@pytest.fixture(scope="module")
def model_and_config() -> tuple[nn.Module, dict]:
    """A small random-weight classifier (ResNet-18 layout, 44 px input) and its config."""
    torch.manual_seed(0)
    return build_resnet34(arch="resnet18").eval(), model_config(arch="resnet18", input_size=44)
