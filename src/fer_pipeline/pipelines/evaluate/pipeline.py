from kedro.pipeline import Pipeline, node, pipeline

from .nodes import evaluate_external, evaluate_model


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
            ),
            # Cross-dataset evaluation on evaluate.external_sets (CK+, JAFFE, ...); none by default.
            node(
                evaluate_external,
                ["resnet_model", "params:evaluate", "params:predict", "evaluation_report"],
                ["external_evaluation", "external_evaluation_metrics", "external_confusion_plots"],
                name="evaluate_external",
            ),
        ]
    )
