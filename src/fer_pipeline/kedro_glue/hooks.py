"""Kedro hooks of the project (registered in ``settings.HOOKS``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import DatasetError, MemoryDataset

from fer_pipeline.core.classes import CLASSES, CONTEMPT
from fer_pipeline.core.config import ParameterError

log = logging.getLogger(__name__)

Params = Mapping[str, Mapping[str, Any]]
MODEL = "resnet_model"
#: the nodes that can take the model from an MLflow run (``evaluate.model_run_id``) instead of the file
MODEL_RUN_ID_NODES = {"evaluate_model", "evaluate_external"}


def _node_name(node) -> str:  # noqa: ANN001 - a Kedro Node
    """A node's name without its namespace (``evaluate_model`` of ``evaluate.evaluate_model``)."""
    return node.name.removeprefix(f"{node.namespace}.") if node.namespace else node.name


def _ingestion(params: Params) -> None:
    from fer_pipeline.core.ingestion.dataset import check_ingestion_params
    from fer_pipeline.pipelines.ingestion.nodes import check_source

    ingestion = params["ingestion"]
    # The demo draws its faces into source_path in the run's first node: nothing is there yet.
    source = None if ingestion.get("demo") else check_source(ingestion)
    check_ingestion_params(ingestion, source)


def _autoencoder(params: Params) -> None:
    from fer_pipeline.core.autoencoder.training import autoencoder_config

    autoencoder_config(params["autoencoder"])


def _training(params: Params) -> None:
    from fer_pipeline.core.config import from_params, reject_unknown_keys
    from fer_pipeline.core.training.config import TrainConfig
    from fer_pipeline.core.training.distributed import DistributedConfig
    from fer_pipeline.core.training.job import TRAINING_KEYS

    training = params["training"]
    reject_unknown_keys(training, TRAINING_KEYS, "training")
    sampler = params.get("augmentation", {}).get("sampler")  # train_resnet adds it to the config
    from_params(TrainConfig, {**training["config"], **({"sampler": sampler} if sampler else {})}, "training.config")
    DistributedConfig.from_dict(training.get("distributed"))


def _evaluate(params: Params) -> None:
    from fer_pipeline.core.config import reject_unknown_keys
    from fer_pipeline.core.evaluation.protocol import tta_modes
    from fer_pipeline.core.evaluation.split import EVALUATE_KEYS

    reject_unknown_keys(params["evaluate"], EVALUATE_KEYS, "evaluate")
    tta_modes(params["evaluate"])


def _predict(params: Params) -> None:
    from fer_pipeline.core.predict.params import check_predict_params

    check_predict_params(params["predict"])


def _serving(params: Params) -> None:
    from fer_pipeline.core.serving.requests import ServingConfig

    ServingConfig.from_params(params["serving"])


#: ``params:<stage>`` -> the stage's own checks (core/), run when a node of the run reads those parameters
STAGE_CHECKS: dict[str, Callable[[Params], None]] = {
    "ingestion": _ingestion, "autoencoder": _autoencoder, "training": _training, "evaluate": _evaluate,
    "predict": _predict, "serving": _serving,
}


def _user_errors() -> tuple[type[BaseException], ...]:
    from fer_pipeline.core.ingestion import IngestionError

    return ValueError, TypeError, FileNotFoundError, IngestionError, DatasetError


def _stopped(error: BaseException, stage: str | None, env: str) -> ParameterError:
    """``error`` as the message the CLI prints: with where to set the stage's parameters when one was wrong."""
    if stage and not isinstance(error, (FileNotFoundError, DatasetError)):
        where = f"conf/base/parameters_{stage}.yml" + (f", conf/{env}/" if env else "")
        hint = f" Set params:{stage} in {where} or with --params."
    else:
        hint = ""
    message = str(error).rstrip(".")
    return ParameterError(f"{message}.{hint}\nThe run stopped before its first node: nothing was written or logged.")


class ParameterChecks:
    """Every stage's parameters and the run's inputs, checked before the run's first node: a typo
    in a parameter, a source or a model that is not there would otherwise stop the run late (after
    hours of training), with files rewritten and a failed MLflow run. ``tryfirst``: before
    kedro-mlflow's own ``before_pipeline_run`` starts its run. A mistake raises ``ParameterError``."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        env = (run_params or {}).get("env") or ""
        needed = {name.removeprefix("params:") for node in pipeline.nodes for name in node.inputs
                  if name.startswith("params:")}
        # Read from the datasets, not catalog.load: no "Loading data from" line per stage.
        params = {name: catalog.get(f"params:{name}").load() for name in sorted(needed) if f"params:{name}" in catalog}
        for stage, check in STAGE_CHECKS.items():
            if stage in params:
                try:
                    check(params)
                except _user_errors() as error:
                    raise _stopped(error, stage, env) from error
        try:
            if "evaluate_external" in {_node_name(node) for node in pipeline.nodes} and "evaluate" in params:
                self._check_external_sets(params["evaluate"].get("external_sets"))
        except _user_errors() as error:
            raise _stopped(error, "evaluate", env) from error
        try:
            _check_inputs(pipeline, catalog, params)
        except _user_errors() as error:
            raise _stopped(error, None, env) from error

    @staticmethod
    def _check_external_sets(external_sets: Any) -> None:
        from fer_pipeline.core.evaluation import external_sets as external_eval

        # The model's classes are known once it exists; any class it can have is accepted here
        # (contempt only in FER+ runs), and the evaluation checks against its own classes again.
        external_eval.check_external_sets(external_sets, (*CLASSES, CONTEMPT))


def _check_inputs(pipeline, catalog, params: Params) -> None:
    """The run's inputs that none of its nodes makes (the dataset of a run without ingestion, the
    model of evaluate or predict without training) must be there: loading one that is not raises
    its dataset's message, and the model's handle says how to get one (``ModelFile.require``)."""
    from fer_pipeline.kedro_glue.datasets import ModelFile

    for name in sorted(pipeline.inputs()):
        if name.startswith("params:") or name == "parameters" or name not in catalog or catalog.exists(name):
            continue
        dataset = catalog.get(name)
        if isinstance(dataset, MemoryDataset):
            continue  # handed over within a run (Kedro names it if no node of this one makes it)
        users = {_node_name(node) for node in pipeline.nodes if name in node.inputs}
        if name == MODEL and users <= MODEL_RUN_ID_NODES and params.get("evaluate", {}).get("model_run_id"):
            continue  # the model of an MLflow run
        data = dataset.load()
        if isinstance(data, ModelFile):
            data.require()
