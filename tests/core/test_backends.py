"""Tests for core.backends: which back-end runs a model file, and the options it refuses."""

from __future__ import annotations

import pytest

from fer_pipeline.core.backends import BACKENDS, backend_for, check_backend, check_backend_options


def test_the_file_chooses_when_no_backend_is_given():
    assert backend_for("m.onnx") == "onnxruntime"
    assert backend_for("dir/M.ONNX") == "onnxruntime"
    assert backend_for("m.pt") == "torch"
    assert backend_for("m.pt", "onnxruntime") == "onnxruntime"  # converted when it loads


def test_an_onnx_file_does_not_run_with_torch_and_unknown_backends_are_named():
    with pytest.raises(ValueError, match="m.onnx is an ONNX model, which only ONNX Runtime runs: use --backend "
                       "onnxruntime"):
        backend_for("m.onnx", "torch", "--backend")
    with pytest.raises(ValueError, match="predict.backend must be one of torch, onnxruntime, got 'tensorrt'"):
        check_backend("tensorrt", "predict.backend")
    assert BACKENDS == ("torch", "onnxruntime")


def test_onnxruntime_refuses_a_gpu_and_bf16_rather_than_ignoring_them():
    check_backend_options("onnxruntime", "auto", "auto")
    check_backend_options("onnxruntime", "cpu", "off")
    check_backend_options("torch", "cuda", "on")
    with pytest.raises(ValueError, match="runs on the CPU: predict.device must be auto or cpu with it, got 'cuda'"):
        check_backend_options("onnxruntime", "cuda", "auto", "predict.")
    with pytest.raises(ValueError, match="--amp on is torch's bf16 autocast"):
        check_backend_options("onnxruntime", "cpu", "on", "--")
