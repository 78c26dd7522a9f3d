"""core.ingestion.dataset: the ingestion stage, from a FER2013 folder to the canonical dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.ingestion.dataset import INGESTION_KEYS, build_dataset
from fer_pipeline.demo import draw_face


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


def test_the_ingestion_key_list_is_conf_base():
    from fer_pipeline.params import load_parameters

    conf = load_parameters(Path(__file__).resolve().parents[3] / "conf" / "base")
    assert set(INGESTION_KEYS) == set(conf["ingestion"])
