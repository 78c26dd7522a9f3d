"""core.stages: the stage logic shared by the Kedro nodes and the GPU scripts, on tiny drawn faces."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_pipeline.core.augmentation.training_set import assemble_training_set
from fer_pipeline.core.autoencoder.network import ConvAutoencoder, save_autoencoder
from fer_pipeline.core.autoencoder.oversampling import oversample
from fer_pipeline.core.autoencoder.training import autoencoder_config, train_autoencoder
from fer_pipeline.core.class_balance.summary import class_balance_summary
from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.evaluation.dataset_identity import (
    DatasetMismatchError,
    dataset_id,
    training_data_record,
)
from fer_pipeline.core.evaluation.split import EVALUATE_KEYS, evaluate_split
from fer_pipeline.core.ingestion.dataset import INGESTION_KEYS, build_dataset
from fer_pipeline.core.predict.params import PREDICT_KEYS, check_predict_params
from fer_pipeline.core.training import job
from fer_pipeline.core.training.job import train_resnet
from fer_pipeline.core.training.loop import train_classifier
from fer_pipeline.demo import draw_face

#: Train / val / test faces per class; "test" lacks the last class (surprise).
TRAIN_COUNTS = [8, 2, 4, 12, 6, 5, 3]
VAL_COUNTS = [1] * 7
TEST_COUNTS = [1, 1, 1, 1, 1, 1, 0]
TINY_AE = {"latent_dim": 16, "base_channels": 4, "epochs": 1, "batch_size": 16, "lr": 0.002, "weight_decay": 0.0,
           "weighting": "effective_number", "beta": 0.999, "deepsmote": False, "seed": 0, "device": "cpu",
           "amp": False, "compare_unweighted": True,
           "oversampling": {"enabled": True, "fraction_of_largest": 0.5, "k": 2, "seed": 0}}


def _faces(counts, rng) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    return np.stack([draw_face(int(c), rng) for c in labels]), labels


@pytest.fixture(scope="module")
def dataset() -> dict[str, np.ndarray]:
    """A canonical dataset dict (as ingestion makes it) of drawn faces."""
    rng = np.random.default_rng(0)
    parts = {split: _faces(counts, rng) for split, counts in
             (("train", TRAIN_COUNTS), ("val", VAL_COUNTS), ("test", TEST_COUNTS))}
    return {
        "images": np.concatenate([images for images, _ in parts.values()]),
        "labels": np.concatenate([labels for _, labels in parts.values()]),
        "splits": np.concatenate([np.full(len(labels), split) for split, (_, labels) in parts.items()]),
        "source_ids": np.array([f"face_{i}" for i in range(sum(len(l) for _, l in parts.values()))]),
        "classes": np.array(CLASSES),
    }


@pytest.fixture(scope="module")
def autoencoder() -> ConvAutoencoder:
    torch.manual_seed(0)
    return ConvAutoencoder(latent_dim=16, base_channels=4).eval()


# ------------------------------------------------------------------------------ ingestion


def test_build_dataset_reads_a_fer_folder_and_applies_the_duplicate_policy(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    root = tmp_path / "fer2013"
    for c, name in enumerate(CLASSES):
        for folder, prefix, n in (("train", "Training", 3), ("test", "PublicTest", 1), ("test", "PrivateTest", 1)):
            (root / folder / name).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                Image.fromarray(draw_face(c, rng)).save(root / folder / name / f"{prefix}_{c}{k}.jpg", quality=95)
    # a test copy of a train image: leaked
    shutil.copy(root / "train" / "happy" / "Training_30.jpg", root / "test" / "happy" / "PrivateTest_99.jpg")
    params = {"source_kind": "auto", "on_error": "quarantine", "colour": "convert", "size": "convert",
              "duplicates": "keep", "val_fraction": 0.1, "test_fraction": 0.1, "seed": 0, "workers": 1}

    dataset, report = build_dataset(root, params)
    assert set(dataset) == {"images", "labels", "splits", "source_ids", "classes", "label_mode", "leaked"}
    assert str(dataset["label_mode"]) == "fer2013"
    assert dataset["images"].shape == (36, 48, 48) and dataset["images"].dtype == np.uint8
    assert dataset["labels"].dtype == np.int64 and list(dataset["classes"]) == list(CLASSES)
    assert {s: int((dataset["splits"] == s).sum()) for s in ("train", "val", "test")} == {
        "train": 21, "val": 7, "test": 8}
    assert report["read"] == report["kept"] == 36 and report["quarantined"] == 0
    assert report["duplicates"]["train_test_groups"] == 1
    assert "source_path" not in report  # the callers add their own keys
    # ingestion stores what drop_leaked would remove: the test copy, found once, from the groups
    flagged = dataset["source_ids"][dataset["leaked"]]
    assert flagged.tolist() == ["test/happy/PrivateTest_99.jpg"] and dataset["leaked"].dtype == bool

    with pytest.raises(ValueError, match=r"'required_split' \(did you mean 'required_splits'\?\)"):
        build_dataset(root, {**params, "required_split": ["train"]})
    dropped, report = build_dataset(root, {**params, "duplicates": "drop_leaked"})
    assert report["kept"] == 35 and len(dropped["labels"]) == 35
    assert not any(s.endswith("PrivateTest_99.jpg") for s in dropped["source_ids"])
    assert not dropped["leaked"].any()  # nothing left to leak


# ------------------------------------------------------------------------------ class balance


def test_class_balance_summary_numbers(dataset):
    summary, table = class_balance_summary(dataset, {"beta": 0.9})
    counts = np.array(TRAIN_COUNTS, dtype=float)
    assert summary["classes"] == list(CLASSES)
    assert summary["train_counts"] == TRAIN_COUNTS and summary["beta"] == 0.9
    assert summary["inverse_frequency"] == pytest.approx(counts.sum() / (7 * counts))
    effective = 1.0 / ((1.0 - 0.9 ** counts) / (1.0 - 0.9))
    assert summary["effective_number"] == pytest.approx(effective * 7 / effective.sum())
    assert summary["log_priors"] == pytest.approx(np.log(counts / counts.sum()))
    # largest / smallest per split; a split missing a class is infinitely imbalanced
    assert summary["imbalance_ratio"] == {"train": 6.0, "val": 1.0, "test": math.inf}
    assert len(table) == 3 * 7
    train_rows = [row for row in table if row["split"] == "train"]
    assert [row["count"] for row in train_rows] == TRAIN_COUNTS
    assert sum(row["share"] for row in train_rows) == pytest.approx(1.0)
    assert next(r for r in table if r["split"] == "test" and r["class"] == "surprise")["count"] == 0


# ------------------------------------------------------------------------------ autoencoder


def test_autoencoder_config_sets_the_stage_keys_aside_and_takes_overrides():
    cfg = autoencoder_config(TINY_AE, weighting="none")
    assert cfg.latent_dim == 16 and cfg.weighting == "none" and cfg.epochs == 1
    assert not hasattr(cfg, "oversampling") and not hasattr(cfg, "compare_unweighted")
    with pytest.raises(ValueError, match=r"'lattent_dim' \(did you mean 'latent_dim'\?\)"):
        autoencoder_config({**TINY_AE, "lattent_dim": 8})  # a typo is not silently ignored


def test_train_autoencoder_error_table_with_and_without_twin(dataset):
    run = train_autoencoder(dataset, TINY_AE)
    assert len(run.history) == 1 and len(run.twin_history) == 1
    assert list(run.errors[0]) == ["class", "n", "mse_effective_number", "mae_effective_number", "mse_none",
                                   "mae_none", "mse_change_pct"]
    assert [row["n"] for row in run.errors] == TRAIN_COUNTS  # the train split only
    for row in run.errors:
        assert row["mse_change_pct"] == pytest.approx(100.0 * (row["mse_effective_number"] / row["mse_none"] - 1))
    assert run.peak_memory_mb is None  # CPU
    assert run.device_info["device"] == "cpu" and "torch" in run.device_info
    assert (run.device_info["amp"], run.device_info["autocast"]) == ("off", "float32")  # YAML's `amp: false`

    alone = train_autoencoder(dataset, TINY_AE, twin=False)
    assert alone.twin_history is None
    assert list(alone.errors[0]) == ["class", "n", "mse_effective_number", "mae_effective_number"]
    # the same seed and data: the weighted model does not depend on whether a twin ran
    assert [r["mse_effective_number"] for r in alone.errors] == [r["mse_effective_number"] for r in run.errors]
    unweighted = train_autoencoder(dataset, {**TINY_AE, "weighting": "none"})
    assert unweighted.twin_history is None and "mse_none" in unweighted.errors[0]


def test_oversample_reaches_the_targets_from_train_faces_only(dataset, autoencoder, tmp_path):
    synthetic, info = oversample(dataset, autoencoder, TINY_AE)
    targets = np.maximum(TRAIN_COUNTS, math.ceil(0.5 * max(TRAIN_COUNTS)))  # 6 for every smaller class
    assert info["targets"] == dict(zip(CLASSES, targets.tolist()))
    assert info["added"] == dict(zip(CLASSES, (targets - TRAIN_COUNTS).tolist()))
    assert np.bincount(synthetic["labels"], minlength=7).tolist() == (targets - TRAIN_COUNTS).tolist()
    assert synthetic["images"].shape == (len(synthetic["labels"]), 48, 48) and synthetic["images"].dtype == np.uint8

    # val / test faces play no part: other faces there, and more of them, change nothing
    changed = dict(dataset)
    held_out = dataset["splits"] != "train"
    changed["images"] = dataset["images"].copy()
    changed["images"][held_out] = 255 - changed["images"][held_out]
    changed["labels"] = np.where(held_out, 1, dataset["labels"])  # every held-out face "disgust"
    again, again_info = oversample(changed, autoencoder, TINY_AE)
    assert again_info == info
    assert np.array_equal(again["images"], synthetic["images"]) and np.array_equal(again["labels"], synthetic["labels"])

    # from the model file (what the Kedro node passes); disabled: nothing added, targets = counts
    save_autoencoder(tmp_path / "ae.pt", autoencoder)
    from_file, _ = oversample(dataset, tmp_path / "ae.pt", TINY_AE)
    assert np.array_equal(from_file["images"], synthetic["images"])
    off = {**TINY_AE, "oversampling": {**TINY_AE["oversampling"], "enabled": False}}
    none, none_info = oversample(dataset, tmp_path / "missing.pt", off)  # not loaded when disabled
    assert len(none["labels"]) == 0 and none["images"].shape == (0, 48, 48)
    assert none_info["targets"] == dict(zip(CLASSES, TRAIN_COUNTS)) and set(none_info["added"].values()) == {0}


# ------------------------------------------------------------------------------ augmentation


def test_assemble_training_set_with_and_without_synthetic(dataset):
    rng = np.random.default_rng(2)
    synthetic_images, synthetic_labels = _faces([0, 4, 2, 0, 0, 1, 3], rng)
    synthetic = {"images": synthetic_images, "labels": synthetic_labels, "classes": np.array(CLASSES)}

    real, info = assemble_training_set(dataset, synthetic, {"use_synthetic": False, "sampler": "shuffle"})
    assert info["training_set_size"] == sum(TRAIN_COUNTS) and info["synthetic_faces"] == 0
    assert not real["synthetic"].any() and np.array_equal(real["labels"], dataset["labels"][dataset["splits"] == "train"])
    assert info["counts"] == dict(zip(CLASSES, TRAIN_COUNTS)) and info["sampler"] == "shuffle"
    assert list(info["sampled_share"].values()) == pytest.approx(np.array(TRAIN_COUNTS) / sum(TRAIN_COUNTS))

    mixed, info = assemble_training_set(dataset, synthetic, {"use_synthetic": True, "sampler": "shuffle"})
    total = np.array(TRAIN_COUNTS) + np.bincount(synthetic_labels, minlength=7)
    assert info["training_set_size"] == total.sum() and info["synthetic_faces"] == len(synthetic_labels) == 10
    assert mixed["synthetic"].sum() == 10 and np.array_equal(mixed["images"][mixed["synthetic"]], synthetic_images)
    assert info["counts"] == dict(zip(CLASSES, total.tolist()))
    assert mixed["labels"].dtype == np.int64 and list(mixed["classes"]) == list(CLASSES)

    _, balanced = assemble_training_set(dataset, synthetic, {"use_synthetic": True, "sampler": "class_balanced"})
    assert list(balanced["sampled_share"].values()) == pytest.approx([1 / 7] * 7)
    _, sqrt = assemble_training_set(dataset, synthetic, {"use_synthetic": True, "sampler": "sqrt"})
    assert list(sqrt["sampled_share"].values()) == pytest.approx(np.sqrt(total) / np.sqrt(total).sum())

    with pytest.raises(ValueError, match="no synthetic faces"):
        assemble_training_set(dataset, None, {"use_synthetic": True, "sampler": "shuffle"})


# ------------------------------------------------------------------------------ training


def test_train_resnet_needs_a_val_split(dataset):
    no_val = {**dataset, "splits": np.where(dataset["splits"] == "val", "test", dataset["splits"])}
    training_set, _ = assemble_training_set(no_val, None, {"use_synthetic": False, "sampler": "shuffle"})
    with pytest.raises(ValueError, match="no validation split"):
        train_resnet(training_set, no_val, {"model": {}, "config": {}},
                            {"sampler": "shuffle", "policy": None})


def test_train_resnet_returns_the_result_with_the_model_file_config(dataset):
    training_set, _ = assemble_training_set(dataset, None, {"use_synthetic": False, "sampler": "sqrt"})
    params = {"model": {"arch": "resnet18", "stem": "imagenet"},
              "config": {"epochs": 1, "batch_size": 16, "steps_per_epoch": 1, "warmup_epochs": 0, "amp": False,
                         "device": "cpu", "ema": False}}
    result = train_resnet(training_set, dataset, params, {"sampler": "sqrt", "policy": None})
    assert result.config["classes"] == list(CLASSES) and result.config["arch"] == "resnet18"
    assert result.train_config["sampler"] == "sqrt"  # the augmentation stage's sampler
    assert result.train_config["epochs"] == 1 and len(result.history) == 1
    # the model file names the dataset it was trained on, for evaluation to check
    assert result.config["training_data"] == {"dataset_id": dataset_id(dataset),
                                              "split_sizes": {"train": 40, "val": 7, "test": 6}}


# ------------------------------------------------------------------------------ evaluation


def test_evaluate_split_scores_with_and_without_the_leaked_flag(dataset):
    from fer_pipeline.core.evaluation.metrics import compute_metrics
    from fer_pipeline.core.inference import predict_logits
    from fer_pipeline.core.models import build_resnet34, model_config

    torch.manual_seed(0)
    model = build_resnet34(arch="resnet18", stem="imagenet").eval()
    config = {**model_config(arch="resnet18", stem="imagenet"), "training_data": training_data_record(dataset)}
    params = {"batch_size": 4, "device": "cpu"}
    test = dataset["splits"] == "test"
    # the flag, not the pixels, decides what is left out: flag two test faces that have no copy
    flagged = {**dataset, "leaked": test & (np.cumsum(test) <= 2)}
    scored = evaluate_split(model, config, flagged, "test", "flip", params)  # the flag is not in the id
    assert np.array_equal(scored.mask, test) and scored.logits.shape == (test.sum(), 7)
    expected = predict_logits(model, dataset["images"][test], config, tta="flip", device="cpu")
    np.testing.assert_allclose(scored.logits, expected, atol=1e-5)
    report = scored.report
    assert report["accuracy"] == compute_metrics(dataset["labels"][test], scored.logits)["accuracy"]
    assert (report["split"], report["fer_split"], report["tta"], report["n"]) == ("test", "PrivateTest", "flip", 6)
    assert report["seconds"] > 0 and report["images_per_s"] > 0
    clean = report["without_leaked_duplicates"]
    assert (clean["n"], clean["excluded"]) == (4, 2)
    assert clean["accuracy"] == compute_metrics(dataset["labels"][test][2:], scored.logits[2:])["accuracy"]

    # no flag stored (a dataset ingested before it was): found from the pixels, here none leaked
    assert evaluate_split(model, config, dataset, "test", "none", params).report[
        "without_leaked_duplicates"] is None
    for amp, precision in (("off", "float32"), ("on", "bfloat16")):  # how the logits were computed, reported
        assert evaluate_split(model, config, dataset, "test", "none", {**params, "amp": amp}).report[
            "precision"] == precision
    with pytest.raises(ValueError, match=r"'allow_dataset_mismatchh' \(did you mean 'allow_dataset_mismatch'\?\)"):
        evaluate_split(model, config, dataset, "test", "none", {**params, "allow_dataset_mismatchh": True})
    with pytest.raises(ValueError, match="split 'nope' is empty"):
        evaluate_split(model, config, dataset, "nope", "none", params)


def test_evaluate_split_refuses_a_model_trained_on_another_dataset_unless_allowed(dataset):
    from fer_pipeline.core.models import build_resnet34, model_config

    torch.manual_seed(0)
    model = build_resnet34(arch="resnet18", stem="imagenet").eval()
    other = {**dataset, "labels": np.roll(dataset["labels"], 1)}  # same faces, other labels
    config = {**model_config(arch="resnet18", stem="imagenet"), "training_data": training_data_record(other)}
    params = {"batch_size": 8, "device": "cpu"}
    with pytest.raises(DatasetMismatchError, match="evaluate.allow_dataset_mismatch=true") as raised:
        evaluate_split(model, config, dataset, "test", "none", params, model_name="the model m.pt")
    assert str(raised.value).startswith("the model m.pt was trained on dataset " + dataset_id(other))
    allowed = evaluate_split(model, config, dataset, "test", "none", {**params, "allow_dataset_mismatch": True})
    assert allowed.report["dataset_check"] == {"status": "mismatch_allowed", "dataset_id": dataset_id(dataset),
                                               "model_dataset_id": dataset_id(other)}
    same = {**config, "training_data": training_data_record(dataset)}
    assert evaluate_split(model, same, dataset, "test", "none", params).report["dataset_check"]["status"] == "match"


def test_the_stage_key_lists_are_conf_base():
    from fer_pipeline.params import load_parameters

    conf = load_parameters(Path(__file__).resolve().parents[2] / "conf" / "base")
    assert set(INGESTION_KEYS) == set(conf["ingestion"])
    assert set(EVALUATE_KEYS) == set(conf["evaluate"])
    assert set(PREDICT_KEYS) == set(conf["predict"])
    check_predict_params(conf["predict"])  # the defaults pass


@pytest.mark.parametrize(("change", "message"), [
    ({"every_n_frame": 2}, r"'every_n_frame' \(did you mean 'every_n_frames'\?\)"),
    ({"amp": "fast"}, "amp='fast': use one of auto, on, off"),
    ({"tta": "sideways"}, "predict.tta must be one of none, flip, ten_crop"),
    ({"every_n_frames": 0}, "predict.every_n_frames must be a number >= 1"),
    ({"every_n_frames": 1.5}, "predict.every_n_frames must be a whole number"),
    ({"workers": 0}, "predict.workers must be a number >= 1 or null"),
    ({"margin": -0.1}, "predict.margin must be a number >= 0"),
    ({"detect_max_side": 16}, r"predict.detect_max_side must be 0/null \(full resolution\) or >= 24"),
])
def test_predict_params_refuse_typos_and_bad_values_up_front(change, message):
    params = {"inputs": "photos", "margin": 0.2, "tta": "none", "device": "cpu", "amp": "auto"}
    check_predict_params({**params, "workers": None, "detect_max_side": None, "every_n_frames": 3})
    with pytest.raises(ValueError, match=message):
        check_predict_params({**params, **change})



# ------------------------------------------------------------------------------ FER+ label sets


def _with_votes(dataset: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``dataset`` as a FER+ fer2013-mode ingestion leaves it: votes beside the contest labels.
    Odd faces' votes agree with the label (8 of 10); even faces' say happy 6, the label 4; every
    third face has no image name (not a face)."""
    from tests.core.ingestion.ferplus_files import column_of, vote_row

    votes = []
    for i, label in enumerate(dataset["labels"].tolist()):
        if i % 2:
            votes.append(vote_row(**{column_of(label): 8, "unknown": 2}))
        elif label == CLASSES.index("happy"):
            votes.append(vote_row(happiness=10))
        else:
            votes.append(vote_row(happiness=6, **{column_of(label): 4}))
    n = len(dataset["labels"])
    return {**dataset, "label_mode": np.array("fer2013"), "ferplus_votes": np.array(votes, np.int16),
            "ferplus_named": np.arange(n) % 3 != 0, "fer2013_labels": dataset["labels"].copy()}


def test_evaluate_split_scores_the_same_logits_against_ferplus_majority(dataset):
    from fer_pipeline.core.evaluation.metrics import compute_metrics
    from fer_pipeline.core.models import build_resnet34, model_config

    torch.manual_seed(0)
    model = build_resnet34(arch="resnet18", stem="imagenet").eval()
    voted = _with_votes(dataset)
    config = {**model_config(arch="resnet18", stem="imagenet"), "training_data": training_data_record(voted)}
    params = {"batch_size": 8, "device": "cpu", "label_sets": "auto"}
    scored = evaluate_split(model, config, voted, "val", "none", params)
    assert list(scored.report["label_sets"]) == ["ferplus_majority"]  # auto: not the dataset's own fer2013
    majority = scored.report["label_sets"]["ferplus_majority"]
    index = np.flatnonzero(scored.mask)
    named = voted["ferplus_named"][index]
    expected = np.where(index % 2 == 1, voted["labels"][index], CLASSES.index("happy"))
    assert (majority["n"], majority["excluded"]) == (named.sum(), (~named).sum())
    truth = compute_metrics(expected[named], scored.logits[named])
    assert majority["accuracy"] == pytest.approx(truth["accuracy"])
    assert majority["macro_f1"] == pytest.approx(truth["macro_f1"])
    assert majority["confusion"] == truth["confusion"]
    agree = (expected[named] == voted["labels"][index][named]).mean()
    assert majority["agreement_with_dataset_labels"] == pytest.approx(agree) and agree < 1
    # asked for explicitly, and refused where the dataset has no votes
    both = evaluate_split(model, config, voted, "val", "none", {**params, "label_sets": ["fer2013",
                                                                                                 "ferplus_plurality"]})
    assert list(both.report["label_sets"]) == ["ferplus_plurality"]  # fer2013 is the dataset's own
    assert evaluate_split(model, config, voted, "val", "none", {**params, "label_sets": []}).report[
        "label_sets"] == {}
    plain_config = {**config, "training_data": training_data_record(dataset)}
    assert evaluate_split(model, plain_config, dataset, "val", "none", params).report["label_sets"] == {}
    with pytest.raises(ValueError, match="needs the FER\\+ votes"):
        evaluate_split(model, plain_config, dataset, "val", "none",
                              {**params, "label_sets": ["ferplus_majority"]})
    with pytest.raises(ValueError, match="unknown label set"):
        evaluate_split(model, config, voted, "val", "none", {**params, "label_sets": ["ferplus_majoirty"]})


def test_soft_targets_reach_the_training_set_and_the_trainer(dataset, monkeypatch):
    rng = np.random.default_rng(3)
    targets = rng.dirichlet(np.ones(7), len(dataset["labels"])).astype(np.float32)
    soft = {**dataset, "labels": targets.argmax(1), "targets": targets, "label_mode": np.array("ferplus_probability")}
    synthetic_images, synthetic_labels = _faces([0, 2, 0, 0, 0, 1, 0], rng)
    synthetic = {"images": synthetic_images, "labels": synthetic_labels, "classes": np.array(CLASSES)}
    training_set, _ = assemble_training_set(soft, synthetic, {"use_synthetic": True, "sampler": "shuffle"})
    train = soft["splits"] == "train"
    np.testing.assert_array_equal(training_set["targets"][:train.sum()], targets[train])
    np.testing.assert_array_equal(training_set["targets"][train.sum():], np.eye(7)[synthetic_labels])
    params = {"model": {"arch": "resnet18", "stem": "imagenet"},
              "config": {"epochs": 1, "batch_size": 16, "steps_per_epoch": 1, "warmup_epochs": 0, "amp": False,
                         "device": "cpu", "ema": False, "loss": "focal"}}
    given = {}
    trainer = train_classifier

    def spy(*args, **kwargs):
        given["targets"], given["counts"] = args[1], args[4]
        return trainer(*args, **kwargs)

    monkeypatch.setattr(job, "train_classifier", spy)
    result = train_resnet(training_set, soft, params, {"sampler": "shuffle", "policy": None})
    assert np.isfinite(result.history[0]["train_loss"])
    assert given["targets"] is training_set["targets"]
    # the class counts (weights, priors, margins) count each face once, at its most voted class
    np.testing.assert_array_equal(given["counts"], np.bincount(training_set["targets"].argmax(1), minlength=7))
