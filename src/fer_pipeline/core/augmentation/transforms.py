"""Batched, on-device data augmentation with per-sample random parameters.

Why this module exists: ``torchvision.transforms.v2`` transforms given a batch tensor (B,C,H,W)
draw ONE set of random parameters and apply it to every image of the batch (same crop offset,
same flip, same angle). Per-sample randomness with torchvision therefore means a per-image call,
i.e. a DataLoader with CPU workers. ``BatchAugment`` instead draws a separate parameter for every
image and applies all of them at once with vectorised tensor ops on the batch's device:

* random crop after padding: per-sample offsets, two ``gather`` calls (``batch_crop``);
* random resized crop: per-sample boxes as ``F.affine_grid`` + ``F.grid_sample``;
* horizontal flip: ``torch.where`` on a per-sample mask;
* affine (rotation, translation, scale): per-sample inverse matrices, ``affine_grid`` +
  ``grid_sample`` (``batch_affine``, convention of ``v2.functional.affine``: positive angle =
  clockwise on screen, unlike ``v2.functional.rotate``);
* brightness / contrast: per-sample factors, per-sample random order (as ``ColorJitter``);
* random erasing: per-sample rectangles as coordinate masks.

No Python loop over images. ``build_per_image_transform`` expresses the same policy with standard
per-image v2 transforms; it is the reference for the tests and the baseline for
``benchmarks/bench_augmentation.py``. MixUp / CutMix need the labels and mix whole batches, so they
are separate (``build_mixup_cutmix``).

The policy is a plain dict (``parameters_augmentation.yml``)::

    crop_size: 44            # output size: random crop in training, centre crop at eval
    padding: 4               # padding before the random crop
    padding_mode: constant   # or reflect (constant pads with zeros)
    random_resized_crop: null  # or {scale: [0.8, 1.0], ratio: [0.9, 1.1]} instead of pad+crop
    hflip_p: 0.5
    affine: {p: 0.5, degrees: 10, translate: 0.1, scale: [0.9, 1.1]}
    color: {p: 0.8, brightness: 0.3, contrast: 0.3}
    erasing: {p: 0.25, scale: [0.02, 0.2], ratio: [0.3, 3.3], value: 0.0}
    mixup_alpha: 0.0         # > 0 enables v2.MixUp
    cutmix_alpha: 0.0        # > 0 enables v2.CutMix (both -> v2.RandomChoice)

Unknown keys raise ``ValueError`` (a typo must not silently disable an augmentation).
Only torch / torchvision / numpy / stdlib at module level.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_pipeline.core.classes import CLASSES, IMAGE_SIZE

POLICY_KEYS = frozenset(
    {
        "crop_size",
        "padding",
        "padding_mode",
        "random_resized_crop",
        "hflip_p",
        "affine",
        "color",
        "erasing",
        "mixup_alpha",
        "cutmix_alpha",
    }
)
_SUBKEYS = {
    "random_resized_crop": {"scale", "ratio"},
    "affine": {"p", "degrees", "translate", "scale"},
    "color": {"p", "brightness", "contrast"},
    "erasing": {"p", "scale", "ratio", "value"},
}

#: A sensible default for 48x48 faces (the example of parameters_augmentation.yml).
DEFAULT_POLICY: dict[str, Any] = {
    "crop_size": 44,
    "padding": 4,
    "padding_mode": "constant",
    "random_resized_crop": None,
    "hflip_p": 0.5,
    "affine": {"p": 0.5, "degrees": 10, "translate": 0.1, "scale": [0.9, 1.1]},
    "color": {"p": 0.8, "brightness": 0.3, "contrast": 0.3},
    "erasing": {"p": 0.25, "scale": [0.02, 0.2], "ratio": [0.3, 3.3], "value": 0.0},
    "mixup_alpha": 0.0,
    "cutmix_alpha": 0.0,
}

SAMPLING_STRATEGIES = ("shuffle", "class_balanced", "sqrt")


# ------------------------------------------------------------------------------------- policy
def _pair(value: float | Sequence[float], symmetric: bool) -> tuple[float, float]:
    """Scalar v -> (-v, v) when symmetric else (v, v); a pair is returned as floats."""
    if isinstance(value, (int, float)):
        return (-float(value), float(value)) if symmetric else (float(value), float(value))
    lo, hi = value
    return float(lo), float(hi)


def parse_policy(policy: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate a policy dict and fill defaults for absent keys (no augmentation by default)."""
    policy = dict(policy or {})
    unknown = set(policy) - POLICY_KEYS
    if unknown:
        raise ValueError(f"unknown augmentation policy keys {sorted(unknown)}; known: {sorted(POLICY_KEYS)}")
    for key, allowed in _SUBKEYS.items():
        sub = policy.get(key)
        if sub is not None:
            bad = set(sub) - allowed
            if bad:
                raise ValueError(f"unknown keys {sorted(bad)} in policy[{key!r}]; known: {sorted(allowed)}")
    out: dict[str, Any] = {
        "crop_size": int(policy.get("crop_size") or IMAGE_SIZE),
        "padding": int(policy.get("padding") or 0),
        "padding_mode": policy.get("padding_mode") or "constant",
        "random_resized_crop": None,
        "hflip_p": float(policy.get("hflip_p") or 0.0),
        "affine": None,
        "color": None,
        "erasing": None,
        "mixup_alpha": float(policy.get("mixup_alpha") or 0.0),
        "cutmix_alpha": float(policy.get("cutmix_alpha") or 0.0),
    }
    if out["padding_mode"] not in ("constant", "reflect"):
        raise ValueError(f"padding_mode must be constant or reflect, got {out['padding_mode']!r}")
    if rrc := policy.get("random_resized_crop"):
        out["random_resized_crop"] = {
            "scale": _pair(rrc.get("scale", (0.8, 1.0)), symmetric=False),
            "ratio": _pair(rrc.get("ratio", (0.75, 4 / 3)), symmetric=False),
        }
    if (affine := policy.get("affine")) and float(affine.get("p", 1.0)) > 0:
        translate = affine.get("translate") or 0.0
        out["affine"] = {
            "p": float(affine.get("p", 1.0)),
            "degrees": _pair(affine.get("degrees") or 0.0, symmetric=True),
            "translate": _pair(translate, symmetric=False),
            "scale": _pair(affine.get("scale") or 1.0, symmetric=False),
        }
    if (color := policy.get("color")) and float(color.get("p", 1.0)) > 0:
        out["color"] = {
            "p": float(color.get("p", 1.0)),
            "brightness": float(color.get("brightness") or 0.0),
            "contrast": float(color.get("contrast") or 0.0),
        }
    if (erasing := policy.get("erasing")) and float(erasing.get("p", 0.5)) > 0:
        out["erasing"] = {
            "p": float(erasing.get("p", 0.5)),
            "scale": _pair(erasing.get("scale", (0.02, 0.33)), symmetric=False),
            "ratio": _pair(erasing.get("ratio", (0.3, 3.3)), symmetric=False),
            "value": float(erasing.get("value", 0.0)),
        }
    return out


# ------------------------------------------------------------------------ vectorised primitives
def batch_crop(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    """Crop a (size x size) window at per-sample integer offsets ``top``/``left`` (B,)."""
    batch, channels, _, width = x.shape
    steps = torch.arange(size, device=x.device)
    rows = (top.long()[:, None] + steps)[:, None, :, None].expand(batch, channels, size, width)
    x = x.gather(2, rows)
    cols = (left.long()[:, None] + steps)[:, None, None, :].expand(batch, channels, size, size)
    return x.gather(3, cols)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Central (size x size) crop of (..., H, W), offsets as ``v2.functional.center_crop``."""
    height, width = x.shape[-2:]
    if size > height or size > width:
        raise ValueError(f"crop size {size} exceeds the image size {height}x{width}")
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return x[..., top : top + size, left : left + size]


def batch_hflip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror the images where ``mask`` (B,) is True."""
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def batch_affine(
    x: torch.Tensor,
    angle: torch.Tensor,
    translate: torch.Tensor,
    scale: torch.Tensor,
    mode: str = "bilinear",
    fill: float = 0.0,
) -> torch.Tensor:
    """Per-sample rotation (degrees), translation (B,2) in pixels (x, y) and scale about the image
    centre, in the convention of ``v2.functional.affine`` (positive angle = clockwise on screen)."""
    _, _, height, width = x.shape
    rad = torch.deg2rad(angle.to(x.dtype))
    cos, sin = torch.cos(rad) / scale, torch.sin(rad) / scale
    tx, ty = translate[:, 0].to(x.dtype), translate[:, 1].to(x.dtype)
    # inverse map output pixel -> input pixel (coordinates relative to the centre, y down),
    # as torchvision's _get_inverse_affine_matrix without shear:
    # A = [[cos, sin], [-sin, cos]] / scale, t = -A @ (tx, ty); then to normalised coordinates
    a00, a01, a10, a11 = cos, sin, -sin, cos
    theta = torch.stack(
        [
            torch.stack([a00, a01 * height / width, -(a00 * tx + a01 * ty) * 2.0 / width], dim=1),
            torch.stack([a10 * width / height, a11, -(a10 * tx + a11 * ty) * 2.0 / height], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
    if fill != 0.0:  # outside the source image: fill instead of zeros
        ones = torch.ones_like(x[:, :1])
        inside = F.grid_sample(ones, grid, mode=mode, padding_mode="zeros", align_corners=False)
        out = out + (1.0 - inside) * fill
    return out


def batch_resized_crop(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of per-sample boxes (B,4) = (top, left, height, width) in pixels to
    (size x size). Equals ``v2.functional.resized_crop(..., antialias=False)`` except on the
    output's outermost pixels, where this reads the image just outside the box instead of
    clamping to the box's edge."""
    _, _, height, width = x.shape
    top, left, box_h, box_w = boxes.to(x.dtype).unbind(1)
    zeros = torch.zeros_like(top)
    theta = torch.stack(
        [
            torch.stack([box_w / width, zeros, (left + box_w / 2) * 2.0 / width - 1.0], dim=1),
            torch.stack([zeros, box_h / height, (top + box_h / 2) * 2.0 / height - 1.0], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, [x.shape[0], x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _grayscale_mean(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 3:  # as torchvision's adjust_contrast: mean of the grayscale image
        weights = torch.tensor([0.2989, 0.587, 0.114], device=x.device, dtype=x.dtype)[None, :, None, None]
        return (x * weights).sum(1, keepdim=True).mean(dim=(-2, -1), keepdim=True)
    return x.mean(dim=(-3, -2, -1), keepdim=True)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-sample ``v2.functional.adjust_brightness`` (factor (B,))."""
    return (x * factor[:, None, None, None]).clamp_(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-sample ``v2.functional.adjust_contrast``: blend with the image's mean grey level."""
    factor = factor[:, None, None, None]
    return (factor * x + (1.0 - factor) * _grayscale_mean(x)).clamp_(0.0, 1.0)


# ---------------------------------------------------------------------------------- the module
class BatchAugment(nn.Module):
    """Augment a float batch (B,C,H,W) in [0,1] with per-sample random parameters.

    Training mode: (pad + random crop | random resized crop) -> hflip -> affine -> colour ->
    erasing, all on ``x.device``; output (B,C,crop_size,crop_size) in [0,1]. Eval mode
    (``.eval()``): centre crop only. ``generator`` (on x.device) makes a call reproducible.
    MixUp / CutMix keys are accepted but applied by ``build_mixup_cutmix``, not here.

    Differences from torchvision, by design: erasing clamps the rectangle to the image instead
    of retrying up to 10 times; random-resized-crop boxes are continuous (clamped to the image)
    and resampled without antialiasing; affine translations are continuous, not rounded.
    """

    def __init__(self, policy: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.policy = parse_policy(policy)
        self.crop_size = self.policy["crop_size"]

    def extra_repr(self) -> str:
        return repr(self.policy)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() != 4 or not x.is_floating_point():
            raise ValueError(f"expected a float batch (B,C,H,W), got {tuple(x.shape)} {x.dtype}")
        if not self.training:
            return center_crop(x, self.crop_size)
        policy = self.policy
        batch, device = x.shape[0], x.device

        def uniform(low: float, high: float) -> torch.Tensor:
            return low + (high - low) * torch.rand(batch, generator=generator, device=device, dtype=x.dtype)

        def coin(p: float) -> torch.Tensor:
            return torch.rand(batch, generator=generator, device=device) < p

        size = self.crop_size
        if policy["random_resized_crop"] is not None:
            x = self._random_resized_crop(x, uniform)
        else:
            pad = policy["padding"]
            if pad:
                x = F.pad(x, (pad, pad, pad, pad), mode=policy["padding_mode"])
            height, width = x.shape[-2:]
            if size > height or size > width:
                raise ValueError(f"crop_size {size} exceeds the padded image {height}x{width}")
            if (height, width) != (size, size):
                top = (uniform(0.0, 1.0) * (height - size + 1)).long().clamp_(max=height - size)
                left = (uniform(0.0, 1.0) * (width - size + 1)).long().clamp_(max=width - size)
                x = batch_crop(x, top, left, size)

        if policy["hflip_p"] > 0:
            x = batch_hflip(x, coin(policy["hflip_p"]))

        if (affine := policy["affine"]) is not None:
            apply = coin(affine["p"])
            angle = uniform(*affine["degrees"])
            max_dx, max_dy = affine["translate"][0] * size, affine["translate"][1] * size
            translate = torch.stack([uniform(-max_dx, max_dx), uniform(-max_dy, max_dy)], dim=1)
            scale = uniform(*affine["scale"])
            # every sample is transformed and the untouched ones selected back: static shapes, no sync
            x = torch.where(apply[:, None, None, None], batch_affine(x, angle, translate, scale), x)

        if (color := policy["color"]) is not None:
            apply = coin(color["p"])
            jittered = x
            b, c = color["brightness"], color["contrast"]
            if b > 0 and c > 0:
                bright = uniform(max(0.0, 1.0 - b), 1.0 + b)
                contrast = uniform(max(0.0, 1.0 - c), 1.0 + c)
                brightness_first = coin(0.5)  # ColorJitter applies its ops in random order
                jittered = torch.where(
                    brightness_first[:, None, None, None],
                    adjust_contrast(adjust_brightness(x, bright), contrast),
                    adjust_brightness(adjust_contrast(x, contrast), bright),
                )
            elif b > 0:
                jittered = adjust_brightness(x, uniform(max(0.0, 1.0 - b), 1.0 + b))
            elif c > 0:
                jittered = adjust_contrast(x, uniform(max(0.0, 1.0 - c), 1.0 + c))
            x = torch.where(apply[:, None, None, None], jittered, x)

        if (erasing := policy["erasing"]) is not None:
            x = self._random_erasing(x, erasing, coin, uniform)
        return x

    def _random_resized_crop(self, x: torch.Tensor, uniform: Callable) -> torch.Tensor:
        height, width = x.shape[-2:]
        rrc = self.policy["random_resized_crop"]
        area = uniform(*rrc["scale"]) * (height * width)
        aspect = torch.exp(uniform(math.log(rrc["ratio"][0]), math.log(rrc["ratio"][1])))
        box_w = torch.sqrt(area * aspect).clamp(max=width)
        box_h = torch.sqrt(area / aspect).clamp(max=height)
        top = uniform(0.0, 1.0) * (height - box_h)
        left = uniform(0.0, 1.0) * (width - box_w)
        return batch_resized_crop(x, torch.stack([top, left, box_h, box_w], dim=1), self.crop_size)

    @staticmethod
    def _random_erasing(x: torch.Tensor, erasing: dict, coin: Callable, uniform: Callable) -> torch.Tensor:
        height, width = x.shape[-2:]
        apply = coin(erasing["p"])
        area = uniform(*erasing["scale"]) * (height * width)
        aspect = torch.exp(uniform(math.log(erasing["ratio"][0]), math.log(erasing["ratio"][1])))
        box_h = torch.sqrt(area * aspect).round().clamp(1, height)
        box_w = torch.sqrt(area / aspect).round().clamp(1, width)
        top = (uniform(0.0, 1.0) * (height - box_h + 1)).floor().clamp(max=height - box_h)
        left = (uniform(0.0, 1.0) * (width - box_w + 1)).floor().clamp(max=width - box_w)
        rows = torch.arange(height, device=x.device, dtype=x.dtype)
        cols = torch.arange(width, device=x.device, dtype=x.dtype)
        in_rows = ((rows >= top[:, None]) & (rows < (top + box_h)[:, None]) & apply[:, None]).to(x.dtype)
        in_cols = ((cols >= left[:, None]) & (cols < (left + box_w)[:, None])).to(x.dtype)
        # rectangle mask (B,H,W) as the outer product of the row and column masks
        inside = torch.bmm(in_rows[:, :, None], in_cols[:, None, :])[:, None]
        return x * (1.0 - inside) + erasing["value"] * inside


# ------------------------------------------------------------------------ torchvision reference
def build_per_image_transform(policy: Mapping[str, Any] | None = None, train: bool = True):
    """The same policy as standard per-image ``torchvision.transforms.v2`` transforms.

    Input: one uint8 face (H,W) numpy array or (1,H,W) tensor; output float32 (1,crop,crop) in
    [0,1]. ``train=False`` gives the eval transform (centre crop).
    """
    from torchvision.transforms import v2

    policy = parse_policy(policy)
    size = policy["crop_size"]
    steps: list = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if not train:
        return v2.Compose([*steps, v2.CenterCrop(size)])
    if (rrc := policy["random_resized_crop"]) is not None:
        steps.append(v2.RandomResizedCrop(size, scale=rrc["scale"], ratio=rrc["ratio"], antialias=True))
    else:
        steps.append(v2.RandomCrop(size, padding=policy["padding"] or None, padding_mode=policy["padding_mode"]))
    if policy["hflip_p"] > 0:
        steps.append(v2.RandomHorizontalFlip(policy["hflip_p"]))
    if (affine := policy["affine"]) is not None:
        random_affine = v2.RandomAffine(
            degrees=affine["degrees"],
            translate=affine["translate"] if any(affine["translate"]) else None,
            scale=affine["scale"],
            interpolation=v2.InterpolationMode.BILINEAR,
        )
        steps.append(v2.RandomApply([random_affine], p=affine["p"]))
    if (color := policy["color"]) is not None:
        jitter = v2.ColorJitter(brightness=color["brightness"] or None, contrast=color["contrast"] or None)
        steps.append(v2.RandomApply([jitter], p=color["p"]))
    if (erasing := policy["erasing"]) is not None:
        steps.append(
            v2.RandomErasing(p=erasing["p"], scale=erasing["scale"], ratio=erasing["ratio"], value=erasing["value"])
        )
    return v2.Compose(steps)


def build_mixup_cutmix(policy: Mapping[str, Any] | None, num_classes: int = len(CLASSES)):
    """``v2.MixUp`` / ``v2.CutMix`` (``v2.RandomChoice`` of both) or None when both alphas are 0.

    Call as ``images, soft_labels = mix(images, labels)`` on a float batch and int64 labels;
    soft labels are (B, num_classes) rows summing to 1. One mixing coefficient per batch, drawn
    from torch's global RNG (torchvision's behaviour).
    """
    from torchvision.transforms import v2

    policy = parse_policy(policy)
    mixers = []
    if policy["mixup_alpha"] > 0:
        mixers.append(v2.MixUp(alpha=policy["mixup_alpha"], num_classes=num_classes))
    if policy["cutmix_alpha"] > 0:
        mixers.append(v2.CutMix(alpha=policy["cutmix_alpha"], num_classes=num_classes))
    if not mixers:
        return None
    return mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)


class SoftTargetMix:
    """MixUp / CutMix for soft targets (B, K): torchvision's mixers take class indices only, so
    each batch goes through them with the identity labels ``0..B-1`` over B "classes"; the (B, B)
    mixing matrix they return applied to the targets mixes those exactly as the images were
    (the same images, coefficient and RNG draws as ``build_mixup_cutmix``)."""

    def __init__(self, policy: Mapping[str, Any] | None) -> None:
        self.policy = policy
        self._by_batch_size: dict[int, Any] = {}

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = images.shape[0]
        if batch not in self._by_batch_size:
            self._by_batch_size[batch] = build_mixup_cutmix(self.policy, num_classes=batch)
        images, mixing = self._by_batch_size[batch](images, torch.arange(batch, device=images.device))
        return images, mixing.to(targets.dtype) @ targets


# ----------------------------------------------------------------------------------- sampling
def sampling_weights(
    labels: np.ndarray, strategy: str = "shuffle", num_classes: int | None = None
) -> np.ndarray | None:
    """Per-sample weights for ``torch.multinomial`` (normalised to sum to 1), or None to shuffle.

    class_balanced: w_i = 1/n_c, so every class is drawn with probability 1/K (K = classes
    present). sqrt: w_i = 1/sqrt(n_c), so class c is drawn with probability
    sqrt(n_c) / sum_j sqrt(n_j). shuffle: None (uniform over samples, class frequency n_c / N).
    """
    if strategy not in SAMPLING_STRATEGIES:
        raise ValueError(f"strategy must be one of {SAMPLING_STRATEGIES}, got {strategy!r}")
    if strategy == "shuffle":
        return None
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=num_classes or 0).astype(np.float64)
    per_sample_count = counts[labels]
    weights = 1.0 / per_sample_count if strategy == "class_balanced" else 1.0 / np.sqrt(per_sample_count)
    return weights / weights.sum()
