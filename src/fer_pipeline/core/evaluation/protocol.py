"""The evaluate stage's protocol, one for ``kedro run`` and the runner without Kedro.

``params["tta"]`` names the test-time augmentation the split is scored with. ``choose_on_val``
scores PublicTest (val) and the evaluate split with each mode of ``params["tta_candidates"]``
and reports the split under the mode with the best val macro-F1 (the metric the best epoch is
chosen by), so the test split is only ever reported, never chosen from; the other modes'
reports come with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from fer_pipeline.core.evaluation.split import SplitEvaluation, evaluate_split
from fer_pipeline.core.inference import TTA_MODES

#: ``evaluate.tta``'s value that chooses the mode on val among ``evaluate.tta_candidates``.
CHOOSE_ON_VAL = "choose_on_val"
#: What the TTA mode is chosen by, as the best epoch is (``training.config.select_metric``'s default).
TTA_SELECT_METRIC = "macro_f1"


@dataclass
class ProtocolResult:
    """What ``evaluate_model`` returns."""

    #: the evaluate split under ``tta`` (report, logits, mask, other label sets)
    chosen: SplitEvaluation
    #: the TTA mode ``chosen`` was scored with: ``params["tta"]``, or the one chosen on val
    tta: str
    #: ``{split: {tta: report}}`` for every split and mode scored
    reports: dict[str, dict[str, dict[str, Any]]]
    #: ``{split: logits}`` without TTA, for every split scored without it
    plain_logits: dict[str, np.ndarray]
    #: how the mode was chosen: None for a fixed mode, else the val metric per candidate
    selection: dict[str, Any] | None = None


def tta_modes(params: Mapping[str, Any]) -> list[str]:
    """The TTA modes the evaluate parameters ask to score (checked: a typo names the choices)."""
    tta = params.get("tta", "none")
    modes = list(params.get("tta_candidates") or ["none"]) if tta == CHOOSE_ON_VAL else [tta]
    for mode in modes:
        if mode not in TTA_MODES:
            choices = ", ".join((*TTA_MODES, CHOOSE_ON_VAL))
            raise ValueError(f"evaluate.tta and evaluate.tta_candidates take {choices}; got {mode!r}")
    return list(dict.fromkeys(modes))


def evaluate_model(
    model: nn.Module,
    config: Mapping[str, Any],
    dataset: Mapping[str, np.ndarray],
    params: Mapping[str, Any],
    progress: bool = False,
    model_name: str = "the model",
) -> ProtocolResult:
    """Score ``model`` on ``params["split"]`` (``test``: PrivateTest) with the evaluate stage's
    parameters. A fixed ``params["tta"]`` scores the split once, under that mode;
    ``choose_on_val`` scores PublicTest and the split under each of ``params["tta_candidates"]``
    and reports the split under the mode with the best PublicTest macro-F1, so the test split is
    never chosen from. Each (split, mode) goes through ``evaluation.split.evaluate_split``: metrics,
    the leak-free figures and the other label sets; ``ProtocolResult`` holds them all."""
    modes = tta_modes(params)
    choosing = params.get("tta", "none") == CHOOSE_ON_VAL
    split = params["split"]
    splits = list(dict.fromkeys(["val", split])) if choosing else [split]
    reports: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in splits}
    scored: dict[tuple[str, str], SplitEvaluation] = {}
    for name in splits:
        for mode in modes:
            scored[name, mode] = evaluate_split(model, config, dataset, name, mode, params, progress=progress,
                                                model_name=model_name)
            reports[name][mode] = scored[name, mode].report
    selection = None
    tta = modes[0]
    if choosing:
        tta = max(modes, key=lambda mode: reports["val"][mode][TTA_SELECT_METRIC])
        selection = {"split": "val", "metric": TTA_SELECT_METRIC, "chosen": tta,
                     "candidates": {mode: reports["val"][mode][TTA_SELECT_METRIC] for mode in modes}}
    plain = {name: scored[name, "none"].logits for name in splits if (name, "none") in scored}
    return ProtocolResult(scored[split, tta], tta, reports, plain, selection)
