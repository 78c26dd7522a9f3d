"""Records every host a Python process looks up or connects to, for tests/test_ui.py.

Put this folder first on PYTHONPATH and set NET_AUDIT_LOG to a file: each Python process started
with that environment (a server, its workers, their children) appends one JSON line when it
starts and one per name lookup, connection or datagram (Python's audit events, so the calls of
every library are seen, whatever HTTP client it uses). It records and never blocks: the test
decides. The code under test has its own guard; this recorder is independent of it.
"""

import json
import os
import sys

_LOG = os.environ.get("NET_AUDIT_LOG")
#: audit event -> the index of its argument that names the host (or address)
_EVENTS = {"socket.getaddrinfo": 0, "socket.gethostbyname": 0, "socket.gethostbyname_ex": 0,
           "socket.gethostbyaddr": 0, "socket.getnameinfo": 0,
           "socket.connect": 1, "socket.sendto": 1, "socket.sendmsg": 1}


def _write(record):
    try:
        with open(_LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps({"pid": os.getpid(), **record}, default=repr) + "\n")
    except Exception:  # noqa: BLE001 - a recorder must never change what it records
        pass


def _hook(event, args):
    if event in _EVENTS:
        target = args[_EVENTS[event]]
        if target is None:  # sendmsg on a connected socket: its connect was recorded
            return
        host = target[0] if isinstance(target, tuple) and target else target
        _write({"event": event, "host": host if isinstance(host, (str, type(None))) else repr(host),
                "unix": isinstance(target, (str, bytes)) and event == "socket.connect"})


if _LOG:
    _write({"event": "start", "argv": getattr(sys, "argv", None)})
    sys.addaudithook(_hook)
