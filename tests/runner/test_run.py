"""fer_pipeline.runner.run through scripts/gpu_pipeline.py, as on the GPU machine, on tiny generated data."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.runner import cli as runner_cli
from fer_pipeline.runner import measurements, records
from tests.gpu_machine import GPU_PIPELINE, TINY, run_like_gpu_machine


@pytest.mark.slow
def test_gpu_pipeline_end_to_end(fer_demo_folder, tmp_path, capsys, runner_log_handlers_removed):
    """As on the GPU machine: the dataset comes as a .tar.gz, cv2 & co. are missing."""
    import tarfile

    archive = tmp_path / ".gpu_data" / "fer2013.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fer_demo_folder, arcname="fer2013")
        # FER2013's test splits hold copies of training images: one here too
        tar.add(next((fer_demo_folder / "train" / "happy").glob("*.jpg")),
                arcname="fer2013/test/happy/PrivateTest_99999.jpg")
    out = tmp_path / "out"
    # an external set of crops, scored after FER2013 (decoded with Pillow here: no cv2)
    from tests.core.external_sets import CROP_FOLDERS, write_crops

    crops = write_crops(tmp_path / "ck")
    external = f"evaluate.external_sets={{ck: {{path: '{crops}', kind: crops, class_map: {{anger: angry, sadness: sad, contempt: null}}}}}}"
    result = run_like_gpu_machine(GPU_PIPELINE, "--data", str(archive), "--out", str(out), "--work", str(tmp_path / "work"),
                        *TINY, "--naive-baseline-steps", "1", "--naive-workers", "0", "--set", external, "--set", "evaluate.tta=choose_on_val", cwd=tmp_path)
    files = sorted(p.name for p in out.iterdir())
    # eight files, none over --part-mib (15 MiB): the float16 model comes in parts
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
    ck = metrics["external"]["ck"]
    assert ck["scored"] == sum(CROP_FOLDERS.values()) - CROP_FOLDERS["contempt"]
    assert metrics["external_headline"]["eval.external.ck.accuracy"] == ck["metrics"]["accuracy"]
    # the model (best epoch) and the TTA mode are chosen on PublicTest (val), never on test
    assert metrics["selection"]["split"] == "val" and metrics["selection"]["fer_split"] == "PublicTest"
    assert metrics["selection"]["tta_selected_on_val"] in ("none", "ten_crop")
    # the stages' records (core.stages, shared with the Kedro nodes): the node's table format
    assert metrics["class_balance"]["train_counts"] == [metrics["ingestion"]["counts"]["train"][c] for c in CLASSES]
    assert len(metrics["class_balance"]["table"]) == 3 * 7
    errors = metrics["autoencoder"]["reconstruction_error"]
    assert [row["class"] for row in errors] == list(CLASSES) and sum(row["n"] for row in errors) == 210
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
    assembled = run_like_gpu_machine(GPU_PIPELINE, "--assemble-model", str(out), str(dest), cwd=tmp_path)
    assert "sha256 checked" in assembled.stdout
    model, config = load_model(dest)
    assert config["classes"] == list(CLASSES) and config["input_size"] == 44
    # `kedro run --pipelines ingestion` here (OpenCV) on the same files makes the dataset the GPU
    # box (Pillow) trained on: the evaluation's dataset check accepts the returned model
    import shutil

    from fer_pipeline.core.evaluation.dataset_identity import dataset_id
    from fer_pipeline.core.ingestion import decoder_name
    from fer_pipeline.core.ingestion.dataset import build_dataset
    from fer_pipeline.params import load_parameters

    here = tmp_path / "fer2013_here"
    shutil.copytree(fer_demo_folder, here)
    shutil.copy(next((here / "train" / "happy").glob("*.jpg")), here / "test" / "happy" / "PrivateTest_99999.jpg")
    ingestion = load_parameters(GPU_PIPELINE.parents[1] / "conf" / "base")["ingestion"]
    dataset_here, _ = build_dataset(here, ingestion)
    assert decoder_name().startswith("opencv")
    assert config["training_data"]["dataset_id"] == dataset_id(dataset_here)
    reference, _ = load_model(work / "resnet34.pt")
    x = torch.randn(4, 1, 44, 44)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=0.05, rtol=0.01)

    # the figures, drawn here (with matplotlib) from the returned files
    runner_cli.main(["--figures", str(out), str(tmp_path / "figures")])
    drawn = capsys.readouterr().out
    for name in ("training_curves.png", "confusion_matrix.png", "confusion_matrix_normalized.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 10_000 and name in drawn

    # a part lost on the way: refused with a message, nothing written
    (out / "resnet34_fp16.pt.part1").unlink()
    with pytest.raises(SystemExit, match="part\\(s\\) \\[1\\] missing"):
        runner_cli.main(["--assemble-model", str(out), str(tmp_path / "other.pt")])
    assert not (tmp_path / "other.pt").exists()


@pytest.fixture
def small_run(fer_demo_folder, tmp_path):
    """A PipelineRun on the demo faces with a CPU-sized model step."""
    from fer_pipeline.params import apply_sets, load_parameters

    params = apply_sets(load_parameters(GPU_PIPELINE.parents[1] / "conf" / "base"), [
        "training.model.stem=imagenet", "training.config.batch_size=8", "training.config.amp=off"])
    return records.PipelineRun(params, fer_demo_folder, tmp_path / "out", tmp_path / "work", torch.device("cpu"), [])


def test_compile_probe_is_timed_beside_the_eager_fast_path(small_run, monkeypatch, one_torch_thread):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model: compiled.append(model) or model)  # inductor is slow on CPU
    small_run.out.mkdir()
    measurements.run_naive_baseline(small_run, steps=1, workers=0, compile_steps=1)
    baseline, probe = small_run.metrics["naive_baseline"], small_run.metrics["compile_probe"]
    assert len(compiled) == 1  # the probe's model only
    assert baseline["compile"] is False and baseline["speedup"] > 0 and baseline["fast_warmup_s"] > 0
    assert probe["steps"] == 1 and probe["compiled_images_per_s"] > 0 and probe["compile_warmup_s"] > 0
    assert probe["speedup"] == pytest.approx(probe["compiled_images_per_s"] / baseline["fast_images_per_s"])
    assert json.loads((small_run.out / "metrics.json").read_text())["compile_probe"]["steps"] == 1


def test_a_failed_measurement_is_recorded_unless_the_run_is_being_stopped(small_run, monkeypatch):
    from fer_pipeline.runner import throughput
    def broken(*args, **kwargs):
        raise RuntimeError("DataLoader worker is killed by signal: Terminated")

    monkeypatch.setattr(throughput, "naive_vs_fast", broken)
    small_run.out.mkdir()
    measurements.run_naive_baseline(small_run, steps=1, workers=0)
    assert "killed by signal" in small_run.metrics["naive_baseline"]["error"]
    monkeypatch.setattr(measurements, "_terminating", True)  # SIGTERM came: the run must stop, not carry on
    with pytest.raises(RuntimeError, match="killed by signal"):
        measurements.run_naive_baseline(small_run, steps=1, workers=0)


def test_training_epochs_are_cut_to_the_time_left_never_raised(small_run, fer_demo_folder):
    from fer_pipeline.runner.dataset_loading import load_dataset

    dataset, _ = load_dataset(fer_demo_folder, small_run.params["ingestion"], small_run.work)
    small_run.out.mkdir()
    small_run.work.mkdir()
    small_run.params["training"]["config"]["batch_size"] = 10  # 210 faces: 21 steps, 210 images an epoch
    small_run.metrics["naive_baseline"] = {"fast_images_per_s": 210.0}
    epoch = 1.0 * measurements.EPOCH_OVERHEAD + measurements.EPOCH_FIXED_SECONDS
    measurements.fit_training_epochs(small_run, dataset, {"labels": []}, seconds_left=60 + 10.5 * epoch, reserve_seconds=60)
    config = small_run.params["training"]["config"]
    assert config["epochs"] == 10 and config["drw_epoch"] == 40 * 10 // 60  # DRW cut in proportion
    assert small_run.metrics["epoch_fit"]["configured_epochs"] == 60
    # run again in the same --work (a resumed command): the same schedule, whatever time is left now
    small_run.params["training"]["config"].update(epochs=60, drw_epoch=40)
    measurements.fit_training_epochs(small_run, dataset, {"labels": []}, seconds_left=10**6, reserve_seconds=60)
    assert config["epochs"] == 10
    (small_run.work / measurements.EPOCH_FIT_FILE).unlink()  # what --fresh does
    measurements.fit_training_epochs(small_run, dataset, {"labels": []}, seconds_left=60 + 5.5 * epoch, reserve_seconds=60)
    assert config["epochs"] == 5
