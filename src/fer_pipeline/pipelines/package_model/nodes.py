"""Package-model stage: what the logged ``emotion_model`` holds, checked and written down.

Part of every run that trains (so a typo in ``params:serving`` stops the run instead of being
logged into the model), and a pipeline of its own: ``kedro run --pipelines package_model`` logs
the model file on disk as ``emotion_model`` without training, for a model trained elsewhere
(the GPU runner's, assembled into ``06_models/``) or after changing ``parameters_serving.yml``.
"""

from __future__ import annotations

from typing import Any

from fer_pipeline.kedro_glue.datasets import ModelFile
from fer_pipeline.kedro_glue.served_model import served_model_card


def describe_served_model(resnet_model: ModelFile, params: dict[str, Any]) -> dict[str, Any]:
    return served_model_card(resnet_model.require(), resnet_model.load()["config"], params)
