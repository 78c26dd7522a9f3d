"""fer_pipeline.files: JSON-safe values, atomic JSON, CSV round trips, file digests."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from fer_pipeline.files import file_info, json_safe, read_csv, write_csv, write_json


def test_json_safe_converts_numpy_non_finite_and_paths():
    value = {"a": np.float32(1.5), "b": np.arange(3), "c": math.inf, "d": (Path("x/y"), np.bool_(True)), 4: None}
    assert json_safe(value) == {"a": 1.5, "b": [0, 1, 2], "c": None, "d": ["x/y", True], "4": None}


def test_write_json_is_atomic_and_valid(tmp_path):
    write_json(tmp_path / "metrics.json", {"accuracy": np.float64(0.5), "nan": float("nan")})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"accuracy": 0.5, "nan": None}
    assert not list(tmp_path.glob("*.tmp"))


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
