"""The documentation site (mkdocs.yml, docs/): it builds strictly (a broken link, anchor, page or
snippet fails the build), offline, into a temporary folder; in headless Chromium its pages request
nothing but 127.0.0.1 and their own files; `fer-ui docs` serves it on 127.0.0.1 without reaching out.
What the pages must keep of the old README: tests/test_docs_inventory.py."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from fer_pipeline.processes import free_port, start, stop, wait_http

from .net_recording import outside, recorded_server, records
from .test_browser_ui import _requested_hosts, _wait_for_text, browser  # noqa: F401 - the fixture

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def mkdocs_build(config: Path, site: Path, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """`mkdocs build --strict`, as docs/development.md says, into ``site``, run in ``cwd``."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DO_NOT_TRACK": "true"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    # from outside the checkout: snippets and the reference are found from mkdocs.yml's folder
    built = mkdocs_build(REPO / "mkdocs.yml", folder, cwd=folder)
    assert built.returncode == 0, built.stdout + built.stderr
    return folder


def test_the_site_builds_strictly_with_every_page_and_the_reference(site):
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    assert {"index.html", "getting-started.html", "stages/training.html", "results.html", "ablation.html",
            "reference/python-api.html", "reference/stages.html", "reference/commands.html"} <= pages
    api = (site / "reference/python-api.html").read_text(encoding="utf-8")
    assert "EmotionRecognizer" in api and "classify_crops" in api and "from_mlflow" in api
    results = (site / "results.html").read_text(encoding="utf-8")
    assert "yunet + align" in results and "--8&lt;--" not in results and '--8<--' not in results  # included
    commands = (site / "reference/commands.html").read_text(encoding="utf-8")
    assert "--every-n-frames" in commands and "usage: fer-ui docs" in commands  # each parser's --help
    training = (site / "stages/training.html").read_text(encoding="utf-8")
    assert "label_smoothing" in training  # conf/base/parameters_training.yml, included


def test_no_page_loads_a_font_or_script_from_another_host(site):
    """Material's Google Fonts (theme.font: false) and any CDN script: a <link>/<script> with an
    absolute URL. The browser test below checks every request; this one says which page."""
    import re

    tag = re.compile(r"<(?:link|script)\b[^>]*\b(?:href|src)=\"(?:https?:)?//[^\"]*\"", re.IGNORECASE)
    found = {p.relative_to(site).as_posix(): tag.findall(p.read_text(encoding="utf-8")) for p in site.rglob("*.html")}
    assert {page: tags for page, tags in found.items() if tags} == {}


def _small_site(tmp_path: Path, page: str, nav: list | None = None) -> subprocess.CompletedProcess:
    """A site with the project's settings (strictness, validation, Markdown extensions) and one
    page, ``page``, built as the project's is."""
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    config.update(docs_dir="docs", nav=nav or ["index.md"], plugins=["search"])
    config.pop("exclude_docs", None)
    config.pop("hooks", None)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(f"# Home\n\n## A section\n\n{page}\n", encoding="utf-8")
    (tmp_path / "docs" / "other.md").write_text("# Other\n", encoding="utf-8")
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site", cwd=tmp_path)


@pytest.mark.parametrize(("page", "nav", "warning"), [
    ("[a page](missing.md)", ["index.md", "other.md"], "missing.md"),
    ("[an anchor](other.md#no-such-heading)", ["index.md", "other.md"], "no-such-heading"),
    ("[here](#a-section)", ["index.md"], "other.md"),  # a page left out of the navigation
    ('--8<-- "docs/no_such_results.md"', ["index.md", "other.md"], "no_such_results.md"),
])
def test_a_broken_link_anchor_page_or_snippet_fails_the_build(tmp_path, page, nav, warning):
    built = _small_site(tmp_path, page, nav)
    assert built.returncode != 0 and warning in built.stdout + built.stderr


def test_the_small_site_builds_when_nothing_is_broken(tmp_path):
    """The control of the test above: the same site, its links sound, builds."""
    built = _small_site(tmp_path, "[a page](other.md), [an anchor](#a-section)", ["index.md", "other.md"])
    assert built.returncode == 0, built.stdout + built.stderr


@pytest.mark.slow
@pytest.mark.browser
def test_the_built_site_requests_nothing_outside_in_chromium(site, browser):  # noqa: F811 - the fixture
    port = free_port()
    server = start([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)],
                   site)
    try:
        wait_http(f"http://127.0.0.1:{port}/index.html", server, timeout=60)
        for page, heading in (("index.html", "Where to start"), ("results.html", "FER2013 on the GPU (one H200)"),
                              ("stages/evaluate.html", "Where the usual sets come from"),
                              ("reference/python-api.html", "EmotionRecognizer")):
            browser.get(f"http://127.0.0.1:{port}/{page}")
            _wait_for_text(browser, [heading], timeout=30)
        browser.save_screenshot(str(site / "python_api.png"))
        served = _requested_hosts(browser)
        browser.get((site / "results.html").as_uri())  # the built files, opened from disk
        _wait_for_text(browser, ["Face detectors on real photos"], timeout=30)
        from_disk = _requested_hosts(browser)
    finally:
        stop(server)
    assert served == {"127.0.0.1"}
    assert from_disk <= {None, ""}  # file:// URLs have no host


@pytest.mark.slow
def test_fer_ui_docs_serves_the_site_on_the_loopback_offline(tmp_path):
    """`fer-ui docs` (mkdocs serve, strict) from the checkout, under the recorder in a user's
    environment: its pages answer on 127.0.0.1 and no process of it looks up or reaches another host."""
    log = tmp_path / "net.jsonl"
    with recorded_server([str(BIN / "fer-ui"), "docs"], REPO, log, "/index.html", output=tmp_path / "docs.log") as (
            base, server):
        with urllib.request.urlopen(base + "/results.html", timeout=30) as response:
            assert response.status == 200 and "Face detectors on real photos" in response.read().decode()
    seen = records(log)
    assert server.pid in {r["pid"] for r in seen if r["event"] == "start"}
    assert outside(seen) == []
