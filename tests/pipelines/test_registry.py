"""Every stage is registered, and the stages talk to each other only through the catalog."""

from pathlib import Path

import pytest
from kedro.framework.project import configure_project, pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

REPO = Path(__file__).resolve().parents[2]
STAGES = ["ingestion", "class_balance", "autoencoder", "augmentation", "training", "evaluate", "predict"]
# Hand-offs that stay inside one stage and are deliberately not persisted.
IN_MEMORY = {"raw_source", "photo_inputs"}


@pytest.fixture(scope="module")
def catalog():
    bootstrap_project(REPO)
    configure_project("fer_pipeline")
    with KedroSession.create(project_path=REPO, env="demo") as session:
        yield session.load_context().catalog


def test_every_stage_is_registered_and_default_runs_them_all():
    bootstrap_project(REPO)
    assert set(STAGES) <= set(pipelines)
    default_nodes = {n.name for n in pipelines["__default__"].nodes}
    for stage in STAGES:
        assert {n.name for n in pipelines[stage].nodes} <= default_nodes


def test_stages_connect_only_through_catalog_datasets(catalog):
    bootstrap_project(REPO)
    for stage in STAGES:
        pipe = pipelines[stage]
        for name in pipe.datasets():
            if name.startswith("params:") or name in IN_MEMORY:
                continue
            # resolves explicit entries and factory patterns ({name}_plot, {stage}_metrics)
            assert name in catalog or catalog.get(name) is not None, f"{stage}: {name} is not in the catalog"
        for name in pipe.inputs():
            if name.startswith("params:"):
                continue
            assert name not in IN_MEMORY, f"{stage} needs in-memory {name} from another stage"


def test_plots_land_in_reporting_and_mlflow(catalog):
    plot = catalog.get("confusion_matrix_plot")
    assert type(plot).__name__ == "MlflowMatplotlibDataset"
    assert str(plot._filepath).endswith("data/08_reporting/confusion_matrix.png")
