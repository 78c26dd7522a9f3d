from kedro.pipeline import Pipeline, node, pipeline

from .nodes import describe_served_model


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [node(describe_served_model, ["resnet_model", "params:serving"], "served_model_card",
              name="describe_served_model")]
    )
