"""The whole default FER pipeline without Kedro or MLflow, for a GPU machine: a thin command line
over ``fer_pipeline.runner.run`` (read its docstring for the stages, outputs and resumption).

On the GPU machine, from the repository root (the package is not installed there)::

    mkdir -p .gpu_data && tar czf .gpu_data/fer2013.tar.gz -C ../shared/datasets fer2013   # here, once
    PYTHONUNBUFFERED=1 PYTHONPATH=src python3 scripts/gpu_pipeline.py --data .gpu_data/fer2013.tar.gz \\
        --out $OUT --naive-baseline-steps 200

Here, a CPU smoke run on generated demo faces (about 10 s)::

    fer-demo-data /tmp/fer_demo --n-train 210 --n-test 70
    python scripts/gpu_pipeline.py --data /tmp/fer_demo --out /tmp/gpu_out --threads 1 --epochs 1 \\
        --ae-epochs 1 --set training.model.stem=imagenet --set training.config.batch_size=16 \\
        --set training.config.steps_per_epoch=3 --set autoencoder.latent_dim=16 --set autoencoder.base_channels=8

Back here, on the returned folder: put the model where Kedro's catalog expects it (joins the
parts, checks the sha256, loads it) and draw the curves and confusion matrices::

    python scripts/gpu_pipeline.py --assemble-model <returned folder> data/06_models/resnet34.pt
    python scripts/gpu_pipeline.py --figures <returned folder> docs/gpu

Parameters: ``--set training.config.lr=0.05`` (any dotted key, YAML value), the shortcuts
``--epochs``, ``--ae-epochs``, ``--duplicates``, ``--device``; ``--dump-params FILE`` writes the
effective parameters as JSON and exits; ``--params-json FILE`` reads them from such a file.
"""

import sys

try:
    from fer_pipeline.runner.cli import main
except ModuleNotFoundError as exc:  # pragma: no cover - a checkout where the package is not importable
    if exc.name != "fer_pipeline":
        raise
    sys.exit("gpu_pipeline.py: fer_pipeline is not importable: install it (pip install -e .) or run from the "
             "repository root with PYTHONPATH=src")

if __name__ == "__main__":
    main()
