"""The project's ``kedro`` commands (Kedro loads ``cli`` from ``<package>.cli``, ahead of its own
and the plugins'): ``kedro run`` is Kedro's, except that a mistake of the user's (``ParameterError``:
a bad or unknown parameter, data or a model that is not there; the hook ``ParameterChecks`` finds
them before the first node) prints just its message and exits with status 2. Any other error keeps
its traceback."""

from __future__ import annotations

import sys
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run

from fer_pipeline.core.config import ParameterError
from fer_pipeline.third_party import silence_known_warnings

#: exit status of a run stopped by a user error (click's, for a usage error)
USER_ERROR_STATUS = 2

silence_known_warnings()  # e.g. ~30 lines of OmegaConf deprecations per run


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
