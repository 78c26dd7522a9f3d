"""Ingestion nodes: a missing source says where to put the data; a folder becomes the dataset."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from fer_pipeline.demo import generate_demo_dataset
from fer_pipeline.pipelines.ingestion.nodes import MissingSourceError, ingest_faces, prepare_source

PARAMS = {"source_kind": "auto", "on_error": "quarantine", "colour": "convert", "size": "convert",
          "duplicates": "keep", "val_fraction": 0.1, "test_fraction": 0.1, "seed": 0, "workers": 1, "demo": None}


def test_missing_source_names_the_remedies(tmp_path):
    with pytest.raises(MissingSourceError, match="ingestion.source_path.*kedro run --env demo"):
        prepare_source({**PARAMS, "source_path": str(tmp_path / "nowhere")})


def test_demo_source_is_generated_then_ingested_with_report_and_metrics(tmp_path):
    root = tmp_path / "fer2013_demo"
    source = prepare_source({**PARAMS, "source_path": str(root), "demo": {"n_train": 70, "n_test": 28, "seed": 0}})
    assert source == {"path": root.as_posix(), "kind": "auto", "demo": True} and (root / "train").is_dir()
    # a training image copied into PrivateTest: kept (published protocol) but flagged as leaked
    copy = next((root / "train" / "happy").glob("*.jpg"))
    shutil.copy(copy, root / "test" / "happy" / "PrivateTest_999.jpg")

    dataset, report, metrics = ingest_faces(source, PARAMS)
    assert len(dataset["labels"]) == 99 and dataset["leaked"].sum() == 1
    assert report["source_path"] == root.as_posix() and report["synthetic_demo_data"] is True
    assert report["read"] == report["kept"] == 99 and report["duplicates"]["train_test_groups"] == 1
    assert metrics["ingestion.kept"] == {"value": 99.0, "step": 0}
    assert metrics["ingestion.duplicates.train_test_groups"]["value"] == 1.0
    assert sum(v["value"] for k, v in metrics.items() if k.startswith("ingestion.count.")) == 99
    assert np.array_equal(np.unique(dataset["splits"]), ["test", "train", "val"])


def test_a_non_demo_source_is_left_alone(tmp_path):
    generate_demo_dataset(tmp_path / "faces", n_train=14, n_test=14, progress=False)
    before = sorted(p.name for p in (tmp_path / "faces").rglob("*"))
    source = prepare_source({**PARAMS, "source_path": str(tmp_path / "faces")})
    assert source["demo"] is False and sorted(p.name for p in (tmp_path / "faces").rglob("*")) == before


def test_ferplus_exclusions_reach_mlflow_by_reason(tmp_path):
    from tests.core.ingestion.ferplus_files import noisy_rows, write_contest_files

    csv_path, votes_path = write_contest_files(tmp_path, noisy_rows({"Training": 2, "PublicTest": 1, "PrivateTest": 1},
                                                                    contempt_faces=2))
    params = {**PARAMS, "ferplus_votes_path": str(votes_path), "label_mode": "ferplus_majority"}
    dataset, report, metrics = ingest_faces({"path": str(csv_path), "kind": "auto", "demo": False}, params)
    assert metrics["ingestion.quarantined.ferplus_not_face"]["value"] == 3.0
    assert metrics["ingestion.quarantined.ferplus_contempt"]["value"] == 6.0
    assert sum(v["value"] for k, v in metrics.items() if k.startswith("ingestion.quarantined.")) == report["quarantined"]
    assert str(dataset["label_mode"]) == "ferplus_majority"
