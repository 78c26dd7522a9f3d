"""Kedro hooks of the project (registered in ``settings.HOOKS``)."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from fer_pipeline.core.classes import CLASSES, CONTEMPT

log = logging.getLogger(__name__)


class ParameterChecks:
    """Checks of parameters that are only used late in a run, made before its first node: a
    typo in ``evaluate.external_sets`` (a path, an unmapped class name, photos without OpenCV)
    would otherwise stop the run after the training it took hours to do."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        if "evaluate_external" not in {node.name for node in pipeline.nodes}:
            return
        from fer_pipeline.core.evaluation import external_sets as external_eval
        external_sets = catalog.load("params:evaluate").get("external_sets")
        # The model's classes are known once it exists; any class it can have is accepted here
        # (contempt only in FER+ runs), and the evaluation checks against its own classes again.
        external_eval.check_external_sets(external_sets, (*CLASSES, CONTEMPT))
