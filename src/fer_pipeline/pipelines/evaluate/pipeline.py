from kedro.pipeline import Pipeline, node, pipeline

from .nodes import evaluate_model


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                evaluate_model,
                ["resnet_model", "fer_dataset", "params:evaluate"],
                [
                    "evaluation_report", "per_class_metrics", "test_predictions",
                    "confusion_matrix_plot", "confusion_matrix_normalized_plot", "reliability_plot",
                    "confident_mistakes_plot", "per_class_plot", "evaluation_metrics",
                ],
                name="evaluate_model",
            )
        ]
    )
