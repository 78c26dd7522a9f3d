from kedro.pipeline import Pipeline, node, pipeline

from .nodes import classify_request_faces, find_request_faces


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(find_request_faces, ["serving_requests", "params:serving"], "request_faces",
                 name="find_request_faces"),
            node(
                classify_request_faces,
                ["request_faces", "resnet_model", "params:serving"],
                "emotion_predictions",
                name="classify_request_faces",
            ),
        ]
    )
