"""Training loop: config validation, model selection on val, flags, resume after a kill."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fer_pipeline.core.models import load_model
from fer_pipeline.core.training import loop as train_module
from fer_pipeline.core.training.config import PIPELINE_CHOSEN_FIELDS, TrainConfig
from fer_pipeline.core.training.loop import evaluate, train_classifier
from tests.core.tiny_faces import tiny_faces

REPO = Path(__file__).resolve().parents[3]

TIMING_KEYS = ("epoch_seconds", "images_per_s")


pytestmark = pytest.mark.usefixtures("one_torch_thread")
#: The smallest model the builder makes: fast enough on a 2-core CPU.
TINY_MODEL = {"arch": "resnet18", "stem": "imagenet"}


@pytest.fixture(scope="module")
def faces():
    return tiny_faces(16, 8)


def run(faces, **overrides):
    on_epoch = overrides.pop("on_epoch", None)
    model_cfg = overrides.pop("model_cfg", TINY_MODEL)
    policy = overrides.pop("policy", None)
    params = {"epochs": 2, "batch_size": 8, "lr": 0.02, "seed": 3, "warmup_epochs": 0, "amp": False, "ema": False,
              "label_smoothing": 0.0, **overrides}
    return train_classifier(*faces, model_cfg, TrainConfig.from_dict(params), policy, on_epoch=on_epoch, progress=False)


def without_timing(history):
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in history]


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ---- configuration --------------------------------------------------------------------------


def test_train_config_rejects_unknown_keys_with_a_hint():
    with pytest.raises(ValueError, match=r"unknown training parameter.*'learning_rate'"):
        TrainConfig.from_dict({"epochs": 3, "learning_rate": 0.1})
    with pytest.raises(ValueError, match=r"'ema_decy' \(did you mean 'ema_decay'\?\)"):
        TrainConfig.from_dict({"ema_decy": 0.99})
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig.from_dict({"optimizer": "lamb"})
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="hinge")
    assert TrainConfig.from_dict({"epochs": 3, "loss": "ldam_drw"}).epochs == 3
    assert TrainConfig.from_dict(TrainConfig(ema=True).to_dict()) == TrainConfig(ema=True)


def test_defaults_are_the_pipelines_parameters():
    """One source of defaults: conf/base lists every field, with the dataclass's default (the
    sampler is the augmentation stage's; PIPELINE_CHOSEN_FIELDS are set by conf for its schedule)."""
    import dataclasses

    import yaml

    conf = yaml.safe_load((REPO / "conf" / "base" / "parameters_training.yml").read_text())["training"]["config"]
    augmentation = yaml.safe_load((REPO / "conf" / "base" / "parameters_augmentation.yml").read_text())
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(conf) | {"sampler"} == fields
    defaults = TrainConfig().to_dict()
    assert {k: v for k, v in conf.items() if k not in PIPELINE_CHOSEN_FIELDS} == {
        k: defaults[k] for k in conf if k not in PIPELINE_CHOSEN_FIELDS}
    assert augmentation["augmentation"]["sampler"] == defaults["sampler"]
    # the two the pipeline chooses: where to write, and DRW at a fixed epoch of its 60
    assert defaults["checkpoint_dir"] is None and defaults["drw_epoch"] is None
    assert conf["checkpoint_dir"] and conf["drw_epoch"] < conf["epochs"]


# ---- model selection on val -----------------------------------------------------------------


def scripted_evaluation(monkeypatch, scores: dict[str, list[float]]):
    """Replace validation by scripted metrics; remember the weights evaluated at each epoch."""
    evaluated_states = []

    def fake_evaluate(model, images, labels, *args, **kwargs):
        epoch = len(evaluated_states)
        evaluated_states.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"loss": 1.0, **{name: values[epoch] for name, values in scores.items()}}

    monkeypatch.setattr(train_module, "evaluate", fake_evaluate)
    return evaluated_states


SCORES = {"macro_f1": [0.2, 0.5, 0.3], "accuracy": [0.9, 0.1, 0.2], "balanced_accuracy": [0.1, 0.2, 0.3]}


@pytest.mark.parametrize("select_metric,best", [("macro_f1", 1), ("accuracy", 0), ("balanced_accuracy", 2)])
def test_selection_by_validation_metric_returns_those_weights(faces, monkeypatch, select_metric, best):
    evaluated = scripted_evaluation(monkeypatch, SCORES)
    result = run(faces, epochs=3, select_metric=select_metric, steps_per_epoch=1)
    assert result.best_epoch == best
    assert result.best_metrics[select_metric] == SCORES[select_metric][best]
    assert_same_state({k: v.cpu() for k, v in result.model.state_dict().items()}, evaluated[best])
    assert not result.model.training


def test_early_stopping(faces, monkeypatch):
    scripted_evaluation(monkeypatch, {"macro_f1": [0.5, 0.6, 0.4, 0.3, 0.9], "accuracy": [0] * 5,
                                      "balanced_accuracy": [0] * 5})
    result = run(faces, epochs=5, early_stopping_patience=2, steps_per_epoch=1)
    assert [row["epoch"] for row in result.history] == [0, 1, 2, 3]  # epoch 4's 0.9 never seen
    assert result.stopped_early and result.best_epoch == 1


# ---- real (tiny) training runs -----------------------------------------------------------------


def test_training_run_history_metrics_and_saved_best(faces, tmp_path):
    seen = []
    result = run(faces, epochs=3, checkpoint_dir=str(tmp_path), on_epoch=lambda e, m: seen.append((e, m)))
    assert [e for e, _ in seen] == [0, 1, 2]
    expected_keys = {"epoch", "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "val_balanced_accuracy",
                     "lr", "epoch_seconds", "images_per_s"}
    assert set(result.history[0]) == expected_keys
    assert result.history[0]["lr"] > result.history[-1]["lr"]  # cosine decay
    assert result.config["input_size"] == 16 and result.config["arch"] == "resnet18"
    # the returned model reproduces the best epoch's validation metrics
    x_val = torch.from_numpy(faces[2])
    again = evaluate(result.model.cpu(), x_val, torch.from_numpy(faces[3]), input_size=16)
    assert again["macro_f1"] == pytest.approx(result.best_metrics["macro_f1"])
    assert again["loss"] == pytest.approx(result.best_metrics["loss"], rel=1e-4)
    # ... and equals the evaluation stage's inference + metrics on the same faces
    from fer_pipeline.core.evaluation.metrics import compute_metrics
    from fer_pipeline.core.inference import predict_logits

    logits = predict_logits(result.model, faces[2], result.config, device="cpu", channels_last=False)
    assert compute_metrics(faces[3], logits)["macro_f1"] == pytest.approx(result.best_metrics["macro_f1"])
    # best.pt is a regular model file
    model, config = load_model(tmp_path / "best.pt")
    assert config == result.config
    with torch.no_grad():
        x = torch.rand(2, 1, 16, 16)
        assert torch.equal(model(x), result.model(x))


def test_flags_ema_aux_ldam_adamw_onecycle_forced_amp(faces):
    result = run(
        faces, epochs=2, ema=True, ema_decay=0.5, aux_weight=0.3, loss="ldam_drw", drw_epoch=1,
        optimizer="adamw", lr=1e-3, schedule="onecycle", amp="on", label_smoothing=0.1,
        channels_last=False, model_cfg={**TINY_MODEL, "aux_reconstruction": True, "dropout": 0.1},
    )
    assert result.config["classifier"] == "cosine"  # LDAM pairs with a normalised head
    assert result.config["aux_reconstruction"] is True
    assert all(np.isfinite(row["train_loss"]) and row["train_recon_loss"] > 0 for row in result.history)
    with pytest.raises(ValueError, match="aux_reconstruction"):
        run(faces, epochs=1, aux_weight=0.3)


@pytest.mark.parametrize(("units", "precision", "channels_last"),
                         [("avx512_bf16", "bfloat16", True), (None, "float32", False)])
def test_amp_auto_trains_in_bf16_only_where_the_cpu_has_bf16_units(faces, monkeypatch, units, precision,
                                                                    channels_last):
    from fer_pipeline.core import device as device_module

    monkeypatch.setattr(device_module, "cpu_bf16_units", lambda: units)
    seen = []
    real_autocast = torch.autocast

    def recording_autocast(device_type, dtype=None, enabled=True, **kwargs):
        seen.append((device_type, dtype if enabled else None))
        return real_autocast(device_type, dtype=dtype, enabled=enabled, **kwargs)

    monkeypatch.setattr(torch, "autocast", recording_autocast)
    result = run(faces, epochs=1, amp="auto")
    assert result.device_info["autocast"] == precision and result.device_info["amp"] == "auto"
    # channels_last on CPU only with bf16 (NHWC is what oneDNN's bf16 kernels want)
    assert result.device_info["channels_last"] is channels_last
    assert set(seen) == {("cpu", torch.bfloat16 if units else None)}  # training steps and validation alike
    assert np.isfinite(result.history[0]["train_loss"]) and result.history[0]["val_loss"] > 0


def test_amp_off_is_float32_even_on_a_bf16_cpu(faces, monkeypatch):
    from fer_pipeline.core import device as device_module

    monkeypatch.setattr(device_module, "cpu_bf16_units", lambda: "amx_bf16")
    assert run(faces, epochs=1, amp="off").device_info["autocast"] == "float32"
    assert TrainConfig.from_dict({"amp": True}).amp == "on"  # YAML's bare `on`
    with pytest.raises(ValueError, match="auto, on, off"):
        TrainConfig.from_dict({"amp": "force"})


#: Random crop, flip, affine, colour, erasing and mixup: every RNG stream the loop uses.
POLICY = {"crop_size": 12, "padding": 2, "hflip_p": 0.5, "affine": {"p": 0.5, "degrees": 10},
          "color": {"p": 0.5, "brightness": 0.2, "contrast": 0.2}, "erasing": {"p": 0.5}, "mixup_alpha": 0.4}


def test_augmentation_policy_sets_input_size_and_sampler_runs(faces):
    result = run(faces, epochs=1, policy=POLICY, sampler="class_balanced", loss="cb_focal")
    assert result.config["input_size"] == 12
    assert np.isfinite(result.history[0]["train_loss"])
    with torch.no_grad():
        assert result.model(torch.rand(2, 1, 12, 12)).shape == (2, 7)


def soft(faces, confidence=0.7):
    """The faces with (N, 7) soft targets: ``confidence`` on the label, the rest on the next class."""
    labels = faces[1]
    targets = np.eye(7, dtype=np.float32)[labels] * confidence + np.eye(7, dtype=np.float32)[(labels + 1) % 7] * (
        1 - confidence)
    return (faces[0], targets, *faces[2:])


def test_soft_targets_train_with_mixing_sampler_and_the_soft_losses(faces):
    for loss in ("ce", "weighted_ce", "focal", "logit_adjusted", "ldam_drw"):
        result = run(soft(faces), epochs=1, policy=POLICY, sampler="class_balanced", loss=loss)
        assert np.isfinite(result.history[0]["train_loss"]), loss
    # one-hot soft targets train exactly as the class indices (same loss, same draws)
    hard = run(faces, epochs=1, label_smoothing=0.1)
    one_hot = run(soft(faces, confidence=1.0), epochs=1, label_smoothing=0.1)
    assert one_hot.history[0]["train_loss"] == pytest.approx(hard.history[0]["train_loss"], rel=1e-5)
    # a target mass on the wrong class changes what is learned
    assert run(soft(faces, 0.6), epochs=1).history[0]["train_loss"] != pytest.approx(hard.history[0]["train_loss"])


def test_malformed_soft_targets_are_refused(faces):
    images, targets, *rest = soft(faces)
    with pytest.raises(ValueError, match="summing to 1"):
        run((images, targets * 2, *rest), epochs=1)
    with pytest.raises(ValueError, match="6 columns for 7 classes"):
        run((images, targets[:, :6] / targets[:, :6].sum(1, keepdims=True), *rest), epochs=1)


@pytest.mark.parametrize("targets", ["labels", "soft"])
def test_resume_after_kill_equals_uninterrupted_run(faces, tmp_path, targets):
    faces = soft(faces) if targets == "soft" else faces  # FER+ vote distributions resume alike
    settings = {"epochs": 3, "deterministic": True, "ema": True, "ema_decay": 0.5, "warmup_epochs": 1,
                "sampler": "sqrt", "policy": POLICY, "model_cfg": {**TINY_MODEL, "dropout": 0.3}}
    reference = run(faces, **settings)

    class Killed(Exception):
        pass

    def kill_after_epoch_1(epoch, metrics):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        run(faces, checkpoint_dir=str(tmp_path), on_epoch=kill_after_epoch_1, **settings)
    assert not torch.are_deterministic_algorithms_enabled()  # global flag restored after the crash
    # a different configuration does not resume from this checkpoint
    assert (tmp_path / "last.pt").exists()
    resumed = run(faces, checkpoint_dir=str(tmp_path), **settings)

    assert resumed.resumed_from_epoch == 2
    assert without_timing(resumed.history) == without_timing(reference.history)
    assert resumed.best_epoch == reference.best_epoch
    assert_same_state(resumed.model.state_dict(), reference.model.state_dict())
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["epoch"] == 2


def test_checkpoint_of_another_config_is_not_resumed(faces, tmp_path):
    run(faces, epochs=1, checkpoint_dir=str(tmp_path))
    again = run(faces, epochs=1, checkpoint_dir=str(tmp_path))
    assert again.resumed_from_epoch == 1 and len(again.history) == 1  # finished run: nothing to redo
    other = run(faces, epochs=1, lr=0.05, checkpoint_dir=str(tmp_path))
    assert other.resumed_from_epoch is None
