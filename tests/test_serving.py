"""The served model end to end, on the demo run's logged ``emotion_model``.

The model is served by MLflow's own server (``mlflow models serve``), started by ``fer-serve``
under the socket recorder in a user's environment (tests/net_recording.py), and by docs/serving.md's
plain command. Requests go over HTTP to 127.0.0.1; every server and its children are stopped by
PID. The answers are compared with ``fer-predict`` on the same files and the same weights.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np
import pytest
import yaml

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.serving.requests import ServingConfig, request_json
from fer_pipeline.demo import draw_face
from fer_pipeline.processes import alive, free_port, start, stop, wait_http

from .conftest import run_kedro_in_process
from .net_recording import outside, recorded_env, recorded_server, records
from .test_docs import _serving_page_example

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
PROBABILITIES = [f"prob_{c}" for c in CLASSES]


def _newest_model(project: Path, trained: bool = False):
    """(LoggedModel, its local artifact folder) of the newest emotion_model the demo logged; with
    ``trained``, the newest logged by a run that trained it (not `--pipelines package_model`)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fer_pipeline_demo")
    models = client.search_logged_models([experiment.experiment_id], filter_string="name = 'emotion_model'",
                                         order_by=[{"field_name": "creation_time", "ascending": False}])
    if trained:
        models = [m for m in models
                  if "package_model" not in client.get_run(m.source_run_id).data.tags["kedro_command"]]
    assert models, "no emotion_model logged"
    return models[0], Path(urlparse(models[0].artifact_location).path)


def _post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/invocations", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _fer_predict(project: Path, model: Path, files: list[Path], out: Path) -> list[dict[str, str]]:
    done = subprocess.run([str(BIN / "fer-predict"), *map(str, files), "--model", str(model), "--output", str(out),
                           "--device", "cpu", "--quiet"], cwd=project, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with open(out / "predictions.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _assert_same_face(one: dict, other: dict) -> None:
    """Equal rows, probabilities within 1e-5: a face classified in a batch of five or alone goes
    through differently sized convolutions, which round differently on the CPU."""
    assert {k: v for k, v in one.items() if k not in PROBABILITIES + ["confidence"]} == {
        k: v for k, v in other.items() if k not in PROBABILITIES + ["confidence"]}
    np.testing.assert_allclose([one[k] for k in PROBABILITIES], [other[k] for k in PROBABILITIES], atol=1e-5)


def test_a_training_run_logs_the_serving_pipeline_with_its_model(demo_project):
    model, folder = _newest_model(demo_project, trained=True)
    assert model.name == "emotion_model"
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    assert [c["name"] for c in json.loads(mlmodel["signature"]["inputs"])] == ["image", "pixels"]
    outputs = [c["name"] for c in json.loads(mlmodel["signature"]["outputs"])]
    assert outputs[:2] == ["input_index", "status"]
    assert outputs[-10:] == [*PROBABILITIES, "prob_contempt", "score", "landmarks"]
    artifacts = mlmodel["flavors"]["python_function"]["artifacts"]
    assert set(artifacts) == {"resnet_model", "params:serving"}
    # the weights the run trained travel with the model
    assert (folder / artifacts["resnet_model"]["path"]).read_bytes() == (
        demo_project / "data/demo/06_models/resnet34.pt").read_bytes()
    assert "fer_pipeline==" in (folder / "requirements.txt").read_text()
    example = json.loads((folder / "serving_input_example.json").read_text())
    assert np.array(example["dataframe_split"]["data"][0][0]).shape == (48, 48)


def test_fer_serve_answers_photos_and_crops_as_fer_predict_and_refuses_bad_input_offline(demo_project, tmp_path):
    model, folder = _newest_model(demo_project)
    photos = sorted((demo_project / "data/demo/01_raw/photos").iterdir())  # two photos and one without a face
    assert [p.name for p in photos] == ["demo_no_face.jpg", "demo_photo_0.jpg", "demo_photo_1.png"]
    local = _fer_predict(demo_project, folder / "artifacts" / "resnet34.pt", photos, tmp_path / "fer_predict")
    crop = draw_face(4, np.random.default_rng(0))
    photo_jpeg = photos[1].read_bytes()
    limit = ServingConfig().max_pixels
    side = int(limit ** 0.5) + 1  # serving.max_pixels + a little: a flat PNG of it is small
    bad = [
        (b"", "Ensure that input is a valid JSON"),
        (request_json([b"this is not an image"]), "row 0: not an image"),
        (request_json([photo_jpeg[: len(photo_jpeg) // 2]]), "row 0: truncated JPEG (no end-of-image marker)"),
        (request_json([np.zeros((47, 48), np.uint8)]), "row 0: pixels must be a 48x48 grey face, got shape (47, 48)"),
        (request_json([cv2.imencode(".png", np.zeros((side, side), np.uint8))[1].tobytes()]),
         f"row 0: {side}x{side} = {side * side:,} pixels is over the limit of {limit:,} (serving.max_pixels)"),
        (json.dumps({"dataframe_records": [{"image": "%%%"}]}).encode(), "row 0: image is not valid base64"),
        (json.dumps({"dataframe_records": [{"photo": "x"}]}).encode(), "no image and no pixels column"),
        (json.dumps({"dataframe_records": [{"pixels": [[0] * 48] * 48}] * 257}).encode(),
         "257 inputs, over the limit of 256 (serving.max_inputs)"),
    ]

    log = tmp_path / "net.jsonl"
    command = [str(BIN / "fer-serve"), "--env", "demo"]
    with recorded_server(command, demo_project, log, "/ping", output=tmp_path / "server.log") as (base, server):
        status, answer = _post(base, request_json([*(p.read_bytes() for p in photos), crop]))
        assert status == 200, answer
        served = answer["predictions"]

        for body, reason in bad:
            status, refusal = _post(base, body)
            assert 400 <= status < 500 and reason in refusal["message"], (status, refusal)
            status, again = _post(base, request_json([crop]))  # the server keeps serving
            assert status == 200 and len(again["predictions"]) == 1
            _assert_same_face(again["predictions"][0], {**served[-1], "input_index": 0})
    seen = records(log)
    assert server.pid in {r["pid"] for r in seen if r["event"] == "start"}
    assert outside(seen) == []

    # one row per face, the no-face photo as its own row, in request order
    faces_per_photo = [sum(r["file"] == str(p) and r["status"] == "face" for r in local) for p in photos]
    assert faces_per_photo == [0, 1, 2]  # write_demo_photos: photo k has 1 + k % 2 faces
    assert [(r["input_index"], r["status"]) for r in served] == [(0, "no_face"), (1, "face"), (2, "face"),
                                                                 (2, "face"), (3, "face")]
    assert served[0] == {"input_index": 0, "status": "no_face", **{k: None for k in served[1] if k not in (
        "input_index", "status")}}
    assert served[-1]["box_source"] == "crop" and (served[-1]["w"], served[-1]["h"]) == (48, 48)
    page_keys = list(_serving_page_example()[1]["predictions"][0])  # docs/serving.md shows the real answer's keys
    assert all(list(row) == page_keys for row in served)
    # the same faces, boxes, emotions and probabilities as fer-predict on the same files
    by_file = {str(p): i for i, p in enumerate(photos)}
    local_faces = [r for r in local if r["status"] == "face"]
    served_faces = [r for r in served if r["status"] == "face" and r["input_index"] < len(photos)]
    assert len(served_faces) == len(local_faces) >= 3
    for mine, theirs in zip(served_faces, local_faces, strict=True):
        assert mine["input_index"] == by_file[theirs["file"]]
        assert [mine[k] for k in ("face_index", "x", "y", "w", "h")] == [int(theirs[k]) for k in (
            "face_index", "x", "y", "w", "h")]
        assert (mine["box_source"], mine["emotion"]) == (theirs["box_source"], theirs["emotion"])
        np.testing.assert_allclose([mine[k] for k in PROBABILITIES], [float(theirs[k]) for k in PROBABILITIES],
                                   atol=1e-6)  # the CSV keeps six decimals


def _serving_page_commands() -> tuple[dict[str, str], str]:
    """The serving page's block: its `export` variables and its `mlflow models serve` line."""
    page = (REPO / "docs" / "serving.md").read_text()
    block = re.search(r"```bash\n(export MLFLOW_TRACKING_URI=[^\n]*)\n(mlflow models serve [^\n]*)\n", page)
    assert block, "docs/serving.md's block (export ...; mlflow models serve ...) is missing"
    exports = dict(item.split("=", 1) for item in shlex.split(block.group(1))[1:])
    return exports, block.group(2)


def test_the_documented_command_serves_what_python_loads(demo_project, tmp_path):
    """`mlflow models serve` as docs/serving.md writes it, and `mlflow.pyfunc.load_model`, agree."""
    import mlflow.pyfunc
    import pandas as pd

    model, folder = _newest_model(demo_project)
    exports, serve = _serving_page_commands()
    assert exports == {"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db", "DO_NOT_TRACK": "true"}
    port = free_port()
    command = shlex.split(serve.replace("<run id>", model.source_run_id).replace("--port 5001", f"--port {port}"))
    assert command[:3] == ["mlflow", "models", "serve"] and "127.0.0.1" in command
    log = tmp_path / "net.jsonl"
    env = recorded_env(log)  # a user's shell, with the page's exports and the venv activated
    env.update(exports, PATH=os.pathsep.join([str(BIN), env["PATH"]]))
    output = tmp_path / "server.log"
    server = start(command, demo_project, env=env, log=output)
    photo = (demo_project / "data/demo/01_raw/photos/demo_photo_0.jpg").read_bytes()
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", server, timeout=180, log=output)
        status, answer = _post(f"http://127.0.0.1:{port}", request_json([photo]))
        refused, _ = _post(f"http://127.0.0.1:{port}", request_json([b"GIF89a? no"]))
    finally:
        pids = stop(server)
    assert not any(alive(p) for p in pids)
    assert status == 200 and refused == 400
    assert outside(records(log)) == []  # DO_NOT_TRACK is enough for MLflow's telemetry

    loaded = mlflow.pyfunc.load_model(str(folder))
    local = loaded.predict(pd.DataFrame([{"image": base64.b64encode(photo).decode()}]))
    assert local.to_dict(orient="records") == answer["predictions"]


def test_package_model_logs_the_model_on_disk_without_training(demo_project):
    """For a model trained elsewhere (the GPU runner's) or new serving parameters. Last in this
    file: the tests above serve the newest logged model, which this one makes a model that takes
    at most 8 inputs (no other test file serves the demo's models)."""
    import hashlib

    import mlflow.pyfunc
    import pandas as pd
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    weights = demo_project / "data/demo/06_models/resnet34.pt"
    before = weights.stat().st_mtime_ns
    result = run_kedro_in_process(demo_project, "run", "--env", "demo", "--pipelines", "package_model",
                                  "--params", "serving.max_inputs=8")
    assert result.returncode == 0, result.stderr[-4000:]
    assert weights.stat().st_mtime_ns == before  # nothing trained
    model, folder = _newest_model(demo_project)
    assert (folder / "artifacts" / "resnet34.pt").read_bytes() == weights.read_bytes()
    card = json.loads((demo_project / "data/demo/08_reporting/served_model_card.json").read_text())
    assert card["weights"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert card["serving"]["max_inputs"] == 8
    client = MlflowClient(tracking_uri=f"sqlite:///{demo_project / 'mlflow.db'}")
    run = client.get_run(model.source_run_id)
    assert "--pipeline=package_model" in run.data.tags["kedro_command"]  # kedro-mlflow's spelling, for --pipelines
    assert "reports/served_model_card.json" in {a.path for a in client.list_artifacts(run.info.run_id, "reports")}
    # the stored parameters are the run's: the served model now takes at most 8 inputs
    loaded = mlflow.pyfunc.load_model(str(folder))
    with pytest.raises(MlflowException, match="9 inputs, over the limit of 8"):
        loaded.predict(pd.DataFrame([{"pixels": [[0] * 48] * 48}] * 9))
