"""Process-group helpers: batch shares, validation shares, global-batch BatchNorm, config checks.

The multi-process checks start real gloo workers through ``core.training.job.launch`` (PyTorch's
elastic launcher) on this machine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributed.elastic.multiprocessing.errors import record

from fer_pipeline.core.models import build_resnet34
from fer_pipeline.core.training.distributed import (
    DistributedConfig,
    GlooSyncBatchNorm2d,
    World,
    all_gather_rows,
    all_reduce_mean,
    current_world,
    init_from_env,
    rank_batch,
    rank_rows,
    shutdown,
    sync_batch_norm,
)
from fer_pipeline.core.training.job import launch


def test_rank_batch_shares_are_disjoint_and_make_the_global_batch():
    indices = torch.arange(24).view(2, 12)  # two steps of a global batch of 12
    shares = [rank_batch(indices, World(rank, 3)) for rank in range(3)]
    assert all(share.shape == (2, 4) for share in shares)
    assert torch.equal(torch.cat(shares, dim=1), indices)
    assert torch.equal(rank_batch(indices, World()), indices)


def test_rank_batch_refuses_a_batch_that_does_not_split():
    with pytest.raises(ValueError, match="batch_size 10 .* multiple of the 3 training processes"):
        rank_batch(torch.arange(10).view(1, 10), World(0, 3))


@pytest.mark.parametrize("rows, size", [(10, 3), (7, 2), (2, 2), (100, 8)])
def test_rank_rows_cover_every_row_once(rows, size):
    covered = np.concatenate([np.arange(rows)[rank_rows(rows, World(rank, size))] for rank in range(size)])
    assert np.array_equal(covered, np.arange(rows))
    lengths = [len(np.arange(rows)[rank_rows(rows, World(rank, size))]) for rank in range(size)]
    assert max(lengths) - min(lengths) <= 1


def test_alone_the_reductions_are_identities():
    value = torch.tensor([1.0, 2.0])
    assert torch.equal(all_reduce_mean(value, World()), value)
    rows = np.ones((3, 2))
    assert all_gather_rows(rows, World()) is rows
    assert current_world() == World()


def test_distributed_config_rejects_bad_values_and_unknown_keys():
    assert DistributedConfig.from_dict(None).nproc_per_node == 1
    with pytest.raises(ValueError, match="did you mean 'nproc_per_node'"):
        DistributedConfig.from_dict({"nprocs_per_node": 2})
    for bad in (0, 2.5, True, "2"):
        with pytest.raises(ValueError, match="nproc_per_node must be an integer >= 1"):
            DistributedConfig(nproc_per_node=bad)
    with pytest.raises(ValueError, match="use auto, nccl or gloo"):
        DistributedConfig(backend="mpi")


def test_init_from_env_outside_torchrun_says_how_to_start(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match="start it with torchrun"):
        init_from_env()


def test_sync_batch_norm_keeps_the_state_dict_and_alone_is_batch_norm():
    torch.manual_seed(0)
    plain = build_resnet34(arch="resnet18", stem="imagenet")
    synced = sync_batch_norm(build_resnet34(arch="resnet18", stem="imagenet"), torch.device("cpu"))
    synced.load_state_dict(plain.state_dict())
    assert any(isinstance(m, GlooSyncBatchNorm2d) for m in synced.modules())
    assert not any(type(m) is torch.nn.BatchNorm2d for m in synced.modules())
    x = torch.randn(4, 1, 32, 32)
    plain.train(), synced.train()
    assert torch.equal(plain(x), synced(x))  # no process group: BatchNorm2d's own forward


# ---- in real worker processes ---------------------------------------------------------------

BATCH = torch.Generator().manual_seed(5)
GLOBAL_X = torch.randn(8, 3, 5, 5, generator=BATCH) * 3 + 1


@record
def _batch_norm_worker() -> dict:
    """One rank: its half of GLOBAL_X through GlooSyncBatchNorm2d; output, input grad, running stats."""
    world = init_from_env(timeout_s=60)
    try:
        torch.manual_seed(0)
        norm = GlooSyncBatchNorm2d(3)
        with torch.no_grad():
            norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
            norm.bias.copy_(torch.tensor([0.0, -1.0, 0.3]))
        x = GLOBAL_X[world.rank * 4:(world.rank + 1) * 4].clone().requires_grad_(True)
        out = norm(x)
        (out * torch.arange(out.numel()).view_as(out).float()).sum().backward()
        gathered = all_gather_rows(x.grad.numpy(), world)
        return {"out": out.detach().numpy(), "grad": gathered, "running_mean": norm.running_mean.numpy(),
                "running_var": norm.running_var.numpy(), "weight_grad": norm.weight.grad.numpy()}
    finally:
        shutdown()


@pytest.mark.slow
def test_gloo_sync_batch_norm_over_two_ranks_equals_batch_norm_over_the_global_batch():
    results = launch(_batch_norm_worker, (), DistributedConfig(nproc_per_node=2, timeout_s=60))
    norm = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        norm.bias.copy_(torch.tensor([0.0, -1.0, 0.3]))
    x = GLOBAL_X.clone().requires_grad_(True)
    out = norm(x)
    weights = torch.cat([torch.arange(out[:4].numel()).view_as(out[:4]).float()] * 2)
    (out * weights).sum().backward()
    np.testing.assert_allclose(np.concatenate([results[0]["out"], results[1]["out"]]), out.detach().numpy(),
                               rtol=1e-5, atol=1e-5)
    for rank in (0, 1):
        # each rank's input grad includes the paths through the other rank's statistics
        np.testing.assert_allclose(results[rank]["grad"], x.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(results[rank]["running_mean"], norm.running_mean.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(results[rank]["running_var"], norm.running_var.numpy(), rtol=1e-5, atol=1e-6)
    # the parameter grads are each rank's part; DDP averages them, so their sum / 2 is the mean loss's
    np.testing.assert_allclose(results[0]["weight_grad"] + results[1]["weight_grad"], norm.weight.grad.numpy(),
                               rtol=1e-4, atol=1e-4)
