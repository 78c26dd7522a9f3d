"""fer_pipeline.files: JSON-safe values, atomic JSON, CSV round trips, file digests."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from fer_pipeline.files import atomic_path, file_info, json_safe, read_csv, write_csv, write_json


def test_json_safe_converts_numpy_non_finite_and_paths():
    value = {"a": np.float32(1.5), "b": np.arange(3), "c": math.inf, "d": (Path("x/y"), np.bool_(True)), 4: None}
    assert json_safe(value) == {"a": 1.5, "b": [0, 1, 2], "c": None, "d": ["x/y", True], "4": None}


def test_write_json_is_atomic_and_valid(tmp_path):
    write_json(tmp_path / "metrics.json", {"accuracy": np.float64(0.5), "nan": float("nan")})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"accuracy": 0.5, "nan": None}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left


def test_an_atomic_write_that_fails_keeps_the_old_file_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "report.json"
    write_json(target, {"run": 1})
    with pytest.raises(OSError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_text('{"run": 2, "half')
        raise OSError("disk full")
    assert json.loads(target.read_text()) == {"run": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_an_atomic_path_keeps_the_suffix_a_writer_needs_and_makes_the_folder(tmp_path):
    target = tmp_path / "new" / "arrays.npz"
    with atomic_path(target, suffix=".npz") as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith(".npz") and tmp.name.startswith(".arrays.npz.")
        np.savez(tmp, a=np.arange(3))  # any other suffix and savez writes <name>.npz beside it
    with np.load(target) as stored:
        assert list(stored["a"]) == [0, 1, 2]
    assert [p.name for p in target.parent.iterdir()] == ["arrays.npz"]
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second  # two writers of one file never share a temporary file
        first.write_bytes(b"1")
        second.write_bytes(b"2")
    assert target.read_bytes() == b"1"  # the last to finish wins, whole
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as any new file: others may read a model file


def test_csv_round_trip_with_columns_in_first_appearance_order(tmp_path):
    rows = [{"epoch": 0, "loss": 1.25}, {"epoch": 1, "loss": 0.5, "recon": 0.1}]
    write_csv(tmp_path / "history.csv", rows)
    assert (tmp_path / "history.csv").read_text().splitlines()[0] == "epoch,loss,recon"
    assert read_csv(tmp_path / "history.csv") == [{"epoch": 0.0, "loss": 1.25}, {"epoch": 1.0, "loss": 0.5, "recon": 0.1}]


def test_file_info_digest(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"weights" * 1000)
    info = file_info(path)
    assert info == {"path": path.as_posix(), "bytes": 7000, "sha256": hashlib.sha256(b"weights" * 1000).hexdigest()}
