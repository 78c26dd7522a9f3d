"""Plain-PyTorch ML core of fer_pipeline.

Nothing in this package imports Kedro or MLflow, so it runs on a machine that has only torch,
torchvision, numpy, Pillow and scikit-learn (the GPU box). The Kedro nodes in
``fer_pipeline.pipelines`` and the runner without Kedro (``fer_pipeline.runner.run``) call each
stage once, through ``core.stages``. It draws no figures (``fer_pipeline.plots`` does).
"""
