"""``fer-train``: the training stage alone, from the files earlier stages wrote; ``torchrun``'s target.

On one machine ``kedro run --params training.distributed.nproc_per_node=N`` is the way to train
in N processes. On a cluster, ``torchrun`` starts the processes on every node and each runs
this command (``-m fer_pipeline.commands.train``), with the training inputs on storage every node
reads (``kedro run --to-nodes augmentation.assemble_training_set`` writes them):

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HEAD:29400 \\
        --rdzv-id fer-1 -m fer_pipeline.commands.train --out /shared/06_models/resnet34.pt

Every rank loads the inputs and trains its share of each batch (``core.training.distributed``); rank 0
writes the model file (the same format as the pipeline's ``resnet_model``), the training history
next to it, and the checkpoints. ``kedro run --pipelines package_model`` then logs that model to
MLflow, and ``--pipelines evaluate`` scores it. Without torchrun, it trains in this process (or
in ``nproc_per_node`` workers). Parameters are Kedro's: conf/base, ``--env``'s folder merged
over it, then ``--set KEY=VALUE``; run it from the project folder, where the catalog's relative
paths start. Kedro and MLflow are not needed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from torch.distributed.elastic.multiprocessing.errors import record

from fer_pipeline.project import project_root


def build_parser() -> argparse.ArgumentParser:
    root = project_root()
    parser = argparse.ArgumentParser(
        prog="fer-train", description="Train the ResNet from the pipeline's training inputs; torchrun's target.")
    parser.add_argument("--env", default=os.environ.get("KEDRO_ENV", "local"),
                        help="the Kedro environment whose parameters to use: conf/base with conf/<env> merged over "
                        "it, as `kedro run --env` does (default: $KEDRO_ENV, else local, as for kedro run)")
    parser.add_argument("--conf", default=str(root / "conf"), help="the conf folder (default the project's)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a parameter, e.g. training.config.epochs=30 (repeatable)")
    parser.add_argument("--training-set", help="assemble_training_set's output (default: the catalog's "
                        "training_set, <data_root>/05_model_input/training_set.npz)")
    parser.add_argument("--dataset", help="ingestion's output (default: the catalog's fer_dataset)")
    parser.add_argument("--out", help="the model file rank 0 writes (default: the catalog's resnet_model, "
                        "<data_root>/06_models/resnet34.pt, which `kedro run --pipelines package_model` and "
                        "`--pipelines evaluate` read)")
    return parser


def _catalog_filepath(conf: Path, env: str | None, name: str) -> str:
    """Where the environment's catalog (conf/base/catalog.yml, the env's merged over it) keeps
    ``name``: its ``filepath``, or its wrapped dataset's (an MLflow artifact), globals resolved."""
    from fer_pipeline.params import deep_merge, load_environment_globals, read_yaml_file, resolve_globals

    catalog: dict[str, Any] = {}
    for folder in ("base", env):
        path = conf / folder / "catalog.yml" if folder else None
        if path is not None and path.is_file():
            catalog = deep_merge(catalog, read_yaml_file(path) or {})
    entry = catalog[name]
    filepath = entry.get("filepath") or entry["dataset"]["filepath"]
    return resolve_globals(filepath, load_environment_globals(conf, env), where=f"catalog {name}")


def train(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, train, write the model file on rank 0; what was written and the best epoch."""
    from fer_pipeline.core.models import save_model
    from fer_pipeline.core.training.distributed import DistributedConfig, init_from_env, launched_by_torchrun, shutdown
    from fer_pipeline.core.training.job import configure_worker_logging, train_resnet
    from fer_pipeline.core.training.summary import training_summary
    from fer_pipeline.files import write_csv, write_json
    from fer_pipeline.params import apply_sets, load_environment_parameters
    from fer_pipeline.runner.dataset_loading import read_npz

    args = build_parser().parse_args(argv)
    conf = Path(args.conf)
    try:
        params = apply_sets(load_environment_parameters(conf, args.env), args.set)
        # the catalog's files, relative to the working folder as the parameters' own paths are
        training_set_path = Path(args.training_set or _catalog_filepath(conf, args.env, "training_set"))
        dataset_path = Path(args.dataset or _catalog_filepath(conf, args.env, "fer_dataset"))
        out = Path(args.out or _catalog_filepath(conf, args.env, "resnet_model"))
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"fer-train: {exc}") from None
    for what, path in (("--training-set", training_set_path), ("--dataset", dataset_path)):
        if not path.is_file():
            raise SystemExit(f"fer-train: {what} {path} does not exist: run `kedro run --to-nodes "
                             f"augmentation.assemble_training_set` first, or pass the file")

    world = None
    if launched_by_torchrun():
        distributed = DistributedConfig.from_dict(params["training"].get("distributed"))
        world = init_from_env(params["training"]["config"].get("device", "auto"), distributed.backend,
                              distributed.timeout_s)
    is_main = world is None or world.is_main
    configure_worker_logging(world.rank if world else 0)
    try:
        training_set = read_npz(training_set_path)
        result = train_resnet(training_set, read_npz(dataset_path), params["training"], params["augmentation"],
                              progress=is_main)
        if is_main:
            save_model(out, result.model, result.config)
            write_csv(out.with_name(out.stem + "_history.csv"), result.history)
            write_json(out.with_name(out.stem + "_summary.json"), training_summary(result, training_set))
            print(f"fer-train: wrote {out} (best epoch {result.best_epoch}: {result.best_metrics})")
    finally:
        if world is not None:
            shutdown()
    return {"out": str(out), "best_epoch": result.best_epoch}


@record  # under torchrun, a rank's exception reaches torchrun's summary (its error file)
def main(argv: list[str] | None = None) -> int:
    train(sys.argv[1:] if argv is None else argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
