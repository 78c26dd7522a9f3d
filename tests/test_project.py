"""fer_pipeline.project: the project root and each environment's data root."""

from pathlib import Path

import pytest

from fer_pipeline.project import catalog_file, environment_data_roots

REPO = Path(__file__).resolve().parents[1]


def test_each_environment_has_its_own_data_root():
    roots = environment_data_roots(REPO)
    assert roots == {"base": REPO / "data", "cpu": REPO / "data" / "cpu", "demo": REPO / "data" / "demo"}


def test_catalog_paths_are_read_from_the_catalog_per_environment(tmp_path):
    assert catalog_file(REPO, "resnet_model") == REPO / "data" / "06_models" / "resnet34.pt"  # wrapped by kedro-mlflow
    assert catalog_file(REPO, "resnet_model", "demo") == REPO / "data" / "demo" / "06_models" / "resnet34.pt"
    assert catalog_file(REPO, "fer_dataset", "cpu") == REPO / "data" / "cpu" / "03_primary" / "fer_dataset.npz"
    with pytest.raises(KeyError, match="no file entry 'resnet_mdoel'"):
        catalog_file(REPO, "resnet_mdoel")
