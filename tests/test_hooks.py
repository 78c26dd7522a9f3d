"""The project's Kedro hooks: parameters used late in a run are checked before its first node
(every stage's: tests/kedro_glue/test_parameter_checks.py)."""

from __future__ import annotations

import pytest
from kedro.io import DataCatalog, MemoryDataset

from fer_pipeline.core.config import ParameterError
from fer_pipeline.core.evaluation.external_listing import ExternalSetError
from fer_pipeline.kedro_glue.hooks import ParameterChecks
from fer_pipeline.pipelines.evaluate import create_pipeline as evaluate_pipeline
from fer_pipeline.pipelines.ingestion import create_pipeline as ingestion_pipeline
from tests.core.external_sets import write_crops


def _catalog(external_sets) -> DataCatalog:
    return DataCatalog({"params:evaluate": MemoryDataset({"external_sets": external_sets})})


def test_external_set_mistakes_stop_the_run_before_its_first_node(tmp_path):
    crops = write_crops(tmp_path / "ck")  # folders anger, Happy, sadness, contempt
    hook = ParameterChecks()
    good = {"ck": {"path": str(crops), "kind": "crops", "class_map": {"anger": "angry", "sadness": "sad"}}}
    hook.before_pipeline_run({}, evaluate_pipeline(), _catalog(good))  # contempt: a class a FER+ model may have
    hook.before_pipeline_run({}, evaluate_pipeline(), _catalog({}))
    unmapped = {"ck": {"path": str(crops), "kind": "crops"}}
    with pytest.raises(ParameterError, match="anger.*sadness") as stopped:
        hook.before_pipeline_run({}, evaluate_pipeline(), _catalog(unmapped))
    assert isinstance(stopped.value.__cause__, ExternalSetError)
    with pytest.raises(ParameterError, match="nowhere") as stopped:
        hook.before_pipeline_run({}, evaluate_pipeline(), _catalog({"ck": {"path": str(tmp_path / "nowhere"),
                                                                           "kind": "crops"}}))
    assert isinstance(stopped.value.__cause__, (ExternalSetError, FileNotFoundError))
    # a run without the external evaluation does not look at them
    hook.before_pipeline_run({}, ingestion_pipeline(), _catalog(unmapped))
