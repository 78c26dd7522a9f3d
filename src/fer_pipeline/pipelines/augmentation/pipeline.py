from kedro.pipeline import Pipeline, node, pipeline

from .nodes import assemble_training_set, preview_augmentation


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                assemble_training_set,
                ["fer_dataset", "synthetic_faces", "params:augmentation"],
                ["training_set", "augmentation_metrics"],
                name="assemble_training_set",
            ),
            node(
                preview_augmentation,
                ["training_set", "params:augmentation"],
                "augmentation_preview_plot",
                name="preview_augmentation",
            ),
        ]
    )
