from kedro.pipeline import Pipeline, node, pipeline

from .nodes import export_onnx, train_resnet


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                train_resnet,
                ["training_set", "fer_dataset", "params:training", "params:augmentation"],
                ["resnet_model", "training_history", "training_summary", "training_curves_plot", "training_metrics"],
                name="train_resnet",
            ),
            node(export_onnx, ["resnet_model", "fer_dataset"], ["resnet_onnx", "onnx_export_metrics"],
                 name="export_onnx"),
        ]
    )
