"""The README and docs/ hold commands that users copy: they must say what the code does today.
(The site built from docs/: tests/test_docs_site.py; what it must keep: tests/test_docs_inventory.py.)"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

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


def _serving_page_example() -> tuple[list[str], dict]:
    """The files the serving page's request sends, and the answer it shows for them."""
    page = (REPO / "docs" / "serving.md").read_text(encoding="utf-8")
    request = re.search(r"^printf '\{\"dataframe_records\".*?\n(.*?)> /tmp/request.json$", page, re.M | re.S)
    answer = re.search(r"^```json\n(\{\"predictions\": .*?)^```$", page, re.M | re.S)
    assert request and answer, "docs/serving.md's request (printf ...) or its answer (```json) is missing"
    return re.findall(r"base64 -w0 (\S+)\)", request.group(1)), json.loads(answer.group(1))


def test_the_serving_pages_answer_is_what_the_served_pipeline_answers(tmp_path: Path) -> None:
    """The serving page's request through the serving code (the demo's photos, its serving
    parameters), serialised as MLflow's scoring server does, must give the page's answer: the same
    keys in the same order, boxes, statuses and nulls. The probabilities come from a trained model,
    so the page's own are fed in; emotion and confidence must follow from them."""
    from mlflow.pyfunc.scoring_server import predictions_to_json

    from fer_pipeline.core.classes import CLASSES
    from fer_pipeline.core.faces.recognizer import label_found
    from fer_pipeline.core.serving.requests import ServingConfig, answer_table, find_request_faces
    from fer_pipeline.demo import write_demo_photos
    from fer_pipeline.params import load_environment_parameters

    files, shown = _serving_page_example()
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


@pytest.mark.parametrize("document", ["README.md", "docs/prediction.md"])
def test_the_from_python_example_runs(document: str, tmp_path: Path, monkeypatch) -> None:
    """The "From Python" block of the README and of the prediction page, run as written, in a
    folder holding the model file and the photo it names (a small random-weight model; a drawn
    photo with faces)."""
    import cv2
    import torch

    from fer_pipeline.core.models import build_resnet34, model_config, save_model
    from fer_pipeline.demo import draw_photo

    text = (REPO / document).read_text(encoding="utf-8")
    block = re.search(r"^##+ From Python\n.*?^```python\n(.*?)^```$", text, re.M | re.S)
    assert block, f"{document}'s From Python example is missing"
    torch.manual_seed(0)
    save_model(tmp_path / "data/06_models/resnet34.pt", build_resnet34(arch="resnet18"),
               model_config(arch="resnet18", input_size=44))
    photo = draw_photo([(3, (60, 90, 130, 150)), (5, (290, 80, 120, 140))], rng=np.random.default_rng(1))
    cv2.imwrite(str(tmp_path / "photo.jpg"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    monkeypatch.chdir(tmp_path)
    namespace = {"array_of_48x48_faces": np.zeros((2, 48, 48), np.uint8)}
    exec(compile(block.group(1), document, "exec"), namespace)  # noqa: S102 - the document's own code
    assert len(namespace["faces"]) == 2
    assert namespace["rec"].classify_crops(namespace["array_of_48x48_faces"]).shape == (2, 7)


def test_the_face_detector_tables_are_the_benchmarks_file_included() -> None:
    """The JAFFE tables are what `benchmarks/faces_jaffe.py --markdown docs/faces_jaffe.md` wrote,
    included into the results page's section at build time, never copied into it: a table typed
    or pasted into the section fails here."""
    page = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    section = page[page.index("### Face detectors on real photos"):]
    section = section[:section.index("\n## ")]
    assert '--8<-- "docs/faces_jaffe.md"' in section.splitlines()
    assert not [line for line in section.splitlines() if line.startswith("|")]
    written = (REPO / "docs" / "faces_jaffe.md").read_text(encoding="utf-8")
    assert len([line for line in written.splitlines() if line.startswith("|")]) >= 20


def test_the_readme_is_short_and_ci_runs_its_test_command() -> None:
    """At most 200 lines (issue 31), and its test command is the one `.ci/run` runs."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    commands = re.search(r"^The second sets everything up and runs the test suite.*?^```bash\n(.*?)^```$",
                         readme, re.M | re.S)
    assert commands and commands.group(1).strip() == "bash scripts/test.sh"
    ci = [line.split() for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if line and not line.startswith("#")]
    assert any(line[:2] == ["bash", "scripts/test.sh"] for line in ci)


def _readme_results() -> list[tuple[str, str, str]]:
    """The README's results table: (figures, page, anchor) per row."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Results\n"):readme.index("\n## ", readme.index("## Results\n"))]
    rows = []
    for line in section.splitlines():
        link = re.search(r"\]\((docs/[^)#]+)(?:#([^)]+))?\)\s*\|$", line)
        if line.startswith("| ") and link:
            rows.append((line.split(" | ")[1], link.group(1), link.group(2) or ""))
    return rows


def test_each_readme_result_is_in_the_section_its_row_links_to() -> None:
    """Every number of the README's results table is in the page section its row links to (the
    section whose heading makes the anchor; snippets expanded): a figure retyped wrong, or left
    behind when its page changed, fails here, and so does a link to an anchor no heading makes."""
    rows = _readme_results()
    assert len(rows) >= 6
    for figures, page, anchor in rows:
        section = _section(REPO / page, anchor)
        numbers = re.findall(r"\d[\d,]*(?:\.\d+)?", figures)
        assert numbers, figures
        for number in numbers:
            assert re.search(rf"(?<![\d.,]){re.escape(number)}(?![\d]|[.,]\d)", section), \
                f"{number} ({figures}) is not in {page}#{anchor}"


def _slug(heading: str) -> str:
    """The anchor MkDocs' toc makes of a heading (its default slugify): code marks and punctuation
    dropped, lower case, spaces as hyphens."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _headings(lines: list[str]) -> list[tuple[int, int, str]]:
    """(line index, level, anchor) of each heading outside fenced blocks."""
    found, fenced = [], False
    for index, line in enumerate(lines):
        if re.match(r"^\s*```", line):
            fenced = not fenced
        elif not fenced and (heading := re.match(r"^(#{1,6}) (.+)$", line)):
            found.append((index, len(heading.group(1)), _slug(heading.group(2))))
    return found


def _section(page: Path, anchor: str) -> str:
    """The text under the heading whose anchor is ``anchor`` (the whole page for none), up to the
    next heading of its level or above, snippets expanded, whitespace and bold marks collapsed."""
    from fer_pipeline.docs_inventory import expand_snippets

    lines = expand_snippets(page.read_text(encoding="utf-8"), REPO).splitlines()
    start, end = 0, len(lines)
    if anchor:
        headings = _headings(lines)
        matches = [(i, level) for i, level, slug in headings if slug == anchor]
        assert matches, f"{page.relative_to(REPO)} has no heading for #{anchor}"
        start, level = matches[0]
        end = next((i for i, other, _ in headings if i > start and other <= level), len(lines))
    return " ".join(" ".join(lines[start:end]).replace("**", "").split())
