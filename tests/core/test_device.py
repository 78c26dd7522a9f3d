"""core.device: the ``amp`` switch (auto | on | off) and the CPU's native bf16 detection."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
import torch

from fer_pipeline.core import device as device_module
from fer_pipeline.core.device import (
    amp_mode,
    autocast_dtype_for,
    cpu_bf16_units,
    describe_precision,
    precision_name,
)

CPU = torch.device("cpu")


def test_amp_mode_reads_yaml_booleans_and_rejects_other_values_with_the_choices():
    assert amp_mode(True) == "on"  # YAML reads a bare `on` / `true` as True
    assert amp_mode(False) == "off"
    assert [amp_mode(m) for m in ("auto", "on", "off")] == ["auto", "on", "off"]
    with pytest.raises(ValueError, match=r"amp='force': use one of auto, on, off"):
        amp_mode("force")


@pytest.mark.parametrize(("units", "expected"), [("amx_bf16", torch.bfloat16), ("avx512_bf16", torch.bfloat16),
                                                 (None, None)])
def test_auto_on_cpu_follows_the_cpus_bf16_units(monkeypatch, units, expected):
    monkeypatch.setattr(device_module, "cpu_bf16_units", lambda: units)
    assert autocast_dtype_for("auto", CPU) is expected
    # on / off do not look at the CPU: on emulates bf16 where it is not native, off is float32
    assert autocast_dtype_for("on", CPU) is torch.bfloat16
    assert autocast_dtype_for("off", CPU) is None
    assert precision_name(autocast_dtype_for("auto", CPU)) == ("bfloat16" if units else "float32")
    described = describe_precision("auto", CPU)
    assert (f"the CPU has {units}" in described) if units else ("no native bf16" in described)


@pytest.mark.skipif(not (platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64")
                         and Path("/proc/cpuinfo").exists()), reason="reads x86 flags from /proc/cpuinfo")
def test_native_bf16_detection_matches_the_kernels_cpu_flags():
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    units = cpu_bf16_units()
    if "amx_bf16" in flags and "amx_tile" in flags:
        assert units == "amx_bf16"
    elif "avx512_bf16" in flags:
        assert units == "avx512_bf16"
    else:
        assert units is None
    # and what `auto` then picks on this machine
    assert (autocast_dtype_for("auto", CPU) is torch.bfloat16) == (units is not None)


@pytest.mark.parametrize(("capability", "expected"), [((7, 0), None), ((8, 0), torch.bfloat16),
                                                      ((9, 0), torch.bfloat16)])
def test_auto_on_cuda_is_bf16_only_from_ampere_on(monkeypatch, capability, expected):
    asked = []

    def capability_of(device):
        asked.append(device)
        return capability

    # V100 / T4 (7.x) would run bf16 emulated, which torch.cuda.is_bf16_supported() accepts.
    monkeypatch.setattr(torch.cuda, "get_device_capability", capability_of)
    gpu = torch.device("cuda", 1)
    assert autocast_dtype_for("auto", gpu) is expected
    assert asked == [gpu]  # the device asked about, not the current one
    assert autocast_dtype_for("on", gpu) is torch.bfloat16 and autocast_dtype_for("off", gpu) is None
