"""Tests for core.augmentation.transforms: batched per-sample augmentation vs torchvision, sampling, mixing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import v2

from fer_pipeline.core.augmentation.transforms import (
    DEFAULT_POLICY,
    BatchAugment,
    SoftTargetMix,
    adjust_brightness,
    adjust_contrast,
    batch_affine,
    batch_crop,
    batch_hflip,
    batch_resized_crop,
    build_mixup_cutmix,
    build_per_image_transform,
    center_crop,
    sampling_weights,
)

RRC_POLICY = {**DEFAULT_POLICY, "random_resized_crop": {"scale": [0.7, 1.0], "ratio": [0.8, 1.25]}}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def textured(batch: int, size: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 1, size, size, generator=gen(seed))


# ------------------------------------------------------------------- primitives vs torchvision
def test_batch_crop_equals_functional_crop_per_sample():
    x = textured(4, 56)
    top, left = torch.tensor([0, 3, 12, 7]), torch.tensor([12, 0, 5, 9])
    out = batch_crop(x, top, left, 44)
    for i in range(4):
        assert torch.equal(out[i], TF.crop(x[i], int(top[i]), int(left[i]), 44, 44))


def test_batch_hflip_flips_exactly_the_masked_samples():
    x = textured(3)
    out = batch_hflip(x, torch.tensor([True, False, True]))
    assert torch.equal(out[0], TF.horizontal_flip(x[0]))
    assert torch.equal(out[1], x[1])
    assert torch.equal(out[2], TF.horizontal_flip(x[2]))


@pytest.mark.parametrize("angle, translate, scale", [(10.0, (3.0, -2.0), 1.1), (-25.0, (0.0, 0.0), 0.9)])
def test_batch_affine_matches_functional_affine_away_from_borders(angle, translate, scale):
    x = textured(2)
    out = batch_affine(x, torch.tensor([angle, 0.0]), torch.tensor([translate, (0.0, 0.0)]), torch.tensor([scale, 1.0]))
    reference = TF.affine(
        x[0], angle=angle, translate=list(translate), scale=scale, shear=[0.0, 0.0],
        interpolation=v2.InterpolationMode.BILINEAR,
    )
    assert torch.allclose(out[0, :, 8:-8, 8:-8], reference[:, 8:-8, 8:-8], atol=1e-4)
    assert torch.allclose(out[1], x[1], atol=1e-5)  # identity parameters leave the image as is


def test_positive_angle_rotates_clockwise_like_functional_affine():
    x = torch.zeros(1, 1, 48, 48)
    x[..., 24, 40] = 1.0  # a dot right of the centre (23.5, 23.5)
    out = batch_affine(x, torch.tensor([90.0]), torch.zeros(1, 2), torch.ones(1))
    row, col = divmod(int(out.flatten().argmax()), 48)
    assert (row, col) == (40, 23)  # moved below the centre: clockwise on screen (y points down)
    assert out.max() == pytest.approx(1.0, abs=1e-5)


def test_batch_resized_crop_matches_functional_resized_crop():
    x = textured(2)
    boxes = torch.tensor([[3.0, 5.0, 40.0, 36.0], [0.0, 0.0, 48.0, 48.0]])
    out = batch_resized_crop(x, boxes, 44)
    ref0 = TF.resized_crop(x[0], 3, 5, 40, 36, [44, 44], antialias=False)
    assert torch.allclose(out[0, :, 1:-1, 1:-1], ref0[:, 1:-1, 1:-1], atol=1e-5)
    assert torch.allclose(out[1], TF.resize(x[1], [44, 44], antialias=False), atol=1e-5)


@pytest.mark.parametrize("size", [44, 45, 48])
def test_center_crop_matches_functional(size):
    x = textured(2)
    assert torch.equal(center_crop(x, size), TF.center_crop(x, [size, size]))


def test_brightness_and_contrast_match_functional_per_sample():
    x = textured(2)
    factors = torch.tensor([0.7, 1.3])
    bright, contrast = adjust_brightness(x, factors), adjust_contrast(x, factors)
    for i in range(2):
        assert torch.allclose(bright[i], TF.adjust_brightness(x[i], float(factors[i])), atol=1e-6)
        assert torch.allclose(contrast[i], TF.adjust_contrast(x[i], float(factors[i])), atol=1e-6)


# ------------------------------------------------------------------------------ BatchAugment
@pytest.mark.parametrize("policy", [DEFAULT_POLICY, RRC_POLICY], ids=["pad_crop", "resized_crop"])
def test_output_size_range_and_reproducibility(policy):
    x = textured(16)
    augment = BatchAugment(policy)
    out = augment(x, generator=gen(1))
    assert out.shape == (16, 1, 44, 44) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, augment(x, generator=gen(1)))
    assert not torch.equal(out, augment(x, generator=gen(2)))


def test_eval_mode_is_a_centre_crop():
    x = textured(3)
    augment = BatchAugment(DEFAULT_POLICY).eval()
    assert torch.equal(augment(x), TF.center_crop(x, [44, 44]))


def test_labels_stay_aligned_with_images():
    # each image is a constant grey level that encodes its label; a label-preserving policy
    # (geometry + erasing, no colour change, no mixing) only adds zeros / blends with zeros,
    # so every output's brightest pixel still reads its own label
    labels = torch.tensor([3, 0, 6, 1, 5, 2, 4, 3, 1, 6] * 4)
    levels = (labels.float() + 1) / 8
    x = levels[:, None, None, None].expand(-1, 1, 48, 48).clone()
    policy = {
        "crop_size": 44, "padding": 4, "hflip_p": 0.5,
        "affine": {"p": 1.0, "degrees": 20, "translate": 0.1, "scale": [0.9, 1.1]},
        "erasing": {"p": 1.0, "scale": [0.02, 0.2], "ratio": [0.3, 3.3]},
    }
    out = BatchAugment(policy)(x, generator=gen(0))
    brightest = out.flatten(1).max(dim=1).values
    assert torch.allclose(brightest, levels, atol=1e-5)
    assert (out.flatten(1) < levels[:, None] - 1e-3).any(dim=1).float().mean() > 0.5  # things did happen


def test_parameters_are_drawn_per_sample():
    x = textured(1).expand(32, -1, -1, -1).contiguous()  # 32 copies of one image
    out = BatchAugment({"crop_size": 44, "padding": 4})(x, generator=gen(0))
    distinct = {tuple(img.flatten()[:200].tolist()) for img in out}
    assert len(distinct) > 16  # 81 possible offsets: different crops for different images
    # torchvision's RandomCrop on the batch uses one offset for the whole batch (why BatchAugment exists)
    torch.manual_seed(0)
    same = v2.RandomCrop(44, padding=4)(x)
    assert all(torch.equal(same[0], img) for img in same)


def test_flip_probability_is_per_sample():
    x = textured(1).expand(400, -1, -1, -1).contiguous()
    out = BatchAugment({"crop_size": 48, "hflip_p": 0.5})(x, generator=gen(3))
    flipped = torch.tensor([torch.equal(img, TF.horizontal_flip(x[0])) for img in out])
    kept = torch.tensor([torch.equal(img, x[0]) for img in out])
    assert bool((flipped ^ kept).all())
    assert 0.4 < flipped.float().mean() < 0.6


def test_erasing_makes_one_rectangle_of_the_requested_area():
    x = torch.ones(64, 1, 48, 48)
    policy = {"crop_size": 48, "erasing": {"p": 1.0, "scale": [0.05, 0.2], "ratio": [0.5, 2.0]}}
    out = BatchAugment(policy)(x, generator=gen(0))
    areas = []
    for img in out[:, 0]:
        zero = img == 0
        rows, cols = zero.any(1).sum(), zero.any(0).sum()
        assert zero.sum() == rows * cols  # a filled axis-aligned rectangle
        areas.append(zero.float().mean().item())
    assert min(areas) > 0.03 and max(areas) < 0.25 and np.std(areas) > 0.01


def test_unknown_policy_keys_are_rejected():
    with pytest.raises(ValueError, match="hflip"):
        BatchAugment({"hflip": 0.5})
    with pytest.raises(ValueError, match="angle"):
        BatchAugment({"affine": {"p": 1, "angle": 3}})


# ------------------------------------------------------------------ torchvision per-image twin
def test_per_image_transform_same_policy_shapes():
    face = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)
    for policy in (DEFAULT_POLICY, RRC_POLICY):
        out = build_per_image_transform(policy)(face)
        assert out.shape == (1, 44, 44) and out.dtype == torch.float32
        assert 0 <= out.min() and out.max() <= 1
    names = [type(t).__name__ for t in build_per_image_transform(DEFAULT_POLICY).transforms]
    assert names[:3] == ["ToImage", "ToDtype", "RandomCrop"] and names[-1] == "RandomErasing"
    evaluated = build_per_image_transform(DEFAULT_POLICY, train=False)(face)
    expected = center_crop(torch.from_numpy(face).float().div(255)[None], 44)
    assert torch.allclose(evaluated, expected)


# ------------------------------------------------------------------------------------ mixing
def test_mixup_cutmix_return_soft_labels_summing_to_one():
    assert build_mixup_cutmix(DEFAULT_POLICY, 7) is None
    x, labels = textured(8), torch.arange(8) % 7
    for alphas in ({"mixup_alpha": 0.4}, {"cutmix_alpha": 1.0}, {"mixup_alpha": 0.4, "cutmix_alpha": 1.0}):
        mix = build_mixup_cutmix({**DEFAULT_POLICY, **alphas}, num_classes=7)
        mixed, soft = mix(x, labels)
        assert mixed.shape == x.shape and soft.shape == (8, 7)
        assert torch.allclose(soft.sum(1), torch.ones(8))
        # each row mixes the image's own label with its partner's (torchvision pairs i with i-1)
        allowed = torch.nn.functional.one_hot(labels, 7) + torch.nn.functional.one_hot(labels.roll(1), 7)
        assert ((soft > 1e-6) <= (allowed > 0)).all()
    assert type(build_mixup_cutmix({"mixup_alpha": 0.2, "cutmix_alpha": 1.0}, 7)).__name__ == "RandomChoice"


def test_soft_target_mix_mixes_targets_exactly_as_the_hard_label_mix():
    """On one-hot targets it equals torchvision's own label mixing, same images (same RNG draws);
    on real distributions each row is lam * own + (1 - lam) * partner's."""
    x, labels = textured(8), torch.arange(8) % 7
    for alphas in ({"mixup_alpha": 0.4}, {"cutmix_alpha": 1.0}, {"mixup_alpha": 0.4, "cutmix_alpha": 1.0}):
        policy = {**DEFAULT_POLICY, **alphas}
        torch.manual_seed(5)
        hard_x, hard_y = build_mixup_cutmix(policy, 7)(x, labels)
        torch.manual_seed(5)
        soft_x, soft_y = SoftTargetMix(policy)(x, torch.nn.functional.one_hot(labels, 7).float())
        assert torch.equal(hard_x, soft_x)
        assert torch.allclose(hard_y, soft_y, atol=1e-6)
    targets = torch.softmax(torch.randn(8, 7), 1)
    torch.manual_seed(1)
    _, mixed = SoftTargetMix({**DEFAULT_POLICY, "mixup_alpha": 0.4})(x, targets)
    lam = (mixed[0] - targets[7]) / (targets[0] - targets[7])  # row 0's partner is row 7
    assert torch.allclose(mixed, lam[0] * targets + (1 - lam[0]) * targets.roll(1, 0), atol=1e-5)
    assert torch.allclose(mixed.sum(1), torch.ones(8), atol=1e-5)


# ---------------------------------------------------------------------------------- sampling
def test_sampling_weights_give_the_expected_class_frequencies():
    labels = np.repeat([0, 1, 2], [400, 100, 25])
    assert sampling_weights(labels, "shuffle") is None
    balanced = sampling_weights(labels, "class_balanced")
    per_class = np.bincount(labels, weights=balanced)
    np.testing.assert_allclose(per_class, [1 / 3] * 3)
    sqrt = sampling_weights(labels, "sqrt")
    np.testing.assert_allclose(np.bincount(labels, weights=sqrt), np.array([20, 10, 5]) / 35)
    # torch.multinomial with these weights draws classes at those rates
    draws = torch.multinomial(torch.as_tensor(balanced), 30000, replacement=True, generator=gen(0)).numpy()
    np.testing.assert_allclose(np.bincount(labels[draws]) / 30000, [1 / 3] * 3, atol=0.02)
    with pytest.raises(ValueError):
        sampling_weights(labels, "oversample")
