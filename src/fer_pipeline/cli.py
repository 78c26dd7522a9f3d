"""The project's ``kedro`` commands (Kedro loads ``cli`` from ``<package>.cli``, ahead of its own
and the plugins'): ``kedro run`` is Kedro's, except that a mistake of the user's (``ParameterError``:
a bad or unknown parameter, data or a model that is not there; the hook ``ParameterChecks`` finds
them before the first node) prints just its message and exits with status 2. Any other error keeps
its traceback."""

from __future__ import annotations

import sys
import warnings
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run

from fer_pipeline.core.config import ParameterError

#: exit status of a run stopped by a user error (click's, for a usage error)
USER_ERROR_STATUS = 2

# The installed OmegaConf deprecates register_new_resolver, which Kedro's config loader and
# kedro-mlflow call in every run: some 30 lines of warnings no user of the project can act on.
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning)


@click.group(name="fer_pipeline")
def cli() -> None:
    """fer_pipeline's project commands."""


@cli.command(name="run", params=kedro_run.params, help=kedro_run.help, short_help=kedro_run.short_help)
def run(**kwargs: Any) -> Any:
    try:
        return kedro_run.callback(**kwargs)
    except ParameterError as error:
        click.secho(f"Error: {error}", err=True, fg="red")
        sys.exit(USER_ERROR_STATUS)
