"""Strict construction of config dataclasses from parameter dicts: a typo is an error, with a hint."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class ParameterError(ValueError):
    """A mistake of the user's that stops a run before it starts: a bad or unknown parameter, or
    input data or a model that is not where the parameters say. The message names the parameter
    or path and the fix; ``kedro run`` prints just that and exits with status 2 (``fer_pipeline.cli``),
    where any other exception keeps its traceback."""


def reject_unknown_keys(params: Mapping[str, Any], known: Sequence[str], what: str) -> None:
    """Raise ``ValueError`` for keys of ``params`` not in ``known``, naming the closest known key
    (``'ema_decy' (did you mean 'ema_decay'?)``) and listing the known ones. ``what`` names the
    parameters in the message ("training", "ingestion")."""
    known = list(known)
    unknown = [key for key in params if key not in known]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), known, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"unknown {what} parameter(s): {', '.join(hints)}. Known: {', '.join(known)}")


def from_params(cls: type[T], params: Mapping[str, Any], what: str) -> T:
    """``cls(**params)`` for a dataclass ``cls``; unknown keys are an error (``reject_unknown_keys``)."""
    reject_unknown_keys(params, [f.name for f in dataclasses.fields(cls)], what)
    return cls(**dict(params))
