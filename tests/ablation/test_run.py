"""fer_pipeline.ablation through benchmarks/ablation.py run: runs recorded at once, resumed, skipped."""

from __future__ import annotations

import pytest

from fer_pipeline.ablation.cli import main
from fer_pipeline.ablation.records import read_runs
from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.models import load_model
from tests.gpu_machine import ABLATION, TINY_ABLATION, run_like_gpu_machine


@pytest.mark.slow
def test_ablation_runs_resume_and_skip_done(fer_demo_folder, tmp_path, runner_log_handlers_removed):
    out, work = tmp_path / "out", tmp_path / "work"
    common = ["run", "--data", str(fer_demo_folder), "--out", str(out), "--work", str(work), "--seeds", "0,1", *TINY_ABLATION]
    runs_file = out / "ablation_runs.jsonl"

    run_like_gpu_machine(ABLATION, *common, "--only", "ce", cwd=tmp_path)
    first = runs_file.read_text().splitlines()
    assert len(first) == 2
    with open(runs_file, "a") as handle:  # a command killed while writing its last line
        handle.write('{"strategy": "logit_adj')

    result = run_like_gpu_machine(ABLATION, *common, "--only", "ce,ae_oversample_logit_adjusted", cwd=tmp_path)
    records = read_runs([runs_file])
    assert [(r["strategy"], r["seed"]) for r in records] == [
        ("ce", 0), ("ce", 1), ("ae_oversample_logit_adjusted", 0), ("ae_oversample_logit_adjusted", 1)]
    assert runs_file.read_text().splitlines()[:2] == first  # the ce runs were not repeated
    assert "2 already done, 2 to run" in result.stdout
    for record in records:
        assert record["select_split"] == "val" and record["select_metric"] == "macro_f1"
        for key in ("val_macro_f1", "val_accuracy", "test_accuracy", "test_macro_f1", "test_balanced_accuracy"):
            assert 0.0 <= record[key] <= 1.0
        assert set(record["test_recall"]) == set(CLASSES) and record["train_seconds"] > 0
    synthetic = [r for r in records if r["use_synthetic"]]
    assert all(r["synthetic_images"] > 0 and r["loss"] == "logit_adjusted" for r in synthetic)
    assert len(list((work / "ablation").glob("synthetic_*.npz"))) == 2  # one autoencoder per seed
    kept = sorted(path.name for path in (work / "models").glob("*.pt"))  # each run's selected model
    assert kept == ["ae_oversample_logit_adjusted_seed0.pt", "ae_oversample_logit_adjusted_seed1.pt",
                    "ce_seed0.pt", "ce_seed1.pt"]
    model, config = load_model(work / "models" / "ce_seed0.pt")
    assert config["classes"] == list(CLASSES) and not model.training

    # another machine: earlier results come in with --done and are not run again
    fresh = tmp_path / "fresh"
    assert main(["run", "--out", str(fresh), "--done", str(runs_file), "--seeds", "0,1",
                          "--only", "ce,ae_oversample_logit_adjusted", *TINY_ABLATION, "--dry-run"]) == 0
    main(["run", "--out", str(fresh), "--done", str(runs_file), "--seeds", "0,1",
                   "--only", "ce,ae_oversample_logit_adjusted", *TINY_ABLATION])  # nothing left: trains nothing
    assert len(read_runs([fresh / "ablation_runs.jsonl"])) == 4


def test_a_run_on_an_environment_records_its_machine_and_reaches_mlflow(fer_demo_folder, tmp_path,
                                                                       runner_log_handlers_removed):
    """--env cpu: the cpu environment's parameters under the ablation's; the record says where
    and how it ran, with its epoch history; --mlflow-uri logs it the moment it is written."""
    out, db = tmp_path / "out", tmp_path / "mlflow.db"
    assert main(["run", "--env", "cpu", "--data", str(fer_demo_folder), "--out", str(out), "--work",
                 str(tmp_path / "work"), "--only", "ce", "--seeds", "0", *TINY_ABLATION, "--epochs", "2",
                 "--threads", "1", "--mlflow-uri", f"sqlite:///{db}", "--experiment", "fer_ablation_cpu"]) == 0
    [record] = read_runs([out / "ablation_runs.jsonl"])
    assert record["env"] == "cpu" and record["optimizer"] == "adamw"  # conf/cpu's, under the ablation's
    assert record["machine"]["name"] and "bf16_units" in record["machine"] and record["torch"]
    assert record["precision"] in ("bfloat16", "float32") and record["wall_seconds"] >= record["train_seconds"]
    assert [row["epoch"] for row in record["history"]] == [0, 1]
    assert {"test_clean_accuracy", "test_clean_macro_f1", "test_clean_excluded"} <= set(record)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    [logged] = client.search_runs([client.get_experiment_by_name("fer_ablation_cpu").experiment_id])
    assert logged.data.params["env"] == "cpu" and logged.data.tags["precision"] == record["precision"]
    assert logged.data.metrics["val_macro_f1"] == record["val_macro_f1"]
    curve = client.get_metric_history(logged.info.run_id, "epoch.val_macro_f1")
    assert [m.step for m in sorted(curve, key=lambda m: m.step)] == [0, 1]
    assert all(f"test_recall.{name}" in logged.data.metrics for name in CLASSES)


@pytest.mark.slow
def test_a_stopped_run_resumes_from_its_last_epoch(fer_demo_folder, tmp_path, monkeypatch, runner_log_handlers_removed):
    """A command stopped mid-run (the session ended) loses at most an epoch: the next command
    resumes the run from its checkpoint, records how many epochs it found done, and removes it."""
    from fer_pipeline.ablation import run as ablation_run

    out, work = tmp_path / "out", tmp_path / "work"
    args = ["run", "--data", str(fer_demo_folder), "--out", str(out), "--work", str(work), "--seeds", "0",
            "--only", "ce", *TINY_ABLATION, "--epochs", "2"]
    trainer = ablation_run.train_resnet

    def stopped_after_one_epoch(*a, **k):
        def stop(epoch, row):
            raise KeyboardInterrupt("the session ended")
        return trainer(*a, **k, on_epoch=stop)

    monkeypatch.setattr(ablation_run, "train_resnet", stopped_after_one_epoch)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    assert (work / "checkpoints" / "ce_seed0" / "last.pt").is_file() and not (out / "ablation_runs.jsonl").exists()
    monkeypatch.setattr(ablation_run, "train_resnet", trainer)
    assert main(args) == 0
    [record] = read_runs([out / "ablation_runs.jsonl"])
    assert record["resumed_from_epoch"] == 1 and len(record["history"]) == 2
    assert not (work / "checkpoints" / "ce_seed0").exists()
