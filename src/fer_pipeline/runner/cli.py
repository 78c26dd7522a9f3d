"""``scripts/gpu_pipeline.py``'s command line (``python -m fer_pipeline.runner``): the parameters
(conf, ``--set``, the shortcut flags), then the run (``runner.run``), or assembling / drawing a
returned folder."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from fer_pipeline.files import write_json
from fer_pipeline.params import apply_sets, load_parameters
from fer_pipeline.runner import model_transport, throughput
from fer_pipeline.runner.records import default_paths
from fer_pipeline.runner.results import draw_figures
from fer_pipeline.runner.run import run_pipeline


def effective_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """conf (or --params-json) <- --set <- the shortcut flags."""
    if args.params_json:
        params = json.loads(Path(args.params_json).read_text(encoding="utf-8"))
    else:
        params = load_parameters(args.conf)
    params = apply_sets(params, args.set)
    if args.epochs is not None:
        params["training"]["config"]["epochs"] = args.epochs
    if args.ae_epochs is not None:
        params["autoencoder"]["epochs"] = args.ae_epochs
    if args.duplicates is not None:
        params["ingestion"]["duplicates"] = args.duplicates
    if args.device is not None:
        for section in (params["training"]["config"], params["autoencoder"], params["evaluate"]):
            section["device"] = args.device
    return params


def build_parser() -> argparse.ArgumentParser:
    paths = default_paths()
    parser = argparse.ArgumentParser(
        prog="gpu_pipeline.py", description="The default FER pipeline without Kedro/MLflow (GPU machine).",
        epilog="GPU: PYTHONUNBUFFERED=1 PYTHONPATH=src python3 scripts/gpu_pipeline.py --data .gpu_data/fer2013.tar.gz "
               "--out $OUT --naive-baseline-steps 200",
    )
    add = parser.add_argument
    add("--data", help="FER2013 folder / fer2013.csv / archive of one (.tar.gz, .zip) / fer_dataset.npz "
                       "(default: ingestion.source_path)")
    add("--out", default=os.environ.get("OUT") or str(paths["out"]),
        help="output folder (default $OUT, else build/gpu_out, which git ignores)")
    add("--work", default=str(paths["work"]),
        help="scratch folder: extracted archives, training checkpoints (default build/gpu_work)")
    add("--conf", default=str(paths["conf"]), help="folder of parameters*.yml (default conf/base)")
    add("--params-json", help="read the parameters from this JSON (see --dump-params) instead")
    add("--dump-params", metavar="FILE", help="write the effective parameters as JSON and exit")
    add("--set", action="append", metavar="KEY=VALUE",
        help="override a parameter, e.g. training.config.lr=0.05 (repeatable; VALUE in YAML flow syntax)")
    add("--epochs", type=int, help="training.config.epochs")
    add("--ae-epochs", type=int, help="autoencoder.epochs")
    add("--subset", type=int, help="keep at most N images per split (stratified): smoke runs")
    add("--duplicates", choices=("keep", "drop_leaked"), help="ingestion.duplicates")
    add("--device", help="device of every stage (default: the parameters' 'auto')")
    add("--fresh", action="store_true", help="ignore (delete) training checkpoints in --work")
    add("--naive-baseline-steps", type=int, default=0,
        help="also time the naive JPEG DataLoader path vs the fast path, N steps each")
    add("--naive-workers", type=int, default=throughput.default_workers(),
        help="DataLoader workers of the naive path (default min(8, cores))")
    add("--compile-probe-steps", type=int, default=0,
        help="also time the fast path under torch.compile, N steps (its warm-up = the compile time)")
    add("--deadline-s", type=float,
        help="seconds this command may take: the training's epochs are cut (never raised) to end --reserve-s "
             "before, sized by the fast path's measured images/s (measured before training)")
    add("--reserve-s", type=float, default=60.0,
        help="with --deadline-s: seconds kept for evaluation, export and what follows training (default 60)")
    add("--resume-check-steps", type=int, default=0,
        help="after the export, check resumption on this device: 3 epochs of N steps, stopped after one and "
             "resumed, against the same run uninterrupted (fer_pipeline.runner.resume_check)")
    add("--save-dataset", metavar="NPZ", help="also write the ingested dataset there (the ablation's --data)")
    add("--threads", type=int, help="torch CPU threads")
    add("--part-mib", type=float, default=15.0, help="largest part of the returned float16 model, MiB")
    add("--assemble-model", nargs=2, metavar=("FOLDER", "DEST"),
        help="join the returned model parts in FOLDER into DEST (sha256 checked) and exit")
    add("--figures", nargs=2, metavar=("FOLDER", "DEST_DIR"),
        help="draw the training curves and PrivateTest confusion matrices of a returned FOLDER into DEST_DIR "
             "(needs matplotlib) and exit")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``scripts/gpu_pipeline.py``: run the pipeline, or assemble / draw a returned folder."""
    args = build_parser().parse_args(argv)
    if args.assemble_model or args.figures:
        try:
            if args.assemble_model:
                print(model_transport.assemble_model(Path(args.assemble_model[0]), Path(args.assemble_model[1])))
            if args.figures:
                for path in draw_figures(Path(args.figures[0]), Path(args.figures[1])):
                    print(f"wrote {path}")
        except (ValueError, FileNotFoundError) as exc:
            raise SystemExit(f"gpu_pipeline.py: {exc}") from None
        return {}
    params = effective_parameters(args)
    if args.dump_params:
        write_json(args.dump_params, params)
        print(f"wrote {args.dump_params}")
        return params
    if args.threads:
        torch.set_num_threads(args.threads)
    return run_pipeline(args, params, sys.argv[1:] if argv is None else list(argv))
