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


#: ``amp`` settings: ``auto`` = bf16 autocast where the hardware runs bf16 natively (CUDA with
#: bf16 support; a CPU with AVX512-BF16, AMX or Arm BF16), float32 elsewhere; ``on`` = bf16
#: autocast everywhere (emulated, slowly, on a CPU without bf16 units); ``off`` = float32.
AMP_MODES: tuple[str, ...] = ("auto", "on", "off")


def amp_mode(amp: bool | str) -> str:
    """The ``amp`` setting as one of AMP_MODES. YAML reads a bare ``on`` / ``off`` (and
    ``true`` / ``false``) as booleans, so True means ``on`` and False ``off``."""
    if amp is True:
        return "on"
    if amp is False:
        return "off"
    if amp in AMP_MODES:
        return str(amp)
    raise ValueError(f"amp={amp!r}: use one of {', '.join(AMP_MODES)} (auto: bf16 where the device runs it natively)")


def cpu_bf16_units() -> str | None:
    """The CPU's native bf16 instructions torch uses (``amx_bf16``, ``avx512_bf16``, ``arm_bf16``),
    or None when bf16 would be emulated in float32 arithmetic (slower than float32 itself)."""
    import torch.cpu as cpu

    def has(name: str) -> bool:
        probe = getattr(cpu, name, None)  # private probes: present since torch 2.3, guarded anyway
        return bool(probe()) if probe is not None else False

    if has("_is_amx_tile_supported"):
        return "amx_bf16"
    if has("_is_avx512_bf16_supported"):
        return "avx512_bf16"
    if platform.machine().lower() in ("arm64", "aarch64"):
        # oneDNN's check is exact on Arm (the BF16 extension); on x86 it also accepts plain AVX512.
        if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return "arm_bf16"
    return None


def autocast_dtype_for(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``amp`` (``AMP_MODES``) on ``device``; None = float32. Losses,
    softmax and metrics stay float32 whatever this says (autocast only covers the forward)."""
    mode = amp_mode(amp)
    if mode == "off":
        return None
    if mode == "on":
        return torch.bfloat16
    if device.type == "cuda":
        # Native bf16 tensor cores from Ampere (compute capability 8) on; torch's
        # is_bf16_supported() also says yes for emulated bf16 on older GPUs, and asks the
        # current device rather than this one.
        return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else None
    if device.type == "cpu":
        return torch.bfloat16 if cpu_bf16_units() else None
    return None


def channels_last_pays(device: torch.device, autocast_dtype: torch.dtype | None) -> bool:
    """Whether the channels_last (NHWC) memory format speeds a conv net up here: on CUDA, and on
    a CPU only in bf16 (oneDNN's bf16 kernels want NHWC: ResNet34 small_pool training, batch 64,
    95 vs 79 img/s); in float32 on a CPU it slows the small convs and BatchNorm down."""
    return device.type == "cuda" or (device.type == "cpu" and autocast_dtype is not None)


def precision_name(autocast_dtype: torch.dtype | None) -> str:
    """How a forward pass ran, for logs, reports and MLflow: ``bfloat16`` (autocast) or ``float32``."""
    return str(autocast_dtype).replace("torch.", "") if autocast_dtype is not None else "float32"


def describe_precision(amp: bool | str, device: torch.device) -> str:
    """A log line's worth: what ``amp`` chose on ``device`` and why."""
    dtype = autocast_dtype_for(amp, device)
    mode = amp_mode(amp)
    if device.type == "cpu" and mode == "auto":
        units = cpu_bf16_units()
        why = f"the CPU has {units}" if units else "the CPU has no native bf16 (AVX512-BF16, AMX or Arm BF16)"
    else:
        why = f"amp: {mode} on {device.type}"
    return f"{precision_name(dtype)} ({why})"


def device_info(device: torch.device) -> dict[str, Any]:
    """What a run's numbers were measured on: device, torch version, GPU name / CUDA / cuDNN or
    the CPU and its torch threads (logged as MLflow tags and in the runner's metrics)."""
    info: dict[str, Any] = {"device": str(device), "torch": str(torch.__version__)}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    else:
        info["name"] = cpu_model()
        info["threads"] = torch.get_num_threads()
        info["bf16_units"] = cpu_bf16_units()
    return info


def cpu_model() -> str:
    """The processor's marketing name (Linux ``/proc/cpuinfo``'s ``model name``), else what
    ``platform`` knows: results measured on 'AMD EPYC 9B14' and on 'x86_64' compare differently."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
