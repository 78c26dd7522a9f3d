from kedro.pipeline import Pipeline, node, pipeline

from .nodes import oversample_minorities, train_autoencoder


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                train_autoencoder,
                ["fer_dataset", "params:autoencoder"],
                ["autoencoder_model", "reconstruction_error_table", "autoencoder_metrics", "reconstruction_grid_plot"],
                name="train_autoencoder",
            ),
            node(
                oversample_minorities,
                ["fer_dataset", "autoencoder_model", "params:autoencoder"],
                ["synthetic_faces", "synthetic_faces_plot", "oversampling_metrics"],
                name="oversample_minorities",
            ),
        ]
    )
