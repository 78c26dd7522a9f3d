"""Plain-PyTorch ML core of fer_pipeline.

Nothing in this package imports Kedro or MLflow, so it runs on a machine that has only torch
and torchvision (the GPU box). Kedro nodes in ``fer_pipeline.pipelines`` call into it.
"""
