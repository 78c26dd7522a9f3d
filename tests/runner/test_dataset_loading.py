"""fer_pipeline.runner.dataset_loading: a canonical .npz, an archive extracted once, a stratified subset."""

from __future__ import annotations

import tarfile

import numpy as np

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.runner.dataset_loading import load_dataset, resolve_data, subset_dataset

PARAMS = {"source_kind": "auto", "on_error": "quarantine", "colour": "convert", "size": "convert",
          "duplicates": "keep", "val_fraction": 0.1, "test_fraction": 0.1, "seed": 0, "workers": 1}


def _dataset(n: int = 40) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
    labels = np.arange(n) % 7
    splits = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4))
    images[-1], labels[-1] = images[0], labels[0]  # a test copy of a training face
    return {"images": images, "labels": labels, "splits": splits, "source_ids": np.arange(n).astype(str),
            "classes": np.array(CLASSES)}


def test_an_npz_without_the_leaked_flag_gets_it_once(tmp_path):
    np.savez(tmp_path / "fer_dataset.npz", **_dataset())
    dataset, report = load_dataset(tmp_path / "fer_dataset.npz", PARAMS, tmp_path / "work")
    assert report["source_kind"] == "npz" and report["kept"] == 40
    assert np.flatnonzero(dataset["leaked"]).tolist() == [39]
    np.savez(tmp_path / "flagged.npz", **{**_dataset(), "leaked": np.arange(40) == 5})
    flagged, _ = load_dataset(tmp_path / "flagged.npz", PARAMS, tmp_path / "work")
    assert np.flatnonzero(flagged["leaked"]).tolist() == [5]  # the stored flag is kept as it is


def test_an_archive_is_extracted_once_and_ingested(fer_demo_folder, tmp_path):
    archive = tmp_path / "fer2013.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fer_demo_folder, arcname="fer2013")
    work = tmp_path / "work"
    root = resolve_data(archive, work)
    assert root == work / "data" / "fer2013" / "fer2013" and (root / "train").is_dir()
    marker = (work / "data" / "fer2013.extracted").stat().st_mtime_ns
    assert resolve_data(archive, work) == root and (work / "data" / "fer2013.extracted").stat().st_mtime_ns == marker
    dataset, report = load_dataset(archive, PARAMS, work)
    assert report["read"] == report["kept"] == 280 and report["source_path"] == root.as_posix()
    assert dataset["leaked"].dtype == bool and report["decoder"].startswith(("opencv", "pillow"))
    assert resolve_data(fer_demo_folder, work) == fer_demo_folder  # a folder is used where it is


def test_subset_is_stratified_and_keeps_every_class():
    dataset = _dataset(280)
    dataset["leaked"] = np.arange(280) == 279  # the test copy of training face 0
    small = subset_dataset(dataset, 35, seed=0)
    for split in ("train", "val", "test"):
        members = small["labels"][small["splits"] == split]
        assert len(members) <= 35 + 7 and set(members.tolist()) == set(range(7))
    assert set(small) == set(dataset) and list(small["classes"]) == list(CLASSES)


def test_a_subset_flags_a_copy_only_while_its_training_face_is_in_it():
    dataset = {**_dataset(280), "leaked": np.arange(280) == 279}
    outcomes = set()
    for seed in range(12):
        small = subset_dataset(dataset, 60, seed=seed)
        original_kept = any(np.array_equal(face, dataset["images"][0])
                            for face in small["images"][small["splits"] == "train"])
        copy_kept = "279" in set(small["source_ids"])
        if copy_kept:
            assert small["leaked"][list(small["source_ids"]).index("279")] == original_kept
            outcomes.add(original_kept)
    assert outcomes == {True, False}  # both cases were seen
