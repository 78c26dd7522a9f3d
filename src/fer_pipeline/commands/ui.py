"""``fer-ui``: the MLflow UI and kedro-viz for this project, offline and on 127.0.0.1 only.

    fer-ui mlflow [--port 5000]      the runs in the project's mlflow.db
    fer-ui viz [--env demo]          the pipelines' DAG with plot previews
    fer-ui docs [--port 8000]        the documentation site (docs/, mkdocs.yml), rebuilt on each change

Why a command of our own, measured on mlflow 3.17 and kedro-viz 12.5 (docs/tracking.md, "Tracking and
viewing"):

- ``mlflow ui`` looks up ``config.mlflow-telemetry.io`` at start-up unless ``DO_NOT_TRACK`` or
  ``MLFLOW_DISABLE_TELEMETRY`` is set. It never imports this package, so the package's own
  ``DO_NOT_TRACK`` does not reach it. ``fer-ui mlflow`` replaces itself (``exec``) with
  ``mlflow ui`` in that environment, bound to 127.0.0.1: its PID is the server's.
- ``kedro viz run`` asks PyPI for its latest version at start-up and on every page load
  (``/api/version``), with no option to stop it; offline the answer is ``None``, which the page
  shows as a "Kedro-Viz None is here!" banner. Its page also loads a font from
  fonts.googleapis.com. ``fer-ui viz`` runs kedro-viz's server in this process with the version
  question answered by the installed version, serves the page without its external font links,
  and installs a guard that refuses any name lookup or connection to a host other than the
  loopback (so a future release's new call fails at once instead of reaching out).

Both open on what a newcomer needs first (issue 27, measured the same way): ``fer-ui mlflow``
serves MLflow's app through this project's (``commands/mlflow_app.py``), which opens on the runs
table of the experiment of the latest run (or ``--experiment NAME``) in model-training mode, the
assistant closed; ``fer-ui viz`` opens on the stages (one collapsible box per namespaced
pipeline, datasets shown from the Filters panel) without kedro-viz's feature tour, and without
the third-party warnings its start-up printed (about 80 lines before its address). Both set only
what the browser has no value for yet: a choice made in a UI is kept.

``fer-ui docs`` replaces itself with ``mkdocs serve`` of the project's mkdocs.yml on 127.0.0.1,
with the same offline environment; its pages load nothing from another host (Material's web
fonts are off in ``mkdocs.yml``).

Exit codes: 2 on a usage error (port in use, no mlflow.db yet, MkDocs not installed); otherwise
the server's own (``fer-ui mlflow`` becomes ``mlflow ui``, ``fer-ui docs`` ``mkdocs serve``;
``fer-ui viz`` returns 0 when kedro-viz stops).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from fer_pipeline.commands.html_pages import first_visit_script, rewrite_html_pages, with_head_script
from fer_pipeline.project import project_root

HOST = "127.0.0.1"

#: Every switch the tools honour for "send nothing": mlflow's and kedro's telemetry.
OFFLINE_ENVIRONMENT = {"DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "KEDRO_DISABLE_TELEMETRY": "true"}

#: how ``fer-ui mlflow`` tells its server app (``commands/mlflow_app.py``) the experiment to open on
LANDING_ENVIRONMENT = "FER_UI_LANDING_EXPERIMENT"

#: the MLflow UI's first-visit settings (``commands/mlflow_app.py``): MLflow 3.17's localStorage keys
#: (``<key>_v<version>``) and the project's defaults
MLFLOW_DEFAULTS = {
    "mlflow.workflowType_v1": "machine_learning",  # not "genai": an experiment opens on its runs
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True,  # so the assistant does not open itself
    "mlflow.assistant.panelOpen_v1": False,
    # The UI's own usage telemetry (a worker sending click events) off, as the server's is
    # (MLFLOW_DISABLE_TELEMETRY), and so without the home page's banner asking about it.
    "mlflow.settings.telemetry.enabled_v1": False,
    "mlflow.telemetry.info.alert.dismissed_v1": True,
}


def landing_fragment(experiment_id: str | None) -> str:
    """``#/experiments/<id>/runs``, or nothing for no (or a malformed) experiment id."""
    return f"#/experiments/{experiment_id}/runs" if experiment_id and experiment_id.isdigit() else ""


#: kedro-viz's first-visit settings (its localStorage "KedroViz"): no feature tour; the stages
#: without their ~45 datasets, which the Filters panel shows; no layer bands, which put every
#: reporting output in one row and made the whole DAG open at 17 % zoom.
VIZ_DEFAULTS = {"KedroViz": {"showFeatureHints": False, "layer": {"visible": False},
                             "nodeType": {"disabled": {"parameters": True, "task": False, "data": True}}}}

#: Audit events whose first address argument names a host this process would reach.
_LOOKUP_EVENTS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr")
_CONNECT_EVENTS = ("socket.connect", "socket.sendto", "socket.sendmsg", "socket.getnameinfo")


class UsageError(Exception):
    """What the user must change before a server can start."""


def offline_environment() -> dict[str, str]:
    """This process's environment with telemetry switched off."""
    return {**os.environ, **OFFLINE_ENVIRONMENT}


def is_loopback(host: object) -> bool:
    """True for 127.0.0.0/8, ::1 (also IPv4-mapped), ``localhost``, and ``None`` (a lookup of no
    host resolves to the loopback); bytes hosts are decoded. ``*.localhost`` is not: without
    nss-myhostname glibc asks DNS for it."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).strip("[]").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def install_loopback_guard() -> None:
    """From now on this process refuses (``socket.gaierror`` / ``ConnectionRefusedError``) every
    name lookup and connection whose host is not the loopback. Unix-socket connections (a path,
    not a host) pass. An audit hook cannot be removed: call it only in a process that serves."""

    def guard(event: str, args: tuple) -> None:
        if event in _LOOKUP_EVENTS:
            if not is_loopback(args[0]):
                raise socket.gaierror(socket.EAI_NONAME, f"fer-ui is offline: no lookup of {args[0]!r}")
        elif event in _CONNECT_EVENTS:
            address = args[0] if event == "socket.getnameinfo" else args[-1]
            if isinstance(address, tuple) and address and not is_loopback(address[0]):
                raise ConnectionRefusedError(f"fer-ui is offline: no connection to {address[0]!r}")

    sys.addaudithook(guard)


def answer_viz_version_check_locally() -> str:
    """Make kedro-viz's "latest version on PyPI" the installed one, in the modules that import the
    lookup (the CLI's start-up check and the ``/api/version`` endpoint): no request, no banner.
    Returns the installed version."""
    import kedro_viz
    from kedro_viz.api.rest.responses import version as version_endpoint
    from kedro_viz.integrations import pypi
    from packaging.version import parse

    installed = parse(kedro_viz.__version__)

    def installed_version():
        return installed

    for module in (pypi, version_endpoint):
        if not hasattr(module, "get_latest_version"):
            raise RuntimeError(f"kedro-viz {installed}: {module.__name__} has no get_latest_version any more; "
                               "fer_pipeline.commands.ui must learn this release's version check")
        module.get_latest_version = installed_version
    return str(installed)


def check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is free
        try:
            probe.bind((HOST, port))
        except OSError as error:
            raise UsageError(f"port {port} on {HOST} is in use ({error.strerror}); pass --port N") from None


def mlflow_command(port: int, backend_store_uri: str, workers: int) -> list[str]:
    """The ``mlflow ui`` command line ``fer-ui mlflow`` runs (with ``offline_environment``): MLflow's
    server with this project's app (``commands/mlflow_app.py``, found by its ``mlflow.app`` entry point)."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", backend_store_uri, "--app-name",
            "fer_pipeline", "--host", HOST, "--port", str(port), "--workers", str(workers)]


def landing_experiment(backend_store_uri: str, name: str | None) -> str | None:
    """The id of the experiment the UI opens on: ``name``'s, else that of the latest run in the
    store (None for an empty store). A ``name`` the store does not have is a ``UsageError``."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=backend_store_uri)
    experiments = client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
    if name is not None:
        for experiment in experiments:
            if experiment.name == name:
                return experiment.experiment_id
        known = ", ".join(sorted(e.name for e in experiments)) or "none"
        raise UsageError(f"no experiment {name!r} in {backend_store_uri} (it has: {known})")
    latest = client.search_runs([e.experiment_id for e in experiments], max_results=1,
                                order_by=["attributes.start_time DESC"]) if experiments else []
    return latest[0].info.experiment_id if latest else None


def project_store_uri(root: Path, option: str) -> str:
    """``sqlite:///<root>/mlflow.db``, the store ``kedro run`` logs to; a ``UsageError`` that
    names ``option`` (the command's way to give another store) when there is none yet."""
    store = root / "mlflow.db"
    if not store.is_file():
        raise UsageError(f"no MLflow store at {store} yet: run the pipeline first (`bash scripts/demo.sh` or "
                         f"`kedro run`), or pass {option} URI")
    return f"sqlite:///{store.as_posix()}"


def serve_mlflow(root: Path, port: int, backend_store_uri: str | None, workers: int,
                 experiment: str | None = None) -> None:
    """Replace this process with ``mlflow ui`` on the project's store (does not return)."""
    backend_store_uri = backend_store_uri or project_store_uri(root, "--backend-store-uri")
    check_port_free(port)
    os.environ.update(OFFLINE_ENVIRONMENT)  # the store is read below, with mlflow's own telemetry off
    try:
        landing = landing_experiment(backend_store_uri, experiment)
    except UsageError:
        raise
    except Exception as error:  # noqa: BLE001 - a store mlflow ui will report on itself, in its own words
        print(f"fer-ui: could not list the runs of {backend_store_uri} ({type(error).__name__}); "
              "the UI opens on its home page", file=sys.stderr)
        landing = None
    command = mlflow_command(port, backend_store_uri, workers)
    opens_on = f" (opens on experiment {landing}'s runs)" if landing else ""
    print(f"MLflow UI (offline) on http://{HOST}:{port}/ for {backend_store_uri}{opens_on}", flush=True)
    os.chdir(root)  # runs logged with relative artifact paths resolve from the project
    os.execve(command[0], command, {**offline_environment(), LANDING_ENVIRONMENT: landing or ""})


#: A ``<link>`` or ``<script>`` tag whose ``href``/``src`` is an absolute or protocol-relative URL
#: of another host (kedro-viz 12.5's page loads the Inter font from fonts.googleapis.com and
#: preconnects to fonts.gstatic.com). Other tags (img, iframe, inline @import) are not looked at:
#: the page has none, and the browser test would show a new one.
_EXTERNAL_TAG = re.compile(
    r"<(?:link|script)\b[^>]*\b(?:href|src)\s*=\s*[\"']?(?:https?:)?//"
    r"(?!127\.0\.0\.1[:/\"'\s>]|localhost[:/\"'\s>])[^>]*>(?:\s*</script>)?",
    re.IGNORECASE)


def without_external_resources(html: str) -> str:
    """``html`` without the ``<link>``/``<script>`` tags that load from another host (the page
    falls back to its local fonts)."""
    return _EXTERNAL_TAG.sub("", html)


def viz_page(html: str) -> str:
    """A kedro-viz page as ``fer-ui viz`` serves it: no external resources, first-visit defaults."""
    return with_head_script(without_external_resources(html), first_visit_script(VIZ_DEFAULTS))


def quiet_viz_start_up() -> None:
    """Before kedro-viz loads the project: the third-party warnings no user can act on off, and
    Kedro's logging at warnings (fer-serve's ``serving_logging.yml``, unless ``KEDRO_LOGGING_CONFIG``
    names another). kedro-mlflow's "BEWARE - This 'Pipeline' is no longer a 'PipelineML'" is the
    warning it prints when kedro-viz filters the logged pipeline, "for compatibility with kedro-viz"."""
    import logging

    from fer_pipeline.commands.serve import LOGGING_CONFIG
    from fer_pipeline.third_party import silence_known_warnings

    silence_known_warnings()
    os.environ.setdefault("KEDRO_LOGGING_CONFIG", str(LOGGING_CONFIG))
    # A filter, not a level: Kedro configures logging again when it loads the project.
    logging.getLogger("kedro_mlflow.pipeline.pipeline_ml").addFilter(
        lambda record: not record.getMessage().startswith("BEWARE - This 'Pipeline' is no longer a 'PipelineML'"))


def serve_viz(root: Path, port: int, env: str | None, pipeline: str | None) -> None:
    """kedro-viz's server for the project at ``root``, in this process, until it is stopped:
    what ``kedro viz run`` starts (``kedro_viz.server.run_server``'s steps), offline."""
    check_port_free(port)
    os.environ.update(OFFLINE_ENVIRONMENT)
    quiet_viz_start_up()
    install_loopback_guard()
    version = answer_viz_version_check_locally()
    import uvicorn
    from kedro.framework.startup import bootstrap_project
    from kedro_viz.api import apps
    from kedro_viz.server import load_and_populate_data

    metadata = bootstrap_project(root)
    os.chdir(root)
    load_and_populate_data(root, env, False, metadata.package_name, pipeline, None, False)
    app = apps.create_api_app_from_project(root, False)
    rewrite_html_pages(app, viz_page)
    print(f"kedro-viz {version} (offline) on http://{HOST}:{port}/ for {root} (env {env or 'local'})", flush=True)
    uvicorn.run(app, host=HOST, port=port, log_config=None)


def docs_command(root: Path, port: int) -> list[str]:
    """The ``mkdocs serve`` command line ``fer-ui docs`` runs: the project's site, strict (a broken
    link stops the rebuild with its warning), bound to 127.0.0.1."""
    return [sys.executable, "-m", "mkdocs", "serve", "--config-file", str(root / "mkdocs.yml"), "--strict",
            "--dev-addr", f"{HOST}:{port}"]


def serve_docs(root: Path, port: int) -> None:
    """Replace this process with ``mkdocs serve`` on the project's documentation (does not return)."""
    import importlib.util

    if not (root / "mkdocs.yml").is_file():
        raise UsageError(f"no mkdocs.yml in {root}: run fer-ui docs from a checkout of the project")
    if importlib.util.find_spec("mkdocs") is None:
        raise UsageError("MkDocs is not installed here: pip install -e '.[docs]' (scripts/setup.sh installs it)")
    check_port_free(port)
    command = docs_command(root, port)
    print(f"The documentation (offline) on http://{HOST}:{port}/ for {root}", flush=True)
    os.execve(command[0], command, {**offline_environment(), "NO_MKDOCS_2_WARNING": "1"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fer-ui", description="The project's UIs, offline and bound to 127.0.0.1 (stop with Ctrl-C).")
    commands = parser.add_subparsers(dest="ui", required=True, metavar="{mlflow,viz,docs}")
    mlflow = commands.add_parser("mlflow", help="the MLflow UI on the project's mlflow.db")
    mlflow.add_argument("--port", type=int, default=5000, help="default 5000")
    mlflow.add_argument("--backend-store-uri", default=None,
                        help="default: sqlite:///<project>/mlflow.db (what kedro run logs to)")
    mlflow.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    mlflow.add_argument("--experiment", default=None,
                        help="experiment whose runs the UI opens on (default: that of the latest run)")
    viz = commands.add_parser("viz", help="kedro-viz: the pipelines' DAG with plot previews")
    viz.add_argument("--port", type=int, default=4141, help="default 4141 (kedro-viz's)")
    viz.add_argument("--env", default=None, help="Kedro environment whose catalog to show (e.g. demo)")
    viz.add_argument("--pipeline", default=None, help="show one pipeline (default: all)")
    docs = commands.add_parser("docs", help="the documentation site (docs/), rebuilt on each change")
    docs.add_argument("--port", type=int, default=8000, help="default 8000 (mkdocs serve's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.port < 65536:
        print(f"fer-ui: error: --port must be 1-65535, got {args.port}", file=sys.stderr)
        return 2
    root = project_root()
    try:
        if args.ui == "mlflow":
            serve_mlflow(root, args.port, args.backend_store_uri, args.workers, args.experiment)
        elif args.ui == "docs":
            serve_docs(root, args.port)
        else:
            serve_viz(root, args.port, args.env, args.pipeline)
    except UsageError as error:
        print(f"fer-ui: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
