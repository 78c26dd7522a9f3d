from kedro.pipeline import Pipeline, node, pipeline

from .nodes import predict_emotions, predict_videos, prepare_photos, prepare_videos


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
            node(prepare_videos, "params:predict", "video_inputs", name="prepare_videos"),
            node(
                predict_videos,
                ["video_inputs", "resnet_model", "params:predict"],
                ["video_predictions", "annotated_videos", "predict_video_metrics"],
                name="predict_videos",
            ),
        ]
    )
