"""Warnings of the libraries we use that no user of the project can act on, silenced in one place
(every ``kedro`` command through the ``kedro.init`` entry point of pyproject.toml, which Kedro
runs before it loads the plugins; ``kedro run`` through ``cli.py`` too; ``fer-ui viz``); measured
with the installed releases."""

from __future__ import annotations

import re
import warnings

#: (message regex, category): what each says, and who prints it
KNOWN_WARNINGS = (
    # OmegaConf deprecates register_new_resolver, which Kedro's config loader and kedro-mlflow
    # call in every run: some 30 lines per run.
    (r"register_new_resolver\(\) is deprecated", UserWarning),
    # kedro-viz 12.5 imports FastAPI's deprecated ORJSONResponse (20 lines at start-up).
    (r"ORJSONResponse is deprecated", UserWarning),  # FastAPIDeprecationWarning is a UserWarning
    # mlflow warns, on building the logged model's pipeline, that its predict has no type hints:
    # the model's signature is given explicitly (kedro_glue/served_model.py).
    (r".*Add type hints to the `predict` method", UserWarning),
)


def is_known_warning(message: Warning | str, category: type[Warning]) -> bool:
    """True for a warning of ``KNOWN_WARNINGS``."""
    return any(issubclass(category, known) and re.match(pattern, str(message), re.IGNORECASE)
               for pattern, known in KNOWN_WARNINGS)


def silence_known_warnings() -> None:
    """Ignore ``KNOWN_WARNINGS`` in this process from now on: as warning filters, and in the
    function that shows warnings, for code that replaces the filters while it runs (mlflow checks
    a model class's type hints under ``simplefilter("once")``, when kedro-mlflow is imported)."""
    for message, category in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    show = warnings.showwarning
    if getattr(show, "skips_known_warnings", False):
        return

    def showwarning(message, category, *args, **kwargs):  # noqa: ANN001, ANN202 - warnings.showwarning's
        if not is_known_warning(message, category):
            show(message, category, *args, **kwargs)

    showwarning.skips_known_warnings = True
    warnings.showwarning = showwarning
