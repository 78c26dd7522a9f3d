"""Load test of the served emotion model: concurrent clients, a fixed number of requests, then stop.

Starts ``fer-serve`` on a free 127.0.0.1 port (or uses ``--url``), sends ``--requests`` requests
from ``--clients`` threads (keep-alive connections), stops the server and its children by PID,
and prints throughput and p50/p95/p99 latency per kind of request. The good requests cycle
through the demo photos (``--photos`` of 480x360 with one or two drawn faces, and one without a
face), then ``--crops`` ready 48x48 crops sent as ``pixels``, one input per request; every
``--bad-every``-th request is a bad one instead (not an image, a truncated JPEG, an empty body, a
wrong-shaped array, an image over the pixel limit, in turn), which must be refused with a 4xx.
Exit status 1 when a good request was not answered 200 (a photo with at least its own row, a
crop with exactly one face), or a bad one was not refused with a 4xx: zero lost or failed good
requests is the pass mark.

    python benchmarks/bench_serving.py --env demo                  # the demo's newest model
    python benchmarks/bench_serving.py --url http://127.0.0.1:5001 # a server already running
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.serving.requests import ServingConfig, request_json
from fer_pipeline.demo import draw_face, write_demo_photos
from fer_pipeline.processes import free_port, start, stop, wait_http
from fer_pipeline.project import project_root


def good_requests(folder: Path, crops: int) -> list[tuple[str, bytes, int | None]]:
    """(kind, JSON body, faces expected or None) for each demo photo and ``crops`` drawn crops."""
    requests = []
    for path in sorted(folder.iterdir()):
        requests.append(("photo", request_json([path.read_bytes()]), None))
    rng = np.random.default_rng(0)
    for k in range(crops):
        requests.append(("crop", request_json([draw_face(k % len(CLASSES), rng)]), 1))
    return requests


def bad_requests(max_pixels: int) -> list[tuple[str, bytes]]:
    """(what is wrong, body) for each kind of bad input the server must refuse with a 4xx."""
    photo = cv2.imencode(".jpg", np.full((360, 480, 3), 120, np.uint8))[1].tobytes()
    side = int(max_pixels ** 0.5) + 1  # one pixel over the limit on each side: a flat PNG is small
    oversized = cv2.imencode(".png", np.zeros((side, side), np.uint8))[1].tobytes()
    return [
        ("not an image", request_json([b"this is not an image"])),
        ("truncated JPEG", request_json([photo[: len(photo) // 2]])),
        ("empty body", b""),
        ("wrong-shaped array", request_json([np.zeros((47, 48), np.uint8)])),
        (f"{side}x{side} image", request_json([oversized])),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=None, help="a running server (default: start fer-serve and stop it after)")
    parser.add_argument("--env", default=None, help="Kedro environment whose newest model fer-serve serves (e.g. demo)")
    parser.add_argument("--workers", type=int, default=1, help="fer-serve's server worker processes")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--photos", type=int, default=6, help="demo photos in the rotation (plus one without a face)")
    parser.add_argument("--crops", type=int, default=6, help="48x48 crops in the rotation")
    parser.add_argument("--bad-every", type=int, default=10, help="every Nth request is a bad one (0: none)")
    parser.add_argument("--max-pixels", type=int, default=ServingConfig().max_pixels,
                        help="the model's serving.max_pixels (default: conf/base's)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        write_demo_photos(Path(tmp) / "photos", n_photos=args.photos, seed=1)
        good = good_requests(Path(tmp) / "photos", args.crops)
        bad = bad_requests(args.max_pixels)
        server, log = None, Path(tmp) / "server.log"
        url = args.url
        try:
            if url is None:
                port = free_port()
                command = [str(Path(sys.executable).with_name("fer-serve")), "--port", str(port),
                           "--workers", str(args.workers)]
                command += ["--env", args.env] if args.env else []
                server = start(command, project_root(), log=log)
                url = f"http://127.0.0.1:{port}"
                wait_http(url + "/ping", server, timeout=300, log=log)
            rows, wall = run_load(url, good, bad, args)
        finally:  # whatever stopped the load (Ctrl-C included), the server goes with it
            if server is not None:
                pids = stop(server)
                print(f"server stopped: PIDs {', '.join(map(str, pids))}")
    return report(rows, wall, args)


def run_load(url: str, good: list, bad: list, args: argparse.Namespace) -> tuple[list[tuple], float]:
    """Send the requests from ``args.clients`` threads; returns one (kind, bad?, HTTP status,
    seconds, as expected?, faces) per request, and the wall time of the whole load."""
    parts = urlsplit(url)
    plan = []
    good_cycle, bad_cycle = itertools.cycle(good), itertools.cycle(bad)
    for index in range(args.requests):
        if args.bad_every and index % args.bad_every == args.bad_every - 1:
            kind, body = next(bad_cycle)
            plan.append((kind, True, body, None))
        else:
            kind, body, expected = next(good_cycle)
            plan.append((kind, False, body, expected))
    # one warm-up request: the model file and the detector load on the first one
    warm = http.client.HTTPConnection(parts.hostname, parts.port, timeout=args.timeout)
    warm.request("POST", "/invocations", good[0][1], {"Content-Type": "application/json"})
    warm.getresponse().read()
    warm.close()

    counter = itertools.count()
    results: list[tuple] = []
    lock = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=args.timeout)
        while (index := next(counter)) < len(plan):
            kind, is_bad, body, expected = plan[index]
            started = time.perf_counter()
            try:
                connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                payload = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=args.timeout)
                payload, status = repr(error).encode(), 0
            seconds = time.perf_counter() - started
            faces = 0
            if is_bad:
                ok = 400 <= status < 500
            else:
                ok = status == 200
                if ok:
                    predictions = json.loads(payload)["predictions"]
                    faces = sum(row["status"] == "face" for row in predictions)
                    # a photo: at least its own row (a face or no_face); a crop: exactly one face
                    ok = len(predictions) >= 1 if expected is None else faces == expected
            with lock:
                results.append((kind, is_bad, status, seconds, ok, faces))
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - started


def _percentiles(seconds: list[float]) -> str:
    if not seconds:
        return f"{'-':>8}{'-':>8}{'-':>8}"
    p50, p95, p99 = np.percentile(np.array(seconds) * 1000, [50, 95, 99])
    return f"{p50:8.0f}{p95:8.0f}{p99:8.0f}"


def report(rows: list[tuple], wall: float, args: argparse.Namespace) -> int:
    good = [r for r in rows if not r[1]]
    faces = sum(r[5] for r in good if r[4])
    server = args.url or f"fer-serve --workers {args.workers}"
    print(f"{len(rows)} requests from {args.clients} clients to {server} in {wall:.1f} s: {len(rows) / wall:.1f} requests/s, "
          f"{len(good) / wall:.1f} good requests/s, {faces / wall:.1f} faces/s; this machine has {os.cpu_count()} CPUs")
    print(f"{'request':<22}{'sent':>6}{'answered as expected':>22}{'failed':>8}{'p50 ms':>8}{'p95':>8}{'p99':>8}")
    by_kind = defaultdict(list)
    for row in rows:
        by_kind[("bad: " if row[1] else "") + row[0]].append(row)
    for label in [k for k in by_kind if not k.startswith("bad")] + sorted(k for k in by_kind if k.startswith("bad")):
        group = by_kind[label]
        expected = sum(r[4] for r in group)
        print(f"{label:<22}{len(group):>6}{expected:>22}{len(group) - expected:>8}{_percentiles([r[3] for r in group])}")
    print(f"{'all good requests':<22}{len(good):>6}{sum(r[4] for r in good):>22}{sum(not r[4] for r in good):>8}"
          f"{_percentiles([r[3] for r in good])}")
    failed = [r for r in rows if not r[4]]
    for kind, is_bad, status, _, _, _ in failed[:10]:
        print(f"  failed: {'bad ' if is_bad else ''}{kind}: HTTP {status}")
    print(f"lost or failed good requests: {sum(not r[4] for r in good)}; "
          f"bad requests not refused with a 4xx: {sum(not r[4] for r in rows if r[1])}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
