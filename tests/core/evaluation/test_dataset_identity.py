"""core.evaluation.dataset_identity: what identifies a dataset, and the check evaluation makes with it."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.evaluation.dataset_identity import (
    DatasetMismatchError,
    check_trained_on,
    dataset_id,
    training_data_record,
)


@pytest.fixture
def dataset() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "images": rng.integers(0, 256, (6, 48, 48), dtype=np.uint8),
        "labels": np.array([0, 1, 2, 3, 4, 5]),
        "splits": np.array(["train", "train", "train", "val", "test", "test"]),
        "source_ids": np.array([f"train/x/Training_{i}.jpg" for i in range(6)]),
        "classes": np.array(CLASSES),
    }


def test_the_id_follows_faces_labels_and_splits_not_pixels(dataset):
    base = dataset_id(dataset)
    assert len(base) == 16 and base == dataset_id({k: v.copy() for k, v in dataset.items()})
    # another decoder's rounding of the same JPEGs is the same dataset
    assert dataset_id({**dataset, "images": dataset["images"] // 2}) == base
    changed = {
        "labels": np.array([1, 0, 2, 3, 4, 5]),
        "splits": np.array(["train", "train", "val", "val", "test", "test"]),
        "source_ids": np.array([f"train/x/Training_{i}.jpg" for i in range(1, 7)]),
        "classes": np.array([*CLASSES[:-1], "contempt"]),
    }
    ids = {key: dataset_id({**dataset, key: value}) for key, value in changed.items()}
    assert base not in ids.values() and len(set(ids.values())) == len(ids)
    fewer = {key: value[:5] if key != "classes" else value for key, value in dataset.items()}
    assert dataset_id(fewer) != base
    # a value cannot shift into its neighbour: "a" + "bc" is not "ab" + "c"
    two = {**fewer, "source_ids": np.array(["a", "bc", "d", "e", "f"])}
    assert dataset_id(two) != dataset_id({**two, "source_ids": np.array(["ab", "c", "d", "e", "f"])})


def test_record_and_check(dataset, caplog):
    record = training_data_record(dataset)
    assert record == {"dataset_id": dataset_id(dataset), "split_sizes": {"train": 3, "val": 1, "test": 2}}
    assert check_trained_on({"training_data": record}, dataset)["status"] == "match"

    demo = {**dataset, "labels": dataset["labels"][::-1].copy()}
    config = {"training_data": training_data_record(demo)}
    with pytest.raises(DatasetMismatchError) as raised:
        check_trained_on(config, dataset, model_name="the model data/06_models/resnet34.pt")
    message = str(raised.value)
    assert message.startswith(f"the model data/06_models/resnet34.pt was trained on dataset {dataset_id(demo)} "
                              "(3 train, 1 val, 2 test faces)")
    assert f"the dataset to score is dataset {dataset_id(dataset)}" in message
    assert "--params evaluate.allow_dataset_mismatch=true" in message

    with caplog.at_level(logging.WARNING, logger="fer_pipeline.core.evaluation.dataset_identity"):
        outcome = check_trained_on(config, dataset, allow_mismatch=True)
    assert outcome == {"status": "mismatch_allowed", "dataset_id": dataset_id(dataset),
                       "model_dataset_id": dataset_id(demo)}
    assert "scoring it anyway" in caplog.text

    # an older model file records nothing: refused too (the old demo model in a real run's place)
    with pytest.raises(DatasetMismatchError, match="records no training dataset.*allow_dataset_mismatch=true"):
        check_trained_on({"arch": "resnet34"}, dataset)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fer_pipeline.core.evaluation.dataset_identity"):
        assert check_trained_on({"arch": "resnet34"}, dataset, allow_mismatch=True)["status"] == "unrecorded_allowed"
    assert "records no training dataset" in caplog.text
