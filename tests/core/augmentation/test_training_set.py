"""core.augmentation.training_set: the training set the augmentation stage assembles, on tiny drawn faces."""

from __future__ import annotations

import numpy as np
import pytest

from fer_pipeline.core.augmentation.training_set import assemble_training_set
from fer_pipeline.core.classes import CLASSES
from tests.core.stage_data import TRAIN_COUNTS, drawn_faces, stage_dataset


@pytest.fixture(scope="module")
def dataset() -> dict[str, np.ndarray]:
    """A canonical dataset dict (as ingestion makes it) of drawn faces."""
    return stage_dataset()


def test_assemble_training_set_with_and_without_synthetic(dataset):
    rng = np.random.default_rng(2)
    synthetic_images, synthetic_labels = drawn_faces([0, 4, 2, 0, 0, 1, 3], rng)
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
