"""scripts/gpu_pipeline.py and benchmarks/ablation.py on CPU, tiny generated data.

The scripts run as subprocesses in which the packages the GPU machine may lack (kedro, mlflow,
pandas, sklearn, cv2, matplotlib, PyYAML, OmegaConf, tqdm) cannot be imported, so these tests
also prove the scripts need only torch, torchvision, numpy and pillow.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
PIPELINE = REPO / "scripts" / "gpu_pipeline.py"
ABLATION = REPO / "benchmarks" / "ablation.py"

#: Importable here, maybe not on the GPU machine: made unimportable in the subprocesses.
GPU_MACHINE_MISSING = ("kedro", "kedro_datasets", "kedro_mlflow", "kedro_viz", "mlflow", "pandas", "sklearn",
                       "cv2", "matplotlib", "omegaconf", "tqdm")
_RUNNER = (
    "import runpy, sys; sys.modules.update(dict.fromkeys({missing!r})); "
    "script = sys.argv.pop(1); sys.argv[0] = script; runpy.run_path(script, run_name='__main__')"
).format(missing=GPU_MACHINE_MISSING)

#: CPU-sized settings: ResNet (imagenet stem) on a few 16-image steps, a tiny autoencoder.
TINY = [
    "--epochs", "1", "--ae-epochs", "1",
    "--set", "training.model.stem=imagenet",
    "--set", "training.config.batch_size=16",
    "--set", "training.config.steps_per_epoch=3",
    "--set", "training.config.eval_batch_size=64",
    "--set", "autoencoder.latent_dim=16",
    "--set", "autoencoder.base_channels=8",
    "--set", "autoencoder.batch_size=64",
]
#: The ablation's logic does not depend on the depth: ResNet-18 halves its CPU time.
TINY_ABLATION = [*TINY, "--set", "training.model.arch=resnet18"]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # benchmarks/ablation.py then imports this same gpu_pipeline
    spec.loader.exec_module(module)
    return module


gp = _load("gpu_pipeline", PIPELINE)
ablation = _load("ablation", ABLATION)


def run_script(script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a script as on the GPU machine (optional packages unimportable); fail with its output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("OUT", None)
    # one thread: tiny convolutions run far faster so on a small, busy CPU
    result = subprocess.run([sys.executable, "-c", _RUNNER, str(script), *args, "--threads", "1"], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(f"{script.name} {' '.join(args)} failed ({result.returncode}):\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.fixture(autouse=True)
def _drop_script_log_handlers():
    """In-process calls of the scripts' main() add log handlers to the root logger: remove them."""
    import logging

    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_gpu_scripts", False)]:
        root.removeHandler(handler)
        handler.close()


@pytest.fixture(scope="module")
def fer_demo(tmp_path_factory) -> Path:
    from fer_pipeline.core.demo_data import generate_demo_dataset

    root = tmp_path_factory.mktemp("fer_demo") / "fer2013"
    generate_demo_dataset(root, n_train=210, n_test=70, progress=False)
    return root


# ------------------------------------------------------------------------------ parameters


@pytest.mark.parametrize("path", sorted((REPO / "conf").glob("*/parameters*.yml")) + [REPO / "conf" / "ablation.yml"],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_parameter_files_read_as_kedro_reads_them(path):
    """The GPU machine's reader gives exactly what Kedro's loader (OmegaConf) gives."""
    from omegaconf import OmegaConf

    assert (gp.read_yaml_file(path) or {}) == (OmegaConf.to_container(OmegaConf.load(path)) or {})


def test_dump_params_applies_overrides(tmp_path):
    target = tmp_path / "params.json"
    gp.main(["--dump-params", str(target), "--epochs", "3", "--duplicates", "drop_leaked",
             "--set", "augmentation.policy.random_resized_crop={scale: [0.8, 1.0]}"])
    params = json.loads(target.read_text())
    defaults = gp.load_parameters()
    assert params["training"]["config"]["epochs"] == 3
    assert params["ingestion"]["duplicates"] == "drop_leaked"
    assert params["augmentation"]["policy"]["random_resized_crop"] == {"scale": [0.8, 1.0]}
    assert params["autoencoder"] == defaults["autoencoder"]
    with pytest.raises(KeyError):
        gp.apply_sets(defaults, ["trainig.config.epochs=3"])  # a typo in a group name is an error


# ------------------------------------------------------------------------------ metrics / decoding


def test_numpy_metrics_match_compute_metrics():
    from fer_pipeline.core.evaluate import compute_metrics

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 300)
    labels[labels == 1] = 0  # a class absent from the labels
    logits = rng.normal(size=(300, 7)) + 2.0 * np.eye(7)[labels] * (rng.random(300) < 0.5)[:, None]
    ours, reference = gp.classification_report(labels, logits), compute_metrics(labels, logits)
    for key in ("n", "accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "top2_accuracy", "nll", "ece"):
        assert ours[key] == pytest.approx(reference[key], abs=1e-12), key
    for mine, theirs in zip(ours["per_class"], reference["per_class"]):
        assert mine == pytest.approx(theirs)
    assert ours["confusion"] == reference["confusion"]


def test_gpu_pipeline_end_to_end(fer_demo, tmp_path, capsys):
    """As on the GPU machine: the dataset comes as a .tar.gz, cv2 & co. are missing."""
    import tarfile

    archive = tmp_path / ".gpu_data" / "fer2013.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fer_demo, arcname="fer2013")
        # FER2013's test splits hold copies of training images: one here too
        tar.add(next((fer_demo / "train" / "happy").glob("*.jpg")),
                arcname="fer2013/test/happy/PrivateTest_99999.jpg")
    out = tmp_path / "out"
    result = run_script(PIPELINE, "--data", str(archive), "--out", str(out), "--work", str(tmp_path / "work"),
                        *TINY, "--naive-baseline-steps", "1", "--naive-workers", "0", cwd=tmp_path)
    files = sorted(p.name for p in out.iterdir())
    # what the device returns: at most 8 files of at most 16 MiB each (the float16 model in parts)
    assert files == ["confusion.csv", "history.csv", "metrics.json", "per_class.csv", "pipeline.log",
                     "resnet34_fp16.pt.part0", "resnet34_fp16.pt.part1", "resnet34_fp16.pt.part2"]
    assert all((out / name).stat().st_size <= 15 * 2**20 for name in files)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "complete"
    assert metrics["ingestion"]["decoder"].startswith("pillow")  # cv2 was unimportable
    assert metrics["ingestion"]["split_sizes"] == {"train": 210, "val": 35, "test": 36}
    assert metrics["ingestion"]["quarantined"] == 0 and metrics["ingestion"]["source_path"].endswith("/fer2013")
    for stage in ("ingestion", "class_balance", "autoencoder", "oversampling", "augmentation", "training",
                  "evaluation", "naive_baseline"):
        assert metrics["stages"][stage]["seconds"] >= 0
    for split in ("val", "test"):
        for tta in ("none", "ten_crop"):
            report = metrics["evaluation"][split][tta]
            assert 0.0 <= report["accuracy"] <= 1.0 and 0.0 <= report["macro_f1"] <= 1.0
            assert report["n"] == 35 + (split == "test") and report["tta"] == tta and len(report["per_class"]) == 7
        # the same model scored without the leaked copy (val has none)
        assert metrics["evaluation"]["val"][tta]["without_leaked_duplicates"] is None
        clean = metrics["evaluation"]["test"][tta]["without_leaked_duplicates"]
        assert (clean["n"], clean["excluded"]) == (35, 1) and 0.0 <= clean["accuracy"] <= 1.0
        assert metrics["headline"][f"test_{tta}_without_leaked_accuracy"] == clean["accuracy"]
    assert metrics["evaluation"]["test"]["none"]["fer_split"] == "PrivateTest"
    # the model (best epoch) and the TTA mode are chosen on PublicTest (val), never on test
    assert metrics["selection"]["split"] == "val" and metrics["selection"]["fer_split"] == "PublicTest"
    assert metrics["selection"]["tta_selected_on_val"] in ("none", "ten_crop")
    # the stages' records (core.stages, shared with the Kedro nodes): the node's table format
    assert metrics["class_balance"]["train_counts"] == [metrics["ingestion"]["counts"]["train"][c] for c in gp.CLASSES]
    assert len(metrics["class_balance"]["table"]) == 3 * 7
    errors = metrics["autoencoder"]["reconstruction_error"]
    assert [row["class"] for row in errors] == list(gp.CLASSES) and sum(row["n"] for row in errors) == 210
    assert {"mse_effective_number", "mse_none", "mse_change_pct"} <= set(errors[0])
    assert len(metrics["autoencoder"]["twin_history"]) == 1
    added = sum(metrics["oversampling"]["added"].values())
    assert metrics["augmentation"]["training_set_size"] == 210 and metrics["augmentation"]["synthetic_faces"] == 0
    assert added > 0 and metrics["training"]["train_images"] == 210  # use_synthetic is off by default
    assert metrics["training"]["select_metric"] == "macro_f1"
    assert metrics["training"]["train_config"]["epochs"] == 1
    assert metrics["training"]["model_config"]["arch"] == "resnet34"
    assert metrics["parameters"]["training"]["config"]["loss"] == "ce"  # defaults otherwise
    assert metrics["throughput"]["train_images_per_s_median"] > 0
    assert metrics["naive_baseline"]["speedup"] > 0
    work = tmp_path / "work"
    assert metrics["files"]["model"]["bytes"] == (work / "resnet34.pt").stat().st_size
    assert metrics["files"]["autoencoder"]["bytes"] == (work / "autoencoder.pt").stat().st_size
    returned = metrics["returned_model"]
    assert returned["dtype"] == "float16" and returned["parts"] == files[-3:]
    assert sum(returned["part_bytes"]) == returned["file"]["bytes"] < 0.52 * metrics["files"]["model"]["bytes"]
    for split in ("val", "test"):
        check = returned["float16_vs_float32"][split]
        n = check["n"]
        assert n == 35 + (split == "test") and 0 <= check["predictions_changed"] <= n
        assert check["accuracy_float32"] == pytest.approx(metrics["evaluation"][split]["none"]["accuracy"])
        assert abs(check["accuracy_float16"] - check["accuracy_float32"]) <= check["predictions_changed"] / n + 1e-12

    with open(out / "per_class.csv", newline="") as handle:
        per_class = list(csv.DictReader(handle))
    assert len(per_class) == 2 * 2 * 7 and {"recall", "precision", "f1", "support"} <= set(per_class[0])
    with open(out / "confusion.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 2 * 2 * 7
    with open(out / "history.csv", newline="") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["0"]
    assert "PrivateTest (test)" in result.stdout and "stage" in result.stdout
    assert "PrivateTest -1 leaked" in result.stdout

    from fer_pipeline.core.models import load_model

    # back here: join the parts where the catalog expects the model, sha256 checked
    dest = tmp_path / "data" / "06_models" / "resnet34.pt"
    assembled = run_script(PIPELINE, "--assemble-model", str(out), str(dest), cwd=tmp_path)
    assert "sha256 checked" in assembled.stdout
    model, config = load_model(dest)
    assert config["classes"] == list(gp.CLASSES) and config["input_size"] == 44
    reference, _ = load_model(work / "resnet34.pt")
    x = torch.randn(4, 1, 44, 44)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=0.05, rtol=0.01)

    # the figures, drawn here (with matplotlib) from the returned files
    gp.main(["--figures", str(out), str(tmp_path / "figures")])
    drawn = capsys.readouterr().out
    for name in ("training_curves.png", "confusion_matrix.png", "confusion_matrix_normalized.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 10_000 and name in drawn

    # a part lost on the way: refused with a message, nothing written
    (out / "resnet34_fp16.pt.part1").unlink()
    with pytest.raises(SystemExit, match="part\\(s\\) \\[1\\] missing"):
        gp.main(["--assemble-model", str(out), str(tmp_path / "other.pt")])
    assert not (tmp_path / "other.pt").exists()


# ------------------------------------------------------------------------------ ablation.py


def test_ablation_config_strategies_are_overrides():
    config = ablation.load_ablation()
    assert len(config["seeds"]) >= 2
    assert list(config["strategies"]) == [
        "ce", "weighted_ce", "cb_focal", "ldam_drw", "logit_adjusted", "ae_oversample_ce",
        "ae_oversample_logit_adjusted", "aux_reconstruction", "class_balanced_sampler"]
    defaults = gp.load_parameters()
    runs = {name: ablation.run_parameters(defaults, config, name, 7) for name in config["strategies"]}
    epochs = {params["training"]["config"]["epochs"] for params in runs.values()}
    assert epochs == {config["common"]["training"]["config"]["epochs"]}  # one schedule for all
    assert runs["ce"]["training"]["config"]["loss"] == "ce" and runs["ce"]["training"]["config"]["seed"] == 7
    assert runs["ae_oversample_logit_adjusted"]["augmentation"]["use_synthetic"] is True
    assert runs["aux_reconstruction"]["training"]["model"]["aux_reconstruction"] is True
    assert runs["class_balanced_sampler"]["augmentation"]["sampler"] == "class_balanced"
    # the rest of every strategy is the default configuration
    assert runs["cb_focal"]["augmentation"]["policy"] == defaults["augmentation"]["policy"]
    assert len({ablation.run_fingerprint(p, None) for p in runs.values()}) == len(runs)


def test_ablation_runs_resume_and_skip_done(fer_demo, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    common = ["run", "--data", str(fer_demo), "--out", str(out), "--work", str(work), "--seeds", "0,1", *TINY_ABLATION]
    runs_file = out / "ablation_runs.jsonl"

    run_script(ABLATION, *common, "--only", "ce", cwd=tmp_path)
    first = runs_file.read_text().splitlines()
    assert len(first) == 2
    with open(runs_file, "a") as handle:  # a command killed while writing its last line
        handle.write('{"strategy": "logit_adj')

    result = run_script(ABLATION, *common, "--only", "ce,ae_oversample_logit_adjusted", cwd=tmp_path)
    records = ablation.read_runs([runs_file])
    assert [(r["strategy"], r["seed"]) for r in records] == [
        ("ce", 0), ("ce", 1), ("ae_oversample_logit_adjusted", 0), ("ae_oversample_logit_adjusted", 1)]
    assert runs_file.read_text().splitlines()[:2] == first  # the ce runs were not repeated
    assert "2 already done, 2 to run" in result.stdout
    for record in records:
        assert record["select_split"] == "val" and record["select_metric"] == "macro_f1"
        for key in ("val_macro_f1", "val_accuracy", "test_accuracy", "test_macro_f1", "test_balanced_accuracy"):
            assert 0.0 <= record[key] <= 1.0
        assert set(record["test_recall"]) == set(gp.CLASSES) and record["train_seconds"] > 0
    synthetic = [r for r in records if r["use_synthetic"]]
    assert all(r["synthetic_images"] > 0 and r["loss"] == "logit_adjusted" for r in synthetic)
    assert len(list((work / "ablation").glob("synthetic_*.npz"))) == 2  # one autoencoder per seed

    # another machine: earlier results come in with --done and are not run again
    fresh = tmp_path / "fresh"
    assert ablation.main(["run", "--out", str(fresh), "--done", str(runs_file), "--seeds", "0,1",
                          "--only", "ce,ae_oversample_logit_adjusted", *TINY_ABLATION, "--dry-run"]) == 0
    ablation.main(["run", "--out", str(fresh), "--done", str(runs_file), "--seeds", "0,1",
                   "--only", "ce,ae_oversample_logit_adjusted", *TINY_ABLATION])  # nothing left: trains nothing
    assert len(ablation.read_runs([fresh / "ablation_runs.jsonl"])) == 4


def _record(strategy: str, seed: int, val_f1: float, test_f1: float) -> dict:
    return {"strategy": strategy, "seed": seed, "fingerprint": f"{strategy}-fp", "schedule": "s", "epochs": 15,
            "loss": "ce", "val_macro_f1": val_f1, "val_accuracy": 0.6, "test_accuracy": 0.6,
            "test_macro_f1": test_f1, "test_balanced_accuracy": 0.55, "train_seconds": 60.0,
            "test_recall": {"disgust": 0.3, "fear": 0.4}, "val_recall": {"disgust": 0.3, "fear": 0.4},
            "select_split": "val", "overrides": {}}


def test_report_picks_best_on_val_not_test(tmp_path):
    # val says "val_winner", test says "test_winner": the choice must follow val
    records = [_record("val_winner", 0, 0.62, 0.50), _record("val_winner", 1, 0.64, 0.52),
               _record("test_winner", 0, 0.55, 0.70), _record("test_winner", 1, 0.57, 0.72)]
    runs_file = tmp_path / "runs.jsonl"
    runs_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    rows = ablation.summarize(records)
    assert ablation.best_strategy(rows) == "val_winner"
    by_name = {row["strategy"]: row for row in rows}
    assert by_name["val_winner"]["val_macro_f1"] == pytest.approx((0.63, 0.0141421), abs=1e-6)  # mean, std
    assert by_name["test_winner"]["test_macro_f1"][0] == pytest.approx(0.71)

    chart, table, db = tmp_path / "chart.png", tmp_path / "table.md", tmp_path / "mlflow.db"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    result = subprocess.run(
        [sys.executable, str(ABLATION), "report", "--runs", str(runs_file), "--chart", str(chart), "--markdown",
         str(table), "--mlflow", "--mlflow-uri", f"sqlite:///{db}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    text = table.read_text()
    assert "| **val_winner** (best) | 0,1 | 63.0 ± 1.4 |" in text
    assert "| test_winner | 0,1 | 56.0 ± 1.4 |" in text
    assert "Best strategy by mean PublicTest (val) macro-F1: **val_winner**" in text
    assert chart.stat().st_size > 1000 and "4 runs logged" in result.stdout

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("fer_ablation")
    logged = client.search_runs([experiment.experiment_id])
    assert sorted((r.data.params["strategy"], r.data.params["seed"]) for r in logged) == [
        ("test_winner", "0"), ("test_winner", "1"), ("val_winner", "0"), ("val_winner", "1")]
    assert all("val_macro_f1" in r.data.metrics and "test_recall.disgust" in r.data.metrics for r in logged)
