"""The README and docs/ hold commands that users copy: they must say what the code does today."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np

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


def _readme_serving_example() -> tuple[list[str], dict]:
    """The files the README's serving request sends, and the answer it shows for them."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    request = re.search(r"^printf '\{\"dataframe_records\".*?\n(.*?)> /tmp/request.json$", readme, re.M | re.S)
    answer = re.search(r"^```json\n(\{\"predictions\": .*?)^```$", readme, re.M | re.S)
    assert request and answer, "README's serving request (printf ...) or its answer (```json) is missing"
    return re.findall(r"base64 -w0 (\S+)\)", request.group(1)), json.loads(answer.group(1))


def test_the_readmes_serving_answer_is_what_the_served_pipeline_answers(tmp_path: Path) -> None:
    """The README's request through the serving code (the demo's photos, its serving parameters),
    serialised as MLflow's scoring server does, must give the README's answer: the same keys in
    the same order, boxes, statuses and nulls. The probabilities come from a trained model, so
    the README's own are fed in; emotion and confidence must follow from them."""
    from mlflow.pyfunc.scoring_server import predictions_to_json

    from fer_pipeline.core.classes import CLASSES
    from fer_pipeline.core.faces.recognizer import label_found
    from fer_pipeline.core.serving.requests import ServingConfig, answer_table, find_request_faces
    from fer_pipeline.demo import write_demo_photos
    from fer_pipeline.params import load_environment_parameters

    files, shown = _readme_serving_example()
    params = load_environment_parameters(REPO / "conf", "demo")
    assert all(file.startswith("data/demo/01_raw/photos/") for file in files)
    photos = {path.name: path for path in write_demo_photos(tmp_path, **params["predict"]["demo_photos"])}
    found = find_request_faces([{"image": photos[Path(file).name].read_bytes()} for file in files],
                               ServingConfig.from_params({**params["serving"], "device": "cpu"}))
    probabilities = np.array([[row[f"prob_{name}"] for name in CLASSES]
                              for row in shown["predictions"] if row["status"] == "face"])
    served = io.StringIO()
    predictions_to_json(answer_table(label_found(found.found, probabilities, CLASSES), CLASSES), served)
    answer = json.loads(served.getvalue())
    assert answer == shown
    assert [list(row) for row in answer["predictions"]] == [list(row) for row in shown["predictions"]]  # key order


def test_the_readmes_python_example_runs(tmp_path: Path, monkeypatch) -> None:
    """The README's "From Python" block, run as written, in a folder holding the model file and
    the photo it names (a small random-weight model; a drawn photo with faces)."""
    import cv2
    import torch

    from fer_pipeline.core.models import build_resnet34, model_config, save_model
    from fer_pipeline.demo import draw_photo

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^### From Python\n.*?^```python\n(.*?)^```$", readme, re.M | re.S)
    assert block, "README's From Python example is missing"
    torch.manual_seed(0)
    save_model(tmp_path / "data/06_models/resnet34.pt", build_resnet34(arch="resnet18"),
               model_config(arch="resnet18", input_size=44))
    photo = draw_photo([(3, (60, 90, 130, 150)), (5, (290, 80, 120, 140))], rng=np.random.default_rng(1))
    cv2.imwrite(str(tmp_path / "photo.jpg"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    monkeypatch.chdir(tmp_path)
    namespace = {"array_of_48x48_faces": np.zeros((2, 48, 48), np.uint8)}
    exec(compile(block.group(1), "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    assert len(namespace["faces"]) == 2
    assert namespace["rec"].classify_crops(namespace["array_of_48x48_faces"]).shape == (2, 7)


def test_the_readmes_face_detector_tables_are_the_benchmarks_file() -> None:
    """The README's JAFFE tables are what `benchmarks/faces_jaffe.py --markdown docs/faces_jaffe.md`
    wrote, row for row: a table edited by hand, or left behind by a new run, fails here."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("#### Face detectors on real photos"):]
    section = section[:section.index("\n### ")]
    written = (REPO / "docs" / "faces_jaffe.md").read_text(encoding="utf-8")
    tables = [[line for line in text.splitlines() if line.startswith("|")] for text in (section, written)]
    assert len(tables[0]) >= 20 and tables[0] == tables[1]
