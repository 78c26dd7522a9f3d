"""Every stage is registered, and the stages talk to each other only through the catalog."""

from pathlib import Path

import pytest
from kedro.framework.project import configure_project, pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.conftest import project_as_cwd

REPO = Path(__file__).resolve().parents[2]
STAGES = ["ingestion", "class_balance", "autoencoder", "augmentation", "training", "evaluate", "predict",
          "package_model"]
# Hand-offs that stay inside one stage and are deliberately not persisted.
IN_MEMORY = {"raw_source", "photo_inputs"}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project, as the working directory (``project_as_cwd``)."""
    with project_as_cwd(tmp_path_factory.mktemp("registry") / "project") as copy:
        yield copy


@pytest.fixture(scope="module")
def catalog(project):
    """The demo environment's catalog."""
    bootstrap_project(project)
    configure_project("fer_pipeline")
    with KedroSession.create(project_path=project, env="demo") as session:
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
    assert str(plot._filepath).endswith("data/demo/08_reporting/confusion_matrix.png")  # conf/demo/globals.yml


def _leaf_keys(tree: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        keys |= _leaf_keys(value, path + ".") if isinstance(value, dict) and value else {path}
    return keys


@pytest.mark.parametrize("env", ["demo", "cpu"])
def test_environments_only_override_existing_parameters(env):
    """An environment overrides single keys of conf/base (soft merge): a misspelt key would be
    silently added instead of overriding, so every key must exist in base."""
    from omegaconf import OmegaConf

    def load(folder: Path) -> dict:
        merged: dict = {}
        for path in sorted(folder.glob("parameters*.yml")):
            merged.update(OmegaConf.to_container(OmegaConf.load(path)) or {})
        return merged

    base_keys = _leaf_keys(load(REPO / "conf" / "base"))
    env_keys = _leaf_keys(load(REPO / "conf" / env))
    # open-ended groups in base (null or {} there) accept any key below them
    open_groups = {k for k in base_keys if any(e.startswith(k + ".") for e in env_keys)}
    assert env_keys, f"conf/{env} has no parameters"
    assert {k for k in env_keys - base_keys if not any(k.startswith(g + ".") for g in open_groups)} == set()


def test_cpu_environment_resolves_for_kedro(project):
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="cpu") as session:
        context = session.load_context()
        params = context.params
        model_path = context.catalog.get("resnet_model")._filepath
    assert str(model_path).endswith("data/cpu/06_models/resnet34.pt")  # beside, not over, the default model
    assert params["training"]["config"]["checkpoint_dir"] == "data/cpu/06_models/checkpoints"
    assert params["training"]["model"]["stem"] == "small_pool"
    assert params["training"]["config"]["epochs"] == 13 and params["training"]["config"]["amp"] == "auto"
    assert params["training"]["config"]["loss"] == "ce"  # everything else from conf/base
    assert params["ingestion"]["source_path"] == "data/01_raw/fer2013"
