"""The optional tqdm progress bar of the decode and CSV loops (tqdm is imported lazily)."""

from __future__ import annotations

import sys


def progress_bar(total: int | None, enabled: bool, desc: str):
    """A tqdm bar on stderr counting images, or None when disabled or tqdm is missing."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False)
