"""core.evaluation.split: scoring one split of the dataset, on tiny drawn faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.evaluation.dataset_identity import (
    DatasetMismatchError,
    dataset_id,
    training_data_record,
)
from fer_pipeline.core.evaluation.split import EVALUATE_KEYS, evaluate_split
from tests.core.stage_data import stage_dataset


@pytest.fixture(scope="module")
def dataset() -> dict[str, np.ndarray]:
    """A canonical dataset dict (as ingestion makes it) of drawn faces."""
    return stage_dataset()


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


def test_the_evaluate_key_list_is_conf_base():
    from fer_pipeline.params import load_parameters

    conf = load_parameters(Path(__file__).resolve().parents[3] / "conf" / "base")
    assert set(EVALUATE_KEYS) == set(conf["evaluate"])


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
