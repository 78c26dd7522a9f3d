"""benchmarks/bench_backends.py's bookkeeping: interleaved rounds keep each run's best rate, and the
table has a column per model and a row per measure."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_backends.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_backends", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_best_of_interleaves_the_runs_after_a_warm_up_each(bench):
    calls = []
    rates = {"a": iter([1.0, 5.0, 3.0]), "b": iter([9.0, 2.0, 4.0])}

    def run(name):
        def call():
            calls.append(name)
            return next(rates[name])
        return call

    assert bench.best_of(2, {"a": run("a"), "b": run("b")}) == {"a": 5.0, "b": 4.0}  # warm-ups not counted
    assert calls == ["a", "b", "a", "b", "a", "b"]


def test_the_table_has_a_column_per_model(bench):
    text = bench.table(["default", "cpu"], [("crops/s, torch float32", ["1.0", "2.0"])])
    assert text.splitlines() == ["| | default | cpu |", "|---|---:|---:|", "| crops/s, torch float32 | 1.0 | 2.0 |"]
