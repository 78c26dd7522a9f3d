"""Plain-PyTorch ML core of fer_pipeline.

Nothing in this package imports Kedro or MLflow, so it runs on a machine that has only torch,
torchvision, numpy, Pillow and scikit-learn (the GPU box). It is grouped by
stage, with the names of ``fer_pipeline.pipelines``: the Kedro node of a stage and the runner
without Kedro (``fer_pipeline.runner``) call the same function of ``core/<stage>/`` (the table
in docs/DESIGN.md). It draws no figures (``fer_pipeline.plots`` does).
"""
