"""The compute device: choosing it, describing it, waiting for it, and its autocast precision."""

from __future__ import annotations

import platform
from typing import Any

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; anything else is passed to torch.device."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (a no-op on CPU), so wall-clock timings measure the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_dtype_for(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA when amp is on; on CPU only when amp == "force"; None = full precision."""
    if amp == "force" or (amp and device.type == "cuda"):
        return torch.bfloat16
    return None


def device_info(device: torch.device) -> dict[str, Any]:
    """What a run's numbers were measured on: device, torch version, GPU name / CUDA / cuDNN or
    the CPU and its torch threads (logged as MLflow tags and in the runner's metrics)."""
    info: dict[str, Any] = {"device": str(device), "torch": str(torch.__version__)}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    else:
        info["name"] = platform.processor() or platform.machine()
        info["threads"] = torch.get_num_threads()
    return info
