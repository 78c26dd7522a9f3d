"""Servers this project starts and stops (tests, the serving benchmark): a free port, waiting
until a URL answers, and stopping a server with every process below it by PID (``mlflow
models serve``, ``mlflow ui`` and ``kedro viz run`` leave children behind when only the parent
goes). Linux ``/proc`` only: no psutil needed."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A free port on 127.0.0.1 below 49152: kedro-viz refuses the ephemeral range the OS would hand out."""
    for port in random.Random().sample(range(20000, 45000), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-45000")


def descendants(pid: int) -> list[int]:
    """All processes below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat")
    try:
        return state.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # gone between the two looks
        return False


def stop(process: subprocess.Popen) -> list[int]:
    """SIGTERM the server and every descendant by PID, then SIGKILL stragglers; return the PIDs."""
    pids = descendants(process.pid) + [process.pid]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + 15
    while time.time() < deadline and any(alive(p) for p in pids):
        process.poll()
        time.sleep(0.2)
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=10)
    return pids


def wait_http(url: str, process: subprocess.Popen, timeout: float = 120, log: Path | None = None) -> None:
    """Return once ``url`` answers 200; raise when ``process`` exits first (with the end of its
    output: ``process.stdout``, or the ``log`` file it writes to) or ``timeout`` passes."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace") if log else process.stdout.read() if process.stdout else ""
            raise RuntimeError(f"server exited early ({process.returncode}): {output[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def start(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen:
    """The server ``cmd`` in ``cwd``, stdout and stderr together in ``process.stdout``, or in the
    file ``log`` for a server that logs while it works (a pipe nobody reads would fill and block it)."""
    env = os.environ.copy() if env is None else env
    if log is None:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with open(log, "ab") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
