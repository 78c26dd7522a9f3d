"""The README and docs/ hold commands that users copy: they must say what the code does today."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def test_no_kedro_run_with_the_deprecated_pipeline_option() -> None:
    """Kedro 1.x deprecates `kedro run --pipeline` (and warns on every run): `--pipelines` takes one
    or more. Also the option alone (`--pipeline evaluate` in a sentence about `kedro run`); only
    kedro-viz (`fer-ui viz`) has a `--pipeline` of its own."""
    singular = re.compile(r"--pipeline(?=[ =\n`]|$)")
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
             for path in _documents()
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if singular.search(line) and "viz" not in line]
    assert found == []
