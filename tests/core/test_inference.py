"""core.inference: TTA views, preprocessing, batching, bad input, bf16 autocast on CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fer_pipeline.core.inference import predict_logits
from fer_pipeline.core.models import build_resnet34, model_config


class Probe(nn.Module):
    """Records every input it sees; logit k = (k + 1) * mean of the input (per sample)."""

    def __init__(self, num_classes: int = 7) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.seen: list[torch.Tensor] = []
        self.scale = nn.Parameter(torch.arange(1, num_classes + 1, dtype=torch.float32), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return x.mean(dim=(1, 2, 3))[:, None] * self.scale


@pytest.fixture(scope="module")
def small_resnet() -> nn.Module:
    torch.manual_seed(0)
    return build_resnet34(arch="resnet18").eval()


def symmetric_faces(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    left = rng.integers(0, 256, size=(n, 48, 24), dtype=np.uint8)
    return np.concatenate([left, left[:, :, ::-1]], axis=2)


# ---------------------------------------------------------------------------- inference / TTA


@pytest.mark.parametrize("tta", ["none", "flip", "ten_crop"])
@pytest.mark.parametrize("input_size", [44, 48])
def test_tta_output_shape_and_views(tta: str, input_size: int) -> None:
    probe = Probe()
    config = model_config(input_size=input_size)
    images = np.random.default_rng(1).integers(0, 256, size=(5, 48, 48), dtype=np.uint8)
    logits = predict_logits(probe, images, config, tta=tta, batch_size=256, device="cpu")
    assert logits.shape == (5, 7) and logits.dtype == np.float32
    expected_views = {"none": 1, "flip": 2, "ten_crop": 10}[tta]
    assert len(probe.seen) == expected_views
    assert all(view.shape == (5, 1, input_size, input_size) for view in probe.seen)


def test_preprocessing_normalises_and_repeats_channels() -> None:
    probe = Probe()
    config = model_config(in_channels=3, input_size=44)
    images = np.full((2, 48, 48), 255, dtype=np.uint8)
    images[1] = 0
    logits = predict_logits(probe, images, config, device="cpu")
    (view,) = probe.seen
    assert view.shape == (2, 3, 44, 44)
    # (1 - 0.5) / 0.25 = 2 and (0 - 0.5) / 0.25 = -2
    np.testing.assert_allclose(logits[:, 0], [2.0, -2.0], atol=1e-6)
    np.testing.assert_allclose(logits[:, 6], [14.0, -14.0], atol=1e-5)


def test_centre_crop_takes_the_middle() -> None:
    probe = Probe()
    images = np.zeros((1, 48, 48), dtype=np.uint8)
    images[0, 2:46, 2:46] = 255  # exactly the 44 px centre crop is white
    predict_logits(probe, images, model_config(input_size=44), device="cpu")
    assert torch.all(probe.seen[0] == 2.0)


def test_flip_tta_of_symmetric_faces_equals_no_tta(small_resnet: nn.Module) -> None:
    images = symmetric_faces(6)
    np.testing.assert_array_equal(images, images[:, :, ::-1])
    config = model_config(arch="resnet18")
    plain = predict_logits(small_resnet, images, config, tta="none", device="cpu")
    flipped = predict_logits(small_resnet, images, config, tta="flip", device="cpu")
    np.testing.assert_allclose(flipped, plain, rtol=0, atol=1e-6)


def test_flip_tta_differs_on_asymmetric_faces(small_resnet: nn.Module) -> None:
    images = np.random.default_rng(3).integers(0, 256, size=(4, 48, 48), dtype=np.uint8)
    config = model_config(arch="resnet18")
    plain = predict_logits(small_resnet, images, config, tta="none", device="cpu")
    flipped = predict_logits(small_resnet, images, config, tta="flip", device="cpu")
    assert not np.allclose(plain, flipped, atol=1e-6)


def test_batching_and_memory_format_do_not_change_logits(small_resnet: nn.Module) -> None:
    images = torch.from_numpy(np.random.default_rng(4).integers(0, 256, size=(7, 1, 48, 48), dtype=np.uint8))
    config = model_config(arch="resnet18", input_size=44)
    # In float32: bf16 rounds differently with the batch and memory layout (oneDNN picks other
    # kernels), which test_cpu_bf16_autocast_is_close_to_fp32 bounds instead.
    one_batch = predict_logits(small_resnet, images, config, batch_size=256, device="cpu", amp="off")
    small_batches = predict_logits(small_resnet, images, config, batch_size=3, device="cpu", channels_last=False,
                                   amp="off")
    np.testing.assert_allclose(small_batches, one_batch, atol=1e-4)


def test_predict_logits_rejects_bad_input() -> None:
    config = model_config()
    with pytest.raises(ValueError, match="tta"):
        predict_logits(Probe(), np.zeros((1, 48, 48), np.uint8), config, tta="five_crop")
    with pytest.raises(TypeError, match="uint8"):
        predict_logits(Probe(), np.zeros((1, 48, 48), np.float32), config)
    assert predict_logits(Probe(), np.zeros((0, 48, 48), np.uint8), config).shape == (0, 7)


def test_cpu_bf16_autocast_is_close_to_fp32(small_resnet: nn.Module) -> None:
    images = np.random.default_rng(5).integers(0, 256, size=(4, 48, 48), dtype=np.uint8)
    config = model_config(arch="resnet18")
    fp32 = predict_logits(small_resnet, images, config, device="cpu", amp="off")
    bf16 = predict_logits(small_resnet, images, config, device="cpu", amp="on")
    assert bf16.dtype == np.float32
    assert not np.array_equal(bf16, fp32)  # autocast really ran in bf16
    np.testing.assert_allclose(bf16, fp32, atol=0.05 * np.abs(fp32).max() + 1e-3)
