"""The ablation's results: one JSON line per finished run, appended at once and synced.

A killed command loses only the run in progress; a partial last line (a killed write) is
skipped when read and ended with a newline before the next record is appended.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fer_pipeline.files import json_safe

log = logging.getLogger(__name__)

#: File name of the results in an output folder.
RUNS_FILE = "ablation_runs.jsonl"


def read_runs(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Records of every existing file, in order; unreadable lines (a killed write) are skipped."""
    records = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: not a complete JSON line (a killed write?): skipped", path, number)
                continue
            if isinstance(record, dict) and {"strategy", "seed"} <= set(record):
                records.append(record)
    return records


def run_key(record: Mapping[str, Any]) -> tuple[str, int, str]:
    return (str(record["strategy"]), int(record["seed"]), str(record.get("fingerprint", "")))


def append_run(path: Path, record: Mapping[str, Any]) -> None:
    """One line, flushed and synced at once (after a newline if a killed write left a partial line)."""
    line = json.dumps(json_safe(record), sort_keys=False) + "\n"
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                line = "\n" + line
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
