"""core.predict.params: the predict stage's parameters, checked up front."""

from __future__ import annotations

from pathlib import Path

import pytest

from fer_pipeline.core.predict.params import PREDICT_KEYS, check_predict_params


def test_the_predict_key_list_is_conf_base():
    from fer_pipeline.params import load_parameters

    conf = load_parameters(Path(__file__).resolve().parents[3] / "conf" / "base")
    assert set(PREDICT_KEYS) == set(conf["predict"])
    check_predict_params(conf["predict"])  # the defaults pass


@pytest.mark.parametrize(("change", "message"), [
    ({"every_n_frame": 2}, r"'every_n_frame' \(did you mean 'every_n_frames'\?\)"),
    ({"amp": "fast"}, "amp='fast': use one of auto, on, off"),
    ({"tta": "sideways"}, "predict.tta must be one of none, flip, ten_crop"),
    ({"every_n_frames": 0}, "predict.every_n_frames must be a number >= 1"),
    ({"every_n_frames": 1.5}, "predict.every_n_frames must be a whole number"),
    ({"workers": 0}, "predict.workers must be a number >= 1 or null"),
    ({"margin": -0.1}, "predict.margin must be a number >= 0"),
    ({"detect_max_side": 16}, r"predict.detect_max_side must be a whole number of pixels >= 24 .* or 0/null "
                              r"\(full resolution\), got 16"),
    ({"detect_max_side": 320.5}, r"predict.detect_max_side must be a whole number"),
    ({"detect_retry_max_side": 20}, r"predict.detect_retry_max_side must be .* or 0 \(no second search\), or null "
                                    r"\(the detector's default, 800\)"),
    ({"detector": "haar", "detect_retry_max_side": 800}, "predict.detect_retry_max_side needs the yunet detector"),
    ({"detect_retry_max_side": 320}, r"predict.detect_retry_max_side \(320\) must be larger than "
                                     r"predict.detect_max_side \(320\), or 0 for no second search"),
    ({"detector": "yunnet"}, r"predict.detector must be one of haar, yunet, got 'yunnet' \(did you mean 'yunet'\?\)"),
    ({"detector": None}, "predict.detector must be one of haar, yunet, got None"),
    ({"align": "yes"}, "predict.align must be true or false, got 'yes'"),
    ({"detector": "haar", "min_score": 0.8}, "predict.min_score needs the yunet detector"),
    ({"min_score": 2}, r"predict.min_score must be a number in \(0, 1\]"),
    ({"min_face": 20}, r"predict.min_face must be a fraction of the image's shorter side in \[0, 1\)"),
    ({"backend": "onnx"}, "predict.backend must be one of torch, onnxruntime, got 'onnx'"),
    ({"backend": "onnxruntime", "device": "cuda"}, "onnxruntime back-end runs on the CPU: predict.device must be"),
    ({"backend": "onnxruntime", "amp": "on"}, "predict.amp on is torch's bf16 autocast"),
])
def test_predict_params_refuse_typos_and_bad_values_up_front(change, message):
    params = {"inputs": "photos", "margin": 0.2, "tta": "none", "device": "cpu", "amp": "auto"}
    check_predict_params({**params, "workers": None, "detect_max_side": None, "every_n_frames": 3})
    check_predict_params({**params, "detector": "yunet", "detect_retry_max_side": 0})
    check_predict_params({**params, "detect_retry_max_side": 640})  # above the stage's 320 px first search
    with pytest.raises(ValueError, match=message):
        check_predict_params({**params, **change})
