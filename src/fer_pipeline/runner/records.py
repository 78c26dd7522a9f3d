"""The runner's record of a run: each stage's time and peak GPU memory, the machine, the log, and
``metrics.json`` (rewritten after every stage, so it says how far a stopped run got)."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fer_pipeline.core.device import synchronize
from fer_pipeline.files import write_json
from fer_pipeline.project import project_root

log = logging.getLogger("fer_pipeline.runner")


def default_paths() -> dict[str, Path]:
    """The project's conf/base and the git-ignored scratch and output folders under build/."""
    root = project_root()
    return {"conf": root / "conf" / "base", "work": root / "build" / "gpu_work", "out": root / "build" / "gpu_out",
            "root": root}


class StageTimer:
    """Wall-clock seconds and peak GPU memory of each stage."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stages: dict[str, dict[str, Any]] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[dict[str, Any]]:
        record: dict[str, Any] = {}
        synchronize(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        log.info("---- stage %s", name)
        start = time.perf_counter()
        try:
            yield record
        finally:
            synchronize(self.device)
            record["seconds"] = time.perf_counter() - start
            if self.device.type == "cuda":
                record["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
                record["peak_gpu_reserved_mb"] = torch.cuda.max_memory_reserved(self.device) / 2**20
            self.stages[name] = record
            log.info("---- stage %s: %.2f s", name, record["seconds"])

    def value(self, stage: str, key: str) -> Any:
        return self.stages.get(stage, {}).get(key)


def device_summary(device: torch.device) -> dict[str, Any]:
    """The machine: device, library versions, CPU count, GPU properties."""
    import torchvision

    info: dict[str, Any] = {
        "device": str(device), "torch": torch.__version__, "torchvision": torchvision.__version__,
        "numpy": np.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, total_memory_mb=props.total_memory / 2**20,
                    multiprocessors=props.multi_processor_count, capability=f"{props.major}.{props.minor}",
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    else:
        info["name"] = platform.processor() or platform.machine()
    return info


def setup_logging(log_file: Path | None, mode: str = "w") -> None:
    """INFO to stdout and ``log_file``; replaces only the handlers an earlier call added."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, "_fer_runner", False):
            root.removeHandler(handler)
            handler.close()
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file, mode=mode, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler._fer_runner = True
        root.addHandler(handler)


class PipelineRun:
    """One run's state: parameters, folders, the timer and the ``metrics.json`` record."""

    def __init__(self, params: dict[str, Any], data: Path, out: Path, work: Path, device: torch.device,
                 argv: list[str]) -> None:
        self.params, self.data, self.out, self.work, self.device = params, data, out, work, device
        self.timer = StageTimer(device)
        self.metrics: dict[str, Any] = {
            "script": "scripts/gpu_pipeline.py", "argv": argv,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "status": "running",
            "device": device_summary(device), "parameters": params, "stages": self.timer.stages,
        }

    def save(self, status: str | None = None) -> None:
        if status:
            self.metrics["status"] = status
        write_json(self.out / "metrics.json", self.metrics)
