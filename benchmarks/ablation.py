"""The class-imbalance ablation: every strategy of conf/ablation.yml x every seed, a thin command
line over ``fer_pipeline.ablation`` (read its modules for the plan, the records and the report).

A strategy is a set of parameter overrides on the defaults (conf/base) after a shortened
schedule common to all; every finished run is appended at once to ``--out/ablation_runs.jsonl``
and runs already recorded there, or in a ``--done`` file, are skipped, so the same command
resumes. ``--only STRATEGY[,..]`` and ``--seeds 0,1`` split the work across commands.

GPU machine, from the repository root (``.gpu_data/`` carried; after each command copy the
returned ablation_runs.jsonl to .gpu_data/ablation_runs.jsonl so the next command, even on a
fresh machine, continues from it)::

    PYTHONUNBUFFERED=1 PYTHONPATH=src python3 benchmarks/ablation.py run --data .gpu_data/fer2013.tar.gz \\
        --out $OUT --done .gpu_data/ablation_runs.jsonl --only ce,weighted_ce,cb_focal

Here (``--chart`` needs matplotlib, ``--mlflow`` needs mlflow)::

    python benchmarks/ablation.py report --runs .gpu_data/ablation_runs.jsonl \\
        --chart docs/ablation.png --markdown docs/ablation.md --mlflow

The report marks the best strategy by mean PublicTest (val) macro-F1 over seeds; PrivateTest
columns are reported, never used to choose.
"""

import sys

try:
    from fer_pipeline.ablation.cli import main
except ModuleNotFoundError as exc:  # pragma: no cover - a checkout where the package is not importable
    if exc.name != "fer_pipeline":
        raise
    sys.exit("ablation.py: fer_pipeline is not importable: install it (pip install -e .) or run from the "
             "repository root with PYTHONPATH=src")

if __name__ == "__main__":
    sys.exit(main())
