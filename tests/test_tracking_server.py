"""The shared MLflow tracking server on PostgreSQL (scripts/tracking_server.sh), for real.

The script starts PostgreSQL and ``mlflow server`` on free ports of 127.0.0.1; two copies of the
project (two team members' checkouts) log ``kedro run --env demo --pipelines ingestion`` to it
through conf/team/mlflow.yml, once alone and then twice at the same time. The runs are read
back through MlflowClient (params, metrics, an artifact's content), and straight from the
PostgreSQL database, so that a server that silently fell back to sqlite would fail. A restart
keeps the runs and takes the role's password from conf/local/credentials.yml. Afterwards no
process the test started may be left. Every Python process of the server and the runs records
the hosts it reaches (tests/net_audit): only 127.0.0.1; and every socket the servers listen on is
bound to 127.0.0.1 (or ::1). Run as root, MLflow runs as PostgreSQL's user, or as root with a
warning when that user cannot run the interpreter. The script's health check ignores http_proxy,
and `stop` leaves alone a process that a stale PID file names but that is not this server.
"""

from __future__ import annotations

import glob
import ipaddress
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg2
import pytest
import yaml

from fer_pipeline.processes import alive, descendants, free_port

from .conftest import KEDRO, SMALL_DEMO_PARAMS, make_project, run_kedro
from .net_recording import RECORDER, outside, records

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "tracking_server.sh"
EXPERIMENT = "fer_pipeline_demo"
PROXY = "http://proxy.invalid:3128"  # a host that does not resolve (RFC 2606)
ARTIFACT = "reports/data_quality.json"
TELEMETRY_OFF = {"DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}


def _pg_bindir() -> str | None:
    """Where initdb and pg_ctl are, as the script looks for them."""
    candidates = []
    if shutil.which("pg_config"):
        done = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(done.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb")).resolve().parent))
    return next((c for c in candidates if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists()),
                None)


class TrackingServer:
    """scripts/tracking_server.sh on one data folder, and the processes it started."""

    def __init__(self, data_dir: Path, project: Path, net_log: Path):
        self.data_dir = data_dir
        self.pg_port, self.port = free_port(), free_port()
        while self.port == self.pg_port:
            self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        # A proxy that cannot be reached and no exception for 127.0.0.1: the script's health
        # check must go straight to the server. (A server process that used it would show up in
        # the recorded hosts.)
        env = {k: v for k, v in os.environ.items()
               if k != "FER_TRACKING_DB_PASSWORD" and k.lower() not in ("no_proxy", "http_proxy", "all_proxy")}
        self.env = {**env, **TELEMETRY_OFF, "PYTHON": sys.executable, "FER_PROJECT_DIR": str(project),
                    "PYTHONPATH": os.pathsep.join(p for p in (str(RECORDER), env.get("PYTHONPATH")) if p),
                    "NET_AUDIT_LOG": str(net_log), "http_proxy": PROXY, "HTTP_PROXY": PROXY}
        self.seen: set[int] = set()  # every PID of the servers seen while they ran
        self.last_start: subprocess.CompletedProcess | None = None

    def script(self, command: str, *options: str, timeout: int = 300) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), command, str(self.data_dir), *options],
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def start(self, *options: str) -> str:
        done = self.script("start", *options)
        assert done.returncode == 0, f"start failed:\n{done.stdout}\n{done.stderr}"
        assert done.stdout.strip().endswith(f"Tracking URI: {self.uri}"), done.stdout
        self.note_pids()
        self.last_start = done
        return done.stdout

    def server_pids(self) -> dict[str, set[int]]:
        """{"mlflow": the server and its workers, "postgres": the postmaster and its backends}."""
        pids: dict[str, set[int]] = {"mlflow": set(), "postgres": set()}
        files = {"mlflow": self.data_dir / "mlflow.pid", "postgres": self.data_dir / "pg/postmaster.pid"}
        for name, path in files.items():
            if path.exists():
                pid = int(path.read_text().split()[0])
                if alive(pid) and name.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    pids[name] = {pid, *descendants(pid)}
        return pids

    def note_pids(self) -> set[int]:
        """mlflow server and its workers, the postmaster and its backends, as they run now."""
        pids = set().union(*self.server_pids().values())
        self.seen |= pids
        return pids

    def stop(self) -> None:
        self.note_pids()
        done = self.script("stop", timeout=120)
        assert done.returncode == 0, f"stop failed:\n{done.stdout}\n{done.stderr}"
        left = sorted(p for p in self.seen if alive(p))
        assert not left, f"processes left after stop: {left}"

    def password(self) -> str:
        return (self.data_dir / "db_password").read_text().strip()

    def query(self, sql: str, password: str) -> list[tuple]:
        with psycopg2.connect(host="127.0.0.1", port=self.pg_port, dbname="mlflow", user="mlflow",
                              password=password, connect_timeout=10) as connection:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                rows = cursor.fetchall()
        connection.close()
        return rows


@pytest.fixture
def tracking_server(tmp_path):
    if _pg_bindir() is None:
        message = "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
        if os.environ.get("FER_REQUIRE_POSTGRESQL"):  # .ci/run installs it: CI must run this test
            pytest.fail(message)
        pytest.skip(message)
    data_dir = tmp_path / "trk"
    # As root the script runs PostgreSQL as the `postgres` user, which cannot pass through
    # pytest's /tmp/pytest-of-root (mode 0700); and PostgreSQL's socket path has ~100 characters
    # at most. Then the data folder goes straight under /tmp.
    own_dir = os.getuid() == 0 or len(str(data_dir)) > 70
    if own_dir:
        data_dir = Path(tempfile.mkdtemp(prefix="fer-tracking-", dir="/tmp"))
    net_log, net_dir = tmp_path / "net.jsonl", None
    if os.getuid() == 0:  # MLflow may run as `postgres`: its recorder must reach the log too
        net_dir = Path(tempfile.mkdtemp(prefix="fer-tracking-net-", dir="/tmp"))
        net_dir.chmod(0o711)
        net_log = net_dir / "net.jsonl"
        net_log.touch()
        net_log.chmod(0o666)
    server = TrackingServer(data_dir, tmp_path / "alice", net_log)
    try:
        yield server
    finally:
        try:
            server.stop()
            server.stop()  # a second stop is harmless
        finally:
            if own_dir:
                shutil.rmtree(data_dir, ignore_errors=True)
            if net_dir:
                shutil.rmtree(net_dir, ignore_errors=True)


def _uid(pid: int) -> int:
    """The real user ID of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid in /proc/{pid}/status")


def _address(hex_address: str) -> tuple[str, int]:
    """'0100007F:1F90' (/proc/net/tcp: each 32-bit word in host byte order) -> ('127.0.0.1', 8080)
    on a little-endian machine; the same for tcp6's 32 hex digits."""
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw)), int(port, 16)


def _listening(pids: set[int]) -> list[tuple[str, int]]:
    """The local addresses of the TCP sockets in LISTEN state that these processes hold:
    /proc/net/tcp{,6} rows (state 0A) whose inode is one of their /proc/PID/fd sockets."""
    inodes = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:  # gone meanwhile
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[len("socket:["):-1]))
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and int(fields[9]) in inodes:
                found.append(_address(fields[1]))
    return found


def _check_listening(server: TrackingServer) -> None:
    """Both servers listen, each on its port, and on loopback addresses only."""
    pids = server.server_pids()
    for name, port in (("mlflow", server.port), ("postgres", server.pg_port)):
        assert pids[name], f"no {name} process found"
        listening = _listening(pids[name])
        assert port in {p for _, p in listening}, (name, port, listening)
        assert all(host in ("127.0.0.1", "::1") for host, _ in listening), (name, listening)


def _check_mlflow_user(server: TrackingServer, start: subprocess.CompletedProcess) -> None:
    """Run by root, MLflow runs as PostgreSQL's user unless the script warned that it cannot."""
    pids = server.server_pids()["mlflow"]
    assert pids
    uids = {_uid(pid) for pid in pids}
    if os.getuid() != 0:
        assert uids == {os.getuid()}, uids
    elif "WARNING: MLflow runs as root" in start.stderr:
        # e.g. a venv whose interpreter lies under /root (0700), as on the project's machines
        assert "user cannot run" in start.stderr, start.stderr
        assert uids == {0}, uids
    else:
        user = os.environ.get("FER_TRACKING_PG_USER", "postgres")  # as the script chooses it
        assert uids == {pwd.getpwnam(user).pw_uid}, (uids, start.stdout)
        assert f"as {user} (log:" in start.stdout, start.stdout


def _stale_pid_file_spares(server: TrackingServer, tmp: Path) -> None:
    """A stopped server's PID file naming another process (a reused PID): `stop` leaves it alone,
    even when it looks like an MLflow server of another data folder and leads its own group."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "-m", "mlflow", "server",
                              "--artifacts-destination", str(tmp / "other" / "artifacts")],
                             start_new_session=True)
    try:
        (server.data_dir / "mlflow.pid").write_text(f"{other.pid}\n")
        done = server.script("stop", timeout=120)
        assert done.returncode == 0 and "MLflow is not running." in done.stdout, done.stdout + done.stderr
        assert other.poll() is None, "stop killed a process that is not its server"
    finally:
        other.kill()
        other.wait()


def _team_checkout(root: Path, uri: str) -> Path:
    """A copy of the project whose `demo` environment logs to the server as conf/team does."""
    project = make_project(root)
    team = yaml.safe_load((REPO / "conf/team/mlflow.yml").read_text())
    assert team["server"]["mlflow_tracking_uri"] == "http://127.0.0.1:5000"
    assert team["tracking"]["experiment"]["create_experiment_kwargs"]["artifact_location"] is None
    team["server"]["mlflow_tracking_uri"] = uri
    team["tracking"]["experiment"]["name"] = EXPERIMENT
    (project / "conf/demo/mlflow.yml").write_text(yaml.safe_dump(team))
    return project


def _ingestion(project: Path, params: str) -> subprocess.Popen:
    """`kedro run` started in the background, in run_kedro's environment."""
    env = {**os.environ, **TELEMETRY_OFF, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.Popen([str(KEDRO), "run", "--env", "demo", "--pipelines", "ingestion", "--params", params],
                            cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _check_run(client, run, project: Path, n_train: int, n_test: int, tmp: Path) -> None:
    """A complete ingestion run: its params, its metrics and its report, as the checkout wrote it."""
    assert run.info.status == "FINISHED"
    assert run.data.params["ingestion.demo.n_train"] == str(n_train)
    assert run.data.params["ingestion.source_path"] == "data/demo/01_raw/fer2013"
    assert run.data.metrics["ingestion.kept"] == n_train + n_test
    assert run.data.metrics["ingestion.quarantined"] == 0
    assert [m.value for m in client.get_metric_history(run.info.run_id, "ingestion.read")] == [n_train + n_test]
    tmp.mkdir()
    local = client.download_artifacts(run.info.run_id, ARTIFACT, str(tmp))
    report = json.loads(Path(local).read_text())
    assert report["kept"] == n_train + n_test
    assert report == json.loads((project / "data/demo/08_reporting/data_quality.json").read_text())


@pytest.mark.slow
def test_team_runs_go_to_postgresql_through_the_shared_server(tracking_server, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    server = tracking_server
    # this process's client and every kedro run it starts: no telemetry, hosts recorded
    for name, value in {**TELEMETRY_OFF, "PYTHONPATH": server.env["PYTHONPATH"],
                        "NET_AUDIT_LOG": server.env["NET_AUDIT_LOG"]}.items():
        monkeypatch.setenv(name, value)
    server.start("--pg-port", str(server.pg_port), "--port", str(server.port), "--workers", "2")
    assert (server.data_dir / "db_password").stat().st_mode & 0o777 == 0o600
    _check_mlflow_user(server, server.last_start)
    _check_listening(server)
    status = server.script("status")
    assert status.returncode == 0 and f"tracking URI {server.uri}" in status.stdout, status.stdout
    assert "Already running" in server.start()  # a second start changes nothing

    # One run alone, read back through the server.
    alice = _team_checkout(tmp_path / "alice", server.uri)
    result = run_kedro(alice, "run", "--env", "demo", "--pipelines", "ingestion", "--params", SMALL_DEMO_PARAMS,
                       timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert not (alice / "mlflow.db").exists() and not (alice / "mlruns").exists()  # nothing tracked locally
    client = MlflowClient(tracking_uri=server.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # the server keeps the artifacts
    (first,) = client.search_runs([experiment.experiment_id])
    _check_run(client, first, alice, 420, 140, tmp_path / "download_first")

    # Two team members at the same time, with different parameters.
    bob = _team_checkout(tmp_path / "bob", server.uri)
    runs = [_ingestion(alice, "ingestion.demo.n_train=420,ingestion.demo.n_test=140,ingestion.workers=1"),
            _ingestion(bob, "ingestion.demo.n_train=350,ingestion.demo.n_test=140,ingestion.workers=1")]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-6000:]
    both = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_id != first.info.run_id]
    assert len(both) == 2
    by_size = {int(r.data.params["ingestion.demo.n_train"]): r for r in both}
    assert set(by_size) == {420, 350}
    _check_run(client, by_size[420], alice, 420, 140, tmp_path / "download_alice")
    _check_run(client, by_size[350], bob, 350, 140, tmp_path / "download_bob")
    assert by_size[420].data.params["ingestion.workers"] == "1"
    run_ids = {first.info.run_id, *(r.info.run_id for r in both)}

    # The runs are in PostgreSQL, the artifacts in the data folder: no sqlite, no local mlruns.
    password = server.password()
    assert set(server.query("SELECT run_uuid, status FROM runs", password)) == {(i, "FINISHED") for i in run_ids}
    kept = server.query("SELECT run_uuid, value FROM metrics WHERE key = 'ingestion.kept'", password)
    assert sorted(value for _, value in kept) == [490, 560, 560]
    assert len(list((server.data_dir / "artifacts").rglob("data_quality.json"))) == 3
    assert not list(server.data_dir.rglob("*.db"))

    # Stop and start again: the runs stay; the password now comes from conf/local/credentials.yml
    # (the project's git-ignored credentials), odd characters and all.
    server.stop()
    assert server.script("status").returncode == 3
    _stale_pid_file_spares(server, tmp_path)
    new_password = "team: p@ss/w%rd 'quoted' \\ #1"
    (alice / "conf/local/credentials.yml").write_text(yaml.safe_dump({"tracking_db": {"password": new_password}}))
    out = server.start()  # the ports of the last start
    assert "conf/local/credentials.yml (tracking_db.password)" in out
    assert {r[0] for r in server.query("SELECT run_uuid FROM runs", new_password)} == run_ids
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        server.query("SELECT 1", password)
    client = MlflowClient(tracking_uri=server.uri)
    again = client.get_run(first.info.run_id)
    _check_run(client, again, alice, 420, 140, tmp_path / "download_again")

    # Every Python process of the server and of the runs reached 127.0.0.1 only.
    log = records(Path(server.env["NET_AUDIT_LOG"]))
    started = [" ".join(r["argv"] or []) for r in log if r["event"] == "start"]
    assert any("mlflow" in argv and "server" in argv for argv in started), started[:5]
    assert sum("kedro" in argv for argv in started) >= 3
    assert outside(log) == []
