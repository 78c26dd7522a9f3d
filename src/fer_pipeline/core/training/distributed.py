"""Data-parallel training across processes: PyTorch's process group, as ``torchrun`` starts it.

Nothing here launches or schedules anything: ``torchrun`` (or its API, ``elastic_launch``, in
``core.training.job``) starts the worker processes and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` / ``MASTER_PORT`` in each; ``init_from_env`` joins the group
they describe. ``core.training.loop`` asks ``current_world()`` and, in a group of more than one process,
takes its rank's share of every batch, wraps the model in ``DistributedDataParallel`` and reduces
losses and validation logits across ranks, so every rank takes the same decisions (best epoch,
early stopping) and only rank 0 writes files.

The backend is ``nccl`` on CUDA and ``gloo`` on CPU (tested in CI with 2 processes). Every
collective has the group's timeout (``DistributedConfig.timeout_s``): a rank that stops
answering fails the others instead of hanging them.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from fer_pipeline.core.config import from_params

#: the environment variables torchrun sets in every worker
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class DistributedConfig:
    """``params:training.distributed``: how ``kedro run`` (or the runner) trains across processes.

    ``nproc_per_node`` 1 (the default) trains in the calling process; N > 1 starts N workers on
    this machine through PyTorch's elastic launcher (the engine behind ``torchrun``), one per GPU
    on CUDA. For several machines, use ``torchrun`` itself (docs/scaling-out.md)."""

    nproc_per_node: int = 1
    backend: str = "auto"  # auto (nccl on CUDA, gloo on CPU) | nccl | gloo
    timeout_s: float = 1800.0  # of every collective: a silent rank fails the run after this
    monitor_interval_s: float = 0.5  # how often the launcher checks that every worker is alive

    def __post_init__(self) -> None:
        nproc = self.nproc_per_node
        if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
            raise ValueError(f"training.distributed.nproc_per_node must be an integer >= 1, got {nproc!r}")
        if self.backend not in ("auto", "nccl", "gloo"):
            raise ValueError(f"training.distributed.backend={self.backend!r}: use auto, nccl or gloo")
        if self.timeout_s <= 0 or self.monitor_interval_s <= 0:
            raise ValueError("training.distributed.timeout_s and monitor_interval_s must be > 0")

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> DistributedConfig:
        return from_params(cls, params or {}, "training.distributed")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 when alone)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints, model files and tracking records."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched_by_torchrun() -> bool:
    """True inside a worker that torchrun (or ``elastic_launch``) started."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def current_world() -> World:
    """The initialised process group's rank and size; rank 0 of 1 when there is none."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return World()


def in_worker() -> bool:
    """True in a process that torchrun (or ``elastic_launch``) started, even one of a world of
    one: such a process trains as its rank and must not start workers of its own."""
    return launched_by_torchrun() or (dist.is_available() and dist.is_initialized())


def backend_for(device: torch.device, backend: str = "auto") -> str:
    if backend != "auto":
        return backend
    return "nccl" if device.type == "cuda" else "gloo"


#: the devices a worker may be given: each takes its own GPU, so a fixed one ("cuda:1") cannot be
WORKER_DEVICES = ("auto", "cuda", "cpu")


def worker_device(device: str, local_rank: int) -> torch.device:
    """The device of one worker: its own GPU (``cuda:<LOCAL_RANK>``) on CUDA, else the CPU."""
    if device not in WORKER_DEVICES:
        raise ValueError(f"training.config.device={device!r} in several processes: use one of "
                         f"{', '.join(WORKER_DEVICES)} (each worker takes the GPU of its local rank)")
    if device in ("auto", "cuda") and torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"worker {local_rank} has no GPU: {torch.cuda.device_count()} visible, so at most "
                             f"{torch.cuda.device_count()} processes per node")
        return torch.device("cuda", local_rank)
    if device == "cuda":
        raise ValueError("training.config.device='cuda' but CUDA is not available")
    return torch.device("cpu")


def init_from_env(device: str = "auto", backend: str = "auto", timeout_s: float = 1800.0) -> World:
    """Join the process group torchrun's environment variables describe (once per process)."""
    if not launched_by_torchrun():
        missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
        raise RuntimeError(f"not a torchrun worker (missing {', '.join(missing)}): start it with torchrun")
    if not dist.is_initialized():
        local_rank = int(os.environ["LOCAL_RANK"])
        target = worker_device(device, local_rank)
        if target.type == "cuda":
            torch.cuda.set_device(target)
        dist.init_process_group(backend_for(target, backend), timeout=datetime.timedelta(seconds=timeout_s))
    return current_world()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_global_batch(batch_size: int, processes: int) -> None:
    """The global batch must split into equal shares, one per process."""
    if batch_size % processes:
        raise ValueError(f"training.config.batch_size {batch_size} (the global batch) must be a multiple of the "
                         f"{processes} training processes")


def rank_batch(indices: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's share of one step's global batch: the ``rank``-th of ``size`` equal slices.

    Every rank draws the same global indices (the same seeded generator), so the shares are
    disjoint and together they are the global batch."""
    if not world.distributed:
        return indices
    check_global_batch(indices.shape[-1], world.size)
    local = indices.shape[-1] // world.size
    return indices[..., world.rank * local:(world.rank + 1) * local]


def rank_rows(num_rows: int, world: World) -> slice:
    """This rank's contiguous share of ``num_rows`` rows (validation): sizes differ by at most one."""
    bounds = np.linspace(0, num_rows, world.size + 1).round().astype(int)
    return slice(int(bounds[world.rank]), int(bounds[world.rank + 1]))


def all_reduce_mean(value: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of ``value`` over the ranks (the value itself when alone)."""
    if not world.distributed:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world.size


def all_gather_rows(rows: np.ndarray, world: World) -> np.ndarray:
    """Every rank's ``rows`` concatenated in rank order, on every rank."""
    if not world.distributed:
        return rows
    gathered: list[Any] = [None] * world.size
    dist.all_gather_object(gathered, rows)
    return np.concatenate(gathered)


def broadcast_from_main(value: Any, world: World) -> Any:
    """Rank 0's ``value`` on every rank (a picklable object: a checkpoint read by rank 0 alone,
    so the others need not see its storage)."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# --------------------------------------------------------------------------------------------
# Batch statistics over the global batch
# --------------------------------------------------------------------------------------------


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) with its gradient: the gradient of a sum over ranks is the sum of every
    rank's gradient. (torch.distributed.nn.functional.all_reduce did this; it is deprecated.)"""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total


class GlooSyncBatchNorm2d(torch.nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch, on any backend.

    ``torch.nn.SyncBatchNorm`` (used on CUDA) refuses CPU tensors, so gloo workers would each
    normalise by their own share of the batch and train a different model from one process with
    the same global batch. This one all-reduces the per-channel sums and count, then the squared
    deviations from the global mean (two passes, as BatchNorm2d computes the variance), through
    ``_SumOverRanks``, which carries the gradient back to every rank as SyncBatchNorm's backward
    does; it updates the running statistics as BatchNorm2d does. Its state dict is BatchNorm2d's,
    so model files do not change. Outside a process group of more than one, and in eval mode, it
    is BatchNorm2d."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - BatchNorm2d's signature
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        x = input.float()
        channels = x.shape[1]
        count = torch.full((1,), x.numel() / channels, dtype=torch.float32, device=x.device)
        totals = _SumOverRanks.apply(torch.cat([x.sum((0, 2, 3)), count]))
        n = totals[-1]
        mean = totals[:channels] / n
        # Two passes, as BatchNorm2d computes it: E[x^2] - E[x]^2 in float32 loses the variance
        # of channels whose mean is large against their spread.
        centred = x - mean[None, :, None, None]
        var = _SumOverRanks.apply((centred * centred).sum((0, 2, 3))) / n
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(var.detach() * n / (n - 1).clamp_min(1), alpha=momentum)
        # x - mean again, not `centred`: with `centred` reused (the same values), two gloo workers
        # ended 0.014 from one process in the 4-step equivalence test instead of 2e-5. Not
        # understood yet (the one-layer test passes either way), so kept as measured.
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(input.dtype)


def sync_batch_norm(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Every BatchNorm of ``model`` normalised over the global batch: torch's SyncBatchNorm with
    NCCL (it needs CUDA tensors and NCCL's kernels), ``GlooSyncBatchNorm2d`` otherwise (same
    parameters and buffers, moved in place)."""
    nccl = dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl"
    if device.type == "cuda" and nccl:
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is torch.nn.BatchNorm2d:
            replacement = GlooSyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                              child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            replacement.to(device)
            setattr(model, name, replacement)
        else:
            sync_batch_norm(child, device)
    return model
