"""Tests for core.autoencoder: model shapes, weighted loss, training, oversampling, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fer_pipeline.core.autoencoder.network import ConvAutoencoder, load_autoencoder, save_autoencoder
from fer_pipeline.core.autoencoder.oversampling import latent_smote, oversampling_targets
from fer_pipeline.core.autoencoder.training import (
    AutoencoderConfig,
    fit_autoencoder,
    per_class_reconstruction_error,
    reconstruct,
    weighted_reconstruction_loss,
)
from fer_pipeline.core.class_balance.weights import class_weights
from fer_pipeline.core.classes import CLASSES

TINY = {"latent_dim": 16, "base_channels": 4}
#: The training settings these tests were written for: unweighted, light weight decay.
PLAIN = {"weighting": "none", "weight_decay": 1e-5, "deepsmote_weight": 1.0}


def blob_faces(n: int, seed: int = 0, num_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random blobs (learnable structure), labels cycling over ``num_classes``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:48]
    centres = rng.uniform(12, 36, size=(n, 2))
    radius = rng.uniform(6, 14, size=n)
    dist2 = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    images = (255 * np.exp(-dist2 / (2 * radius[:, None, None] ** 2))).astype(np.uint8)
    return images, np.arange(n, dtype=np.int64) % num_classes


def tiny_model(seed: int = 0) -> ConvAutoencoder:
    torch.manual_seed(seed)
    return ConvAutoencoder(**TINY).eval()


@pytest.fixture(scope="module")
def trained_model() -> ConvAutoencoder:
    """Briefly trained, so decoded faces depend visibly on the latent (an untrained decoder is ~flat)."""
    images, labels = blob_faces(96, seed=11)
    cfg = AutoencoderConfig(**TINY, **PLAIN, epochs=2, batch_size=16, lr=5e-3, device="cpu", seed=0)
    return fit_autoencoder(images, labels, cfg, progress=False)[0]


# --------------------------------------------------------------------------------------- model
def test_encoder_decoder_shapes_and_range():
    model = tiny_model()
    x = torch.rand(5, 1, 48, 48)
    z = model.encode(x)
    assert z.shape == (5, 16) and z.dtype == torch.float32
    decoded = model.decode(z)
    assert decoded.shape == (5, 1, 48, 48)
    assert decoded.min() >= 0 and decoded.max() <= 1
    recon, z2 = model(x)
    assert recon.shape == x.shape and torch.allclose(z, z2)
    assert model.config() == {"latent_dim": 16, "base_channels": 4}
    assert ConvAutoencoder(**model.config()).latent_dim == 16


# ---------------------------------------------------------------------------------------- loss
def test_weighted_loss_matches_hand_computed_value():
    recon = torch.zeros(3, 1, 48, 48)
    target = torch.stack([torch.full((1, 48, 48), v) for v in (0.5, 1.0, 0.2)])
    labels = torch.tensor([0, 1, 0])
    # per-sample MSE: 0.25, 1.0, 0.04; weights: class 0 -> 1, class 1 -> 3
    weights = torch.tensor([1.0, 3.0])
    expected = (1 * 0.25 + 3 * 1.0 + 1 * 0.04) / (1 + 3 + 1)
    loss = weighted_reconstruction_loss(recon, target, labels, weights)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # unweighted = plain mean; scaling all weights changes nothing
    assert weighted_reconstruction_loss(recon, target, labels, None).item() == pytest.approx((0.25 + 1 + 0.04) / 3)
    assert weighted_reconstruction_loss(recon, target, labels, 10 * weights).item() == pytest.approx(expected, rel=1e-6)


def test_inverse_frequency_weights_upweight_the_rare_class():
    # class 1 is rare (1 of 4); its error should pull the loss toward its own MSE
    counts = np.array([3, 1])
    weights = torch.as_tensor(class_weights(counts, "inverse_frequency"), dtype=torch.float32)  # [2/3, 2]
    recon = torch.zeros(4, 1, 48, 48)
    target = torch.zeros(4, 1, 48, 48)
    target[3] = 1.0  # only the rare sample is wrong: MSE 1
    labels = torch.tensor([0, 0, 0, 1])
    weighted = weighted_reconstruction_loss(recon, target, labels, weights).item()
    assert weighted == pytest.approx(2.0 / (3 * 2 / 3 + 2.0))  # = 0.5: both classes count equally
    assert weighted > weighted_reconstruction_loss(recon, target, labels, None).item()  # 0.25


# ------------------------------------------------------------------------------------ training
def test_two_epochs_reduce_the_loss_and_report_per_class_metrics():
    images, labels = blob_faces(200)
    calls = []
    cfg = AutoencoderConfig(**TINY, **PLAIN, epochs=2, batch_size=32, lr=3e-3, device="cpu", seed=1)
    model, history = fit_autoencoder(images, labels, cfg, on_epoch=lambda e, m: calls.append((e, m)), progress=False)
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["loss"] < history[0]["loss"]
    assert [e for e, _ in calls] == [1, 2] and calls[1][1]["loss"] == history[1]["loss"]
    for name in CLASSES[:3]:
        assert f"recon_mse_{name}" in history[0]
    assert f"recon_mse_{CLASSES[3]}" not in history[0]  # absent classes are not reported
    assert history[0]["images_per_s"] > 0 and not model.training


def test_training_is_reproducible_from_seed_and_supports_weighting_and_deepsmote():
    images, labels = blob_faces(40)
    labels[:30] = 0  # imbalanced
    cfg = AutoencoderConfig(
        **TINY, **{**PLAIN, "weighting": "effective_number"}, epochs=1, batch_size=16, device="cpu", seed=3, beta=0.99,
        deepsmote=True, deepsmote_class_batch=8,
    )
    model_a, hist_a = fit_autoencoder(images, labels, cfg, progress=False)
    model_b, hist_b = fit_autoencoder(images, labels, cfg, progress=False)
    assert np.isfinite(hist_a[0]["loss"]) and hist_a[0]["loss"] == hist_b[0]["loss"]
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), name
    other, _ = fit_autoencoder(images, labels, AutoencoderConfig(**{**cfg.to_dict(), "seed": 4}), progress=False)
    assert not torch.equal(other.decoder[-2].weight, model_a.decoder[-2].weight)


def test_config_rejects_unknown_weighting():
    with pytest.raises(ValueError):
        AutoencoderConfig(weighting="focal")


def test_config_from_dict_rejects_unknown_keys_with_a_hint():
    with pytest.raises(ValueError, match=r"unknown autoencoder parameter.*'latent_dims' \(did you mean 'latent_dim'\?\)"):
        AutoencoderConfig.from_dict({"latent_dims": 64})
    assert AutoencoderConfig.from_dict({"epochs": 2, "weighting": "none"}) == AutoencoderConfig(epochs=2, weighting="none")


def test_defaults_are_the_pipelines_parameters():
    """One source of defaults: conf/base lists every field with the dataclass's default (beside
    the stage's own keys: the unweighted twin and the oversampling)."""
    from pathlib import Path

    import yaml

    conf = yaml.safe_load((Path(__file__).resolve().parents[3] / "conf" / "base" / "parameters_autoencoder.yml")
                          .read_text())["autoencoder"]
    stage_keys = {"compare_unweighted", "oversampling"}
    assert {k: v for k, v in conf.items() if k not in stage_keys} == AutoencoderConfig().to_dict()


def test_per_class_reconstruction_error_rows():
    model = tiny_model()
    images, labels = blob_faces(30, num_classes=2)
    rows = per_class_reconstruction_error(model, images, labels, classes=CLASSES, batch_size=7)
    assert [r["class"] for r in rows] == list(CLASSES)
    assert [r["n"] for r in rows[:3]] == [15, 15, 0]
    recon = reconstruct(model, images[labels == 1]).astype(np.float64) / 255
    manual_mae = np.abs(recon - images[labels == 1] / 255).mean()
    assert rows[1]["mae"] == pytest.approx(manual_mae, abs=2e-3)  # uint8 rounding of recon
    assert rows[0]["mse"] > 0 and np.isnan(rows[2]["mse"])


# --------------------------------------------------------------------------------- persistence
def test_save_load_round_trip_with_weights_only(tmp_path):
    model = tiny_model(seed=5)
    path = tmp_path / "models" / "ae.pt"
    save_autoencoder(path, model)
    payload = torch.load(path, weights_only=True)
    assert payload["config"] == model.config()
    loaded = load_autoencoder(path)
    x = torch.rand(3, 1, 48, 48)
    with torch.no_grad():
        assert torch.equal(model(x)[0], loaded(x)[0])


# -------------------------------------------------------------------------------- oversampling
def test_oversampling_targets():
    np.testing.assert_array_equal(oversampling_targets([10, 2, 7], 0.5), [10, 5, 7])
    np.testing.assert_array_equal(oversampling_targets([10, 2, 7], 1.0), [10, 10, 10])
    np.testing.assert_array_equal(oversampling_targets([9, 1], 0.5), [9, 5])  # ceil(4.5)
    np.testing.assert_array_equal(oversampling_targets([10, 2, 7], 0.0), [10, 2, 7])


def test_latent_smote_reaches_targets_with_valid_uint8_and_is_reproducible(trained_model):
    model = trained_model
    images, labels = blob_faces(40, num_classes=4)
    labels[:] = np.repeat([0, 1, 2, 3], [25, 8, 6, 1])
    targets = oversampling_targets(np.bincount(labels), 0.6)  # [25, 15, 15, 15]
    synth, synth_labels = latent_smote(model, images, labels, targets, k=3, seed=7)
    assert synth.dtype == np.uint8 and synth.shape[1:] == (48, 48)
    assert synth_labels.dtype == np.int64 and len(synth) == len(synth_labels)
    np.testing.assert_array_equal(np.bincount(labels, minlength=4) + np.bincount(synth_labels, minlength=4), targets)
    again, again_labels = latent_smote(model, images, labels, targets, k=3, seed=7)
    np.testing.assert_array_equal(synth, again)
    np.testing.assert_array_equal(synth_labels, again_labels)
    other, _ = latent_smote(model, images, labels, targets, k=3, seed=8)
    assert not np.array_equal(synth, other)


def test_latent_smote_uses_only_each_class_own_images(trained_model):
    model = trained_model
    images, labels = blob_faces(30, num_classes=3)  # 10 per class
    targets = np.array([10, 14, 13])
    synth, synth_labels = latent_smote(model, images, labels, targets, k=2, seed=0)
    changed = images.copy()
    changed[labels == 0] = 255 - changed[labels == 0]  # class 0 needs nothing
    changed[labels == 2] = np.roll(changed[labels == 2], 5, axis=2)  # class 2 changes
    synth2, synth_labels2 = latent_smote(model, changed, labels, targets, k=2, seed=0)
    np.testing.assert_array_equal(synth_labels, synth_labels2)
    np.testing.assert_array_equal(synth[synth_labels == 1], synth2[synth_labels2 == 1])
    assert not np.array_equal(synth[synth_labels == 2], synth2[synth_labels2 == 2])


class PixelAutoencoder(nn.Module):
    """Identity 'autoencoder': latent = pixels, so latent SMOTE = pixel-space SMOTE."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the model a device

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z.view(-1, 1, 48, 48)


def test_latent_smote_interpolates_between_nearest_same_class_neighbours():
    values = np.array([0, 10, 100, 110, 250, 250], dtype=np.uint8)  # class 0: 4 images, class 1: 2
    images = np.repeat(values, 48 * 48).reshape(-1, 48, 48)
    labels = np.array([0, 0, 0, 0, 1, 1])
    synth, synth_labels = latent_smote(PixelAutoencoder(), images, labels, targets=[40, 2], k=1, seed=0)
    assert len(synth) == 36 and set(synth_labels) == {0}
    per_image = synth.reshape(len(synth), -1)
    assert (per_image == per_image[:, :1]).all()  # constant images stay constant
    level = per_image[:, 0].astype(int)
    # the nearest neighbour of 0 is 10 and of 100 is 110: no sample falls between the two pairs
    assert (((level >= 0) & (level <= 10)) | ((level >= 100) & (level <= 110))).all()
    assert len(np.unique(level)) > 4  # real interpolation, not copies


def test_latent_smote_single_sample_class_and_small_k():
    images, labels = blob_faces(12, num_classes=3)
    labels[:] = np.repeat([0, 1, 2], [9, 1, 2])
    synth, synth_labels = latent_smote(tiny_model(), images, labels, targets=[9, 4, 5], k=5, seed=1)
    np.testing.assert_array_equal(np.bincount(synth_labels, minlength=3), [0, 3, 3])
    with pytest.raises(ValueError):
        latent_smote(tiny_model(), images, labels, targets=[9, 1, 2, 3])  # class 3 has no image


def test_deepsmote_penalty_uses_one_class_per_step():
    from fer_pipeline.core.autoencoder.training import _deepsmote_penalty

    class Recorder(PixelAutoencoder):
        def encode(self, x):
            self.seen.append(x.unique())
            return super().encode(x)

    labels = torch.tensor([0] * 20 + [1] * 3 + [2] * 7)
    images = (labels * 100).to(torch.uint8)[:, None, None].expand(-1, 48, 48).contiguous()
    model = Recorder()
    model.seen = []
    class_indices = [torch.nonzero(labels == c).flatten() for c in range(3)]
    gen, class_gen = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    penalties = [_deepsmote_penalty(model, images, class_indices, 8, gen, class_gen) for _ in range(30)]
    assert all(len(values) == 1 for values in model.seen)  # every step: images of a single class
    assert {round(float(v) * 255) for values in model.seen for v in values} == {0, 100, 200}
    assert max(float(p) for p in penalties) < 1e-10  # a perfect autoencoder pays no penalty
