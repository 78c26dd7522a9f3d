from kedro.pipeline import Pipeline, node, pipeline

from .nodes import predict_emotions, prepare_photos


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(prepare_photos, "params:predict", "photo_inputs", name="prepare_photos"),
            node(
                predict_emotions,
                ["photo_inputs", "resnet_model", "params:predict"],
                ["face_predictions", "annotated_photos", "predict_metrics"],
                name="predict_emotions",
            ),
        ]
    )
