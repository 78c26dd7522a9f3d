"""The GPU figures of the results and ablation pages, and of the README's results table, are the
committed run's (docs/gpu/metrics.json, docs/gpu/*.jsonl), not numbers retyped by hand that could
drift from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fer_pipeline.ablation.records import read_runs
from fer_pipeline.docs_inventory import expand_snippets

REPO = Path(__file__).resolve().parents[1]
GPU = REPO / "docs" / "gpu"


def page_section(page: str, heading: str) -> str:
    """From ``heading`` to the next heading of its level or above (or the page's end), as the
    site shows it: result files included by snippet are expanded."""
    text = expand_snippets((REPO / "docs" / page).read_text(encoding="utf-8"), REPO)
    start = text.index(heading)
    level = heading[:heading.index(" ")]
    ends = [text.find(f"\n{'#' * n} ", start + 1) for n in range(1, len(level) + 1)]
    return text[start:min([end for end in ends if end > 0], default=len(text))]


@pytest.fixture(scope="module")
def section() -> str:
    return page_section("results.md", "## FER2013 on the GPU (one H200)")


@pytest.fixture(scope="module")
def metrics() -> dict:
    return json.loads((GPU / "metrics.json").read_text(encoding="utf-8"))


def pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def test_privatetest_table_is_the_runs(section, metrics):
    test = metrics["evaluation"]["test"]
    for tta, label in (("none", "no TTA (the mode chosen on PublicTest)"), ("ten_crop", "ten-crop")):
        report = test[tta]
        recall = {row["class"]: row["recall"] for row in report["per_class"]}
        clean = report["without_leaked_duplicates"]
        row = (f"| {pct(report['accuracy'])} | {report['macro_f1']:.3f} | {report['balanced_accuracy']:.3f} | "
               f"{recall['disgust']:.3f} | {recall['fear']:.3f} |")
        assert row in section.replace("**", ""), (label, row)
        clean_row = (f"without the {clean['excluded']} leaked copies")
        assert clean_row in section
        assert (f"| {pct(clean['accuracy'])} | {clean['macro_f1']:.3f} | {clean['balanced_accuracy']:.3f} | "
                f"{clean['recall']['disgust']:.3f} | {clean['recall']['fear']:.3f} |") in section
    assert metrics["selection"]["tta_selected_on_val"] == "none"
    assert f"best epoch {metrics['selection']['best_epoch']} of {metrics['training']['epochs_run']}" in section


def test_time_throughput_and_checks_are_the_runs(section, metrics):
    stages, naive = metrics["stages"], metrics["naive_baseline"]
    assert f"| **{stages['training']['seconds']:.1f}** | **{stages['training']['peak_gpu_memory_mb']:,.0f}** |" in section
    assert f"**{stages['training']['images_per_s_median']:,.0f} img/s**" in section
    assert f"{naive['fast_images_per_s']:,.0f} img/s" in section and f"{naive['naive_images_per_s']:,.0f} img/s" in section
    assert f"**{naive['speedup']:.2f}×**" in section
    probe = metrics["compile_probe"]
    assert f"warm-up {probe['compile_warmup_s']:.1f} s" in section and f"**{probe['speedup']:.2f}×**" in section
    check = metrics["resume_check"]
    assert check["identical"] and f"{check['steps_per_epoch']} steps on {check['train_faces']:,} faces" in section


def test_the_readmes_headline_is_the_runs(metrics):
    """The README's results row for the GPU: PrivateTest accuracy without and with ten-crop, and
    the training's time and throughput."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| FER2013 PrivateTest accuracy, default model"))
    test, training = metrics["evaluation"]["test"], metrics["stages"]["training"]
    assert f"**{pct(test['none']['accuracy'])}** ({pct(test['ten_crop']['accuracy'])} ten-crop)" in row
    assert f"{training['seconds']:.1f} s of training at {training['images_per_s_median']:,.0f} img/s" in row


def test_ablation_records_are_the_ones_described():
    section = page_section("ablation.md", "## The ablation at GPU scale: not an answer yet")
    for name, epochs in (("ablation_1_epoch", 1), ("ablation_3_epochs", 3)):
        records = read_runs([GPU / f"{name}.jsonl"])
        assert len(records) == 18 and {r["epochs"] for r in records} == {epochs}
        assert {r["seed"] for r in records} == {0, 1} and len({r["strategy"] for r in records}) == 9
        # "at chance", as the section says: no run reaches macro-F1 0.11 or 25 % (all 'happy')
        assert max(r["val_macro_f1"] for r in records) < 0.11 and max(r["val_accuracy"] for r in records) < 0.25
        assert f"docs/gpu/{name}.md" in section
        table = (GPU / f"{name}.md").read_text(encoding="utf-8")
        assert f"Epochs per run: {epochs}." in table
    # the page shows the 3-epoch table as `ablation.py report` wrote it (included, not retyped)
    assert (GPU / "ablation_3_epochs.md").read_text(encoding="utf-8").strip() in section


def test_cpu_reevaluation_is_the_committed_one(section, metrics):
    text = " ".join(section.split())  # the prose wraps lines anywhere
    figures = {}
    for tta in ("none", "ten_crop"):
        here = json.loads((GPU / f"cpu_evaluation_{tta}.json").read_text(encoding="utf-8"))
        there = metrics["evaluation"]["test"][tta]
        assert here["tta"] == tta and here["n"] == there["n"] == 3589
        figures[tta] = (here, there)
    (here, there), (here10, there10) = figures["none"], figures["ten_crop"]
    assert f"PrivateTest {pct(here['accuracy'])}, macro-F1 {here['macro_f1']:.5f} (GPU {there['macro_f1']:.5f})" in text
    assert round(abs(here["accuracy"] - there["accuracy"]) * 3589) == 0  # "by 0.00 points without TTA"
    assert (f"{pct(here10['accuracy'])} (GPU {pct(there10['accuracy'])}), macro-F1 {here10['macro_f1']:.4f} "
            f"({there10['macro_f1']:.4f})") in text
    assert round(abs(here10["accuracy"] - there10["accuracy"]) * 3589) == 2  # "by 0.06 (2 faces) with ten-crop"
    assert f"{here['seconds']:.0f} s of scoring" in text and f"{here10['seconds']:.0f} s of scoring" in text
