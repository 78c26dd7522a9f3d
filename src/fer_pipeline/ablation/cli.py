"""``benchmarks/ablation.py``: ``run`` the ablation (GPU machine), ``report`` on its results (here)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

from fer_pipeline.core.classes import SPLITS
from fer_pipeline.files import save_figure, write_bytes, write_json
from fer_pipeline.params import apply_sets, deep_merge, load_environment_parameters, load_parameters
from fer_pipeline.runner.dataset_loading import load_dataset, subset_dataset
from fer_pipeline.runner.records import default_paths, setup_logging

from .plan import epochs_for_time, load_ablation, run_parameters
from .records import RUNS_FILE, read_runs
from .report import MLFLOW_EXPERIMENT, best_strategy, log_to_mlflow, markdown_report, summarize
from .run import merge_done, plan_runs, run_planned

log = logging.getLogger(__name__)


def _parse_list(text: str | None, cast=str) -> list | None:
    return None if text is None else [cast(v.strip()) for v in text.split(",") if v.strip()]


def _command_sets(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(overrides that are part of every run's identity, device overrides that are not)."""
    sets = list(args.set or [])
    if args.epochs is not None:
        sets.append(f"training.config.epochs={args.epochs}")
    if args.ae_epochs is not None:
        sets.append(f"autoencoder.epochs={args.ae_epochs}")
    device_sets = [] if args.device is None else [
        f"{section}.device={args.device}" for section in ("training.config", "autoencoder", "evaluate")]
    return sets, device_sets


#: Where ``--fit-seconds`` records its choice, beside the runs: a rerun into the same folder keeps
#: it, so its finished runs (whose identity holds the epoch count) are recognised and skipped.
FIT_FILE = "ablation_fit.json"


def _fitted_epochs(args: argparse.Namespace, defaults: dict, ablation: dict, strategies: list[str],
                   seeds: list[int], fit_file: Path) -> int:
    """``--fit-seconds``: the epochs of an earlier command into this folder, else those that fit."""
    if not args.timing_from or args.epochs is not None:
        raise SystemExit("--fit-seconds needs --timing-from (a GPU runner's metrics.json) and no --epochs")
    if fit_file.is_file():
        fit = json.loads(fit_file.read_text(encoding="utf-8"))
        log.info("ablation: %d epochs per run, as chosen before (%s)", fit["epochs"], fit_file)
        return int(fit["epochs"])
    identity_sets, _ = _command_sets(args)
    runs = [run_parameters(defaults, ablation, strategy, seed, identity_sets) for seed in seeds
            for strategy in strategies]
    fit = epochs_for_time(args.fit_seconds, json.loads(Path(args.timing_from).read_text(encoding="utf-8")),
                          runs, args.run_overhead_s)
    if not args.dry_run:
        write_json(fit_file, {**fit, "timing_from": str(args.timing_from)})
    log.info("ablation: %d epochs per run (configured %d) fit %d runs in %.0f s at %.1f s an epoch",
             fit["epochs"], fit["configured_epochs"], fit["runs"], fit["fit_seconds"], fit["epoch_seconds"])
    return int(fit["epochs"])


def cmd_run(args: argparse.Namespace) -> int:
    import torch

    ablation = load_ablation(args.config)
    strategies = _parse_list(args.only) or list(ablation["strategies"])
    unknown = [s for s in strategies if s not in ablation["strategies"]]
    if unknown:
        raise SystemExit(f"unknown strategies {unknown}; conf has: {', '.join(ablation['strategies'])}")
    seeds = _parse_list(args.seeds, int) or ablation["seeds"]
    # --env: conf/base with the environment's overrides merged, as `kedro run --env` reads them
    defaults = load_environment_parameters(Path(args.conf).parent, args.env) if args.env else load_parameters(args.conf)
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    runs_path = out / RUNS_FILE
    setup_logging(None if args.dry_run else out / "ablation.log", mode="a")
    if args.fit_seconds is not None:  # before the plan: the epoch count is part of every run's identity
        args.epochs = _fitted_epochs(args, defaults, ablation, strategies, seeds, out / FIT_FILE)
    sets, device_sets = _command_sets(args)
    if args.threads:
        torch.set_num_threads(args.threads)

    done = merge_done(runs_path, args.done or [], write=not args.dry_run)
    plan = plan_runs(defaults, ablation, strategies, seeds, sets + device_sets, args.subset, done)
    todo = [p for p in plan if not p.done]
    log.info("ablation: %d runs planned, %d already done, %d to run", len(plan), len(plan) - len(todo), len(todo))
    for planned in plan:
        log.info("  %-30s seed %d  %s", planned.strategy, planned.seed, "done" if planned.done else "to run")
    if args.dry_run or not todo:
        print(markdown_report(read_runs([runs_path] + list(args.done or [])), list(ablation["strategies"])))
        return 0

    data = Path(args.data) if args.data else default_paths()["root"] / defaults["ingestion"]["source_path"]
    ingestion_params = apply_sets(deep_merge(defaults, ablation["common"]), sets + device_sets)["ingestion"]
    start = time.perf_counter()
    dataset, report = load_dataset(data, ingestion_params, work)
    if args.subset:
        dataset = subset_dataset(dataset, args.subset, ingestion_params["seed"])
    log.info("dataset %s in %.1f s (decoder: %s)", {s: int((dataset["splits"] == s).sum()) for s in SPLITS},
             time.perf_counter() - start, report.get("decoder"))
    # each finished run in MLflow at once, beside its line in the records
    on_record = (lambda record: log_to_mlflow([record], args.mlflow_uri, args.experiment)) if args.mlflow_uri else None
    run_planned(todo, dataset, ablation, ingestion_params, sets, args.subset, work, runs_path, args.env, on_record)
    print(markdown_report(read_runs([runs_path]), list(ablation["strategies"])))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    records = read_runs(args.runs)
    if not records:
        raise SystemExit(f"no ablation runs in {', '.join(map(str, args.runs))}")
    order = list(load_ablation(args.config)["strategies"]) if Path(args.config).is_file() else None
    text = markdown_report(records, order)
    print(text)
    if args.markdown:
        write_bytes(args.markdown, (text + "\n").encode("utf-8"))
    if args.chart:
        from fer_pipeline import plots

        rows = summarize(records, order)
        path = save_figure(plots.plot_ablation(rows, best_strategy(rows)), args.chart, dpi=110)
        print(f"chart: {path}")
    if args.mlflow:
        uri = args.mlflow_uri or f"sqlite:///{(default_paths()['root'] / 'mlflow.db').as_posix()}"
        summary = log_to_mlflow(records, uri, args.experiment)
        print(f"mlflow: {summary['logged']} runs logged, {summary['skipped']} already there "
              f"(experiment {summary['experiment']!r}, id {summary['experiment_id']})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    paths = default_paths()
    config, default_out = paths["root"] / "conf" / "ablation.yml", paths["root"] / "build" / "ablation_out"
    parser = argparse.ArgumentParser(prog="ablation.py", description="Class-imbalance ablation.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="train and evaluate the runs (GPU machine)")
    add = run.add_argument
    add("--config", default=str(config), help="ablation YAML (default conf/ablation.yml)")
    add("--conf", default=str(paths["conf"]), help="folder of the default parameters*.yml")
    add("--env", help="merge this conf environment's parameters over --conf's, as `kedro run --env` does "
                      "(e.g. cpu: the small_pool model in bf16, for 2 CPU cores)")
    add("--data", help="dataset, as scripts/gpu_pipeline.py --data (default: ingestion.source_path)")
    add("--out", default=os.environ.get("OUT") or str(default_out),
        help=f"folder of {RUNS_FILE} and ablation.log (default $OUT, else build/ablation_out)")
    add("--work", default=str(paths["work"]), help="scratch: extracted data, autoencoder cache")
    add("--only", help="comma-separated strategies (default: all in the config)")
    add("--seeds", help="comma-separated seeds (default: the config's)")
    add("--done", action="append", help="a results file of earlier commands (repeatable)")
    add("--set", action="append", metavar="KEY=VALUE", help="override for every run (repeatable)")
    add("--epochs", type=int, help="training.config.epochs for every run")
    add("--ae-epochs", type=int, help="autoencoder.epochs")
    add("--fit-seconds", type=float,
        help="choose the epochs (the same for every run, at most the config's) so that all runs fit in this "
             f"many seconds, from the times measured by --timing-from; recorded in --out's {FIT_FILE}, and a "
             "later command into the same --out keeps that choice")
    add("--timing-from", metavar="METRICS_JSON", help="a GPU runner's metrics.json of this machine (with --fit-seconds)")
    add("--run-overhead-s", type=float, default=10.0,
        help="with --fit-seconds: seconds per run besides its epochs (build, evaluation; default 10)")
    add("--subset", type=int, help="at most N images per split (smoke runs)")
    add("--device", help="device (default: the parameters' 'auto')")
    add("--threads", type=int, help="torch CPU threads")
    add("--dry-run", action="store_true", help="list the runs and what is done; train nothing")
    add("--mlflow-uri", help="also log each finished run to this MLflow tracking URI at once (with its "
                             "epoch history), e.g. sqlite:///mlflow.db")
    add("--experiment", default=MLFLOW_EXPERIMENT, help=f"MLflow experiment (default {MLFLOW_EXPERIMENT})")
    run.set_defaults(func=cmd_run)

    report = commands.add_parser("report", help="markdown table, chart, MLflow (here)")
    add = report.add_argument
    add("--runs", nargs="+", default=[str(default_out / RUNS_FILE)],
        help="JSON-lines files (default build/ablation_out/ablation_runs.jsonl)")
    add("--config", default=str(config), help="for the strategies' order")
    add("--markdown", help="also write the table to this file")
    add("--chart", help="bar chart PNG path")
    add("--mlflow", action="store_true", help=f"log every run to MLflow experiment {MLFLOW_EXPERIMENT}")
    add("--mlflow-uri", help="tracking URI (default sqlite:///<project root>/mlflow.db)")
    add("--experiment", default=MLFLOW_EXPERIMENT)
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
