from kedro.pipeline import Pipeline, node, pipeline

from .nodes import analyse_class_balance


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                analyse_class_balance,
                ["fer_dataset", "params:class_balance"],
                ["class_balance", "class_balance_table", "class_balance_plot", "class_balance_metrics"],
                name="analyse_class_balance",
            )
        ]
    )
