"""Recording every host a server's processes reach (tests/net_audit/sitecustomize.py) in a
user's environment, for the tests of the servers the project starts (fer-ui, fer-serve)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from fer_pipeline.processes import alive, free_port, start, stop, wait_http

RECORDER = Path(__file__).resolve().parent / "net_audit"
TELEMETRY_SWITCHES = ("DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY", "KEDRO_DISABLE_TELEMETRY")
#: mlflow 3's telemetry stays silent when one of these is set (mlflow.telemetry.utils
#: ``_is_ci_env_or_testing``); pytest sets the first, CI systems the others.
TEST_OR_CI_MARKERS = ("PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "CIRCLECI", "GITLAB_CI", "JENKINS_URL",
                      "TRAVIS", "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "CODEBUILD_BUILD_ARN", "BUILDKITE",
                      "TEAMCITY_VERSION", "CLOUD_RUN_EXECUTION", "RUNBOT_HOST_URL", "RUNBOT_BUILD_NAME",
                      "RUNBOT_WORKER_ID")


def recorded_env(log: Path) -> dict[str, str]:
    """A user's environment (no telemetry switch, no test or CI marker) with the recorder on."""
    env = {k: v for k, v in os.environ.items() if k not in TELEMETRY_SWITCHES + TEST_OR_CI_MARKERS}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(RECORDER), env.get("PYTHONPATH")) if p)
    env["NET_AUDIT_LOG"] = str(log)
    return env


def records(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []


def is_local(record: dict) -> bool:
    """Written apart from fer_pipeline.commands.ui.is_loopback on purpose: the check must not share the
    code it checks."""
    host = record.get("host")
    return bool(record.get("unix")) or host is None or host in ("localhost", "::1") or str(host).startswith("127.")


def outside(records: list[dict]) -> list[dict]:
    return [r for r in records if r["event"] != "start" and not is_local(r)]


@contextlib.contextmanager
def recorded_server(command: list[str], project: Path, log: Path, ready: str, output: Path | None = None):
    """``command --port P`` under the recorder; yields (base URL, process); stops it and its
    children by PID afterwards and checks none is left. ``output``: a file for the server's
    output (for a server that logs each request), instead of ``process.stdout``."""
    port = free_port()
    server = start([*command, "--port", str(port)], project, env=recorded_env(log), log=output)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + ready, server, timeout=180, log=output)
        yield base, server
    finally:
        pids = stop(server)
    assert not any(alive(p) for p in pids), f"{' '.join(command[1:3])} left processes behind"
