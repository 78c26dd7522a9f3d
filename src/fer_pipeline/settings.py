"""Kedro project settings."""

from pathlib import Path

from kedro.config import OmegaConfigLoader
from kedro.utils import find_kedro_project

from fer_pipeline.kedro_glue.hooks import ParameterChecks
from fer_pipeline.kedro_glue.run_names import RunNames


def _project_root() -> str:
    """The Kedro project being run (found from the working directory, like the kedro CLI does)."""
    return (find_kedro_project(Path.cwd()) or Path.cwd()).resolve().as_posix()


HOOKS = (ParameterChecks(), RunNames())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (e.g. `demo`) overrides single keys of a stage's parameters instead of
    # replacing the whole block.
    "merge_strategy": {"parameters": "soft", "catalog": "soft", "mlflow": "soft"},
    # `${project_root:}` lets mlflow.yml point at the project's sqlite store from any cwd.
    "custom_resolvers": {"project_root": _project_root},
}
