"""The decode+detect thread pool: results in input order, a bounded number in flight."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def default_workers() -> int:
    """Decode+detect threads: one per core, at most 4. OpenCV releases the GIL while it decodes
    and runs the cascade, so threads scale with cores without the cost of processes."""
    return max(1, min(4, os.cpu_count() or 1))


def map_ordered(fn: Callable[[Any], Any], items: Iterable[Any], workers: int | None = None,
                ahead: int | None = None) -> Iterator[Any]:
    """``map(fn, items)`` in input order, run by ``workers`` threads (``default_workers()``
    when None; 1 runs inline). At most ``ahead`` items (default 2 x workers) are in flight, so
    a long input is read as it is consumed and results never pile up in memory; the consumer
    (classification, writing) overlaps with the threads."""
    workers = default_workers() if workers is None else max(1, int(workers))
    if workers == 1:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    ahead = max(workers, ahead or 2 * workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fer-detect") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:  # the consumer stopped early or failed: drop the rest
                future.cancel()
