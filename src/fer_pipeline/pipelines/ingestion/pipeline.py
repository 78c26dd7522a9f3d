from kedro.pipeline import Pipeline, node, pipeline

from .nodes import ingest_faces, prepare_source


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(prepare_source, "params:ingestion", "raw_source", name="prepare_source"),
            node(
                ingest_faces,
                ["raw_source", "params:ingestion"],
                ["fer_dataset", "data_quality_report", "ingestion_metrics"],
                name="ingest_faces",
            ),
        ]
    )
