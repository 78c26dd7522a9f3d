"""scripts/gpu_session.sh, the GPU machine's one command, on tiny generated data and this CPU:
the packages that machine lacks unimportable, the archive carried as there, at most 8 files back."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile

import pytest

from fer_pipeline.ablation.records import read_runs
from tests.gpu_machine import REPO, TINY, bare_site_packages

SESSION = REPO / "scripts" / "gpu_session.sh"
#: The ablation's runs shrunk as TINY shrinks the pipeline's (its epochs are the script's to choose).
TINY_RUNS = ["--set", "training.model.arch=resnet18", "--set", "training.model.stem=imagenet",
             "--set", "training.config.batch_size=16", "--set", "training.config.steps_per_epoch=2",
             "--set", "training.config.eval_batch_size=64", "--set", "autoencoder.latent_dim=16",
             "--set", "autoencoder.base_channels=8", "--set", "autoencoder.batch_size=64", "--ae-epochs", "1"]
#: The ablation runs' configured epochs, 12 in conf/ablation.yml, cut to take seconds: the time fit
#: never chooses more than configured.
ABLATION_EPOCHS = 3


@pytest.mark.slow
def test_gpu_session_returns_pipeline_resume_check_and_fitted_ablation(fer_demo_folder, tmp_path):
    archive = tmp_path / "fer2013.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fer_demo_folder, arcname="fer2013")
    out, work, results = tmp_path / "out", tmp_path / "work", tmp_path / "gpu_results"
    env = {**os.environ, "OUT": str(out), "DATA": str(archive), "WORK": str(work), "RESULTS": str(results),
           "PYTHON": f"{sys.executable} -S", "PYTHONPATH": str(bare_site_packages()), "OMP_NUM_THREADS": "1",
           # 20 epochs asked, a few seconds of training left by the reserve: the deadline cuts them
           "PIPELINE_ARGS": " ".join([*TINY, "--epochs", "20", "--reserve-s", "363", "--naive-baseline-steps", "1",
                                      "--naive-workers", "0", "--compile-probe-steps", "0", "--resume-check-steps",
                                      "1", "--threads", "1"]),
           "ABLATION_ARGS": " ".join(["--only", "ce,ae_oversample_ce", "--seeds", "0", "--threads", "1", *TINY_RUNS,
                                       "--set", f"training.config.epochs={ABLATION_EPOCHS}"])}
    result = subprocess.run(["bash", str(SESSION), "400"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    returned = sorted(p.name for p in out.iterdir())
    assert returned == ["metrics.json", "resnet34_fp16.pt.part0", "resnet34_fp16.pt.part1",
                        "resnet34_fp16.pt.part2", "results.tar.gz"]  # at most 8 files come back
    with tarfile.open(out / "results.tar.gz") as tar:
        names = set(tar.getnames())
    for name in ("machine.txt", "pipeline/metrics.json", "pipeline/history.csv", "pipeline/pipeline.log",
                 "ablation/ablation_runs.jsonl", "ablation/ablation.log"):
        assert f"gpu_results/{name}" in names

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "complete"
    assert metrics["resume_check"]["identical"] is True and metrics["resume_check"]["resumed_from_epoch"] == 2
    fit = metrics["epoch_fit"]
    assert fit["configured_epochs"] == 20 and 1 <= fit["epochs"] < 20
    assert metrics["training"]["epochs_run"] == fit["epochs"]  # the cut schedule ran to its end
    train_config = metrics["training"]["train_config"]
    assert train_config["epochs"] == fit["epochs"] and train_config["drw_epoch"] == int(40 * fit["epochs"] / 20)
    assert (work / "dataset.npz").is_file()

    fitted = int(re.search(r"ablation: (\d+) epochs per run", result.stdout).group(1))
    recorded = json.loads((results / "ablation" / "ablation_fit.json").read_text())
    assert recorded["epochs"] == fitted and recorded["run_overhead_s"] == 3 and recorded["runs"] == 2
    assert recorded["configured_epochs"] == ABLATION_EPOCHS
    records = read_runs([results / "ablation" / "ablation_runs.jsonl"])
    assert [(r["strategy"], r["seed"]) for r in records] == [("ce", 0), ("ae_oversample_ce", 0)]
    # one schedule, at most the configured epochs
    assert 1 <= fitted <= ABLATION_EPOCHS and {r["epochs"] for r in records} == {fitted}
    assert "gpu_session: pipeline exit 0" in result.stdout and "gpu_session: ablation exit 0" in result.stdout
