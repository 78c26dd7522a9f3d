"""Tests for core.onnx_model: loading an exported file, and short clear errors for a missing,
corrupt or foreign one."""

from __future__ import annotations

import pytest

from fer_pipeline.core.faces.recognizer import EmotionRecognizer
from fer_pipeline.core.model_files import ModelFileError
from fer_pipeline.core.onnx_model import default_threads, load_onnx_model, session_options
from tests.core.onnx_files import small_model_files


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    return small_model_files(tmp_path_factory.mktemp("onnx"))[1]


def test_a_missing_file_says_how_to_make_one(tmp_path):
    for load in (load_onnx_model, EmotionRecognizer.load):
        with pytest.raises(FileNotFoundError, match=r"ONNX model file not found: .*absent.onnx \(export one with "
                           r"`fer-export MODEL.pt OUT.onnx`"):
            load(tmp_path / "absent.onnx")


@pytest.mark.parametrize("content", [b"", b"not an onnx model", b"\x08\x07" + bytes(range(256)) * 4])
def test_a_corrupt_file_is_a_model_file_error_in_one_line(tmp_path, content):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=r"broken.onnx is not an ONNX model ONNX Runtime can load \(") as error:
        EmotionRecognizer.load(path)
    assert "\n" not in str(error.value) and "fer-export MODEL.pt OUT.onnx" in str(error.value)


def test_a_truncated_export_and_a_folder_are_refused(tmp_path, onnx_file):
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(onnx_file.read_bytes()[:100_000])
    with pytest.raises(ModelFileError, match="cut.onnx is not an ONNX model"):
        load_onnx_model(cut)
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(ModelFileError, match="folder.onnx is a folder, not an ONNX model file"):
        load_onnx_model(tmp_path / "folder.onnx")


def _foreign_onnx(path, input_name: str):
    """A valid ONNX model (logits = the input) that another program could have written: no metadata."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", [input_name], ["logits"])], "identity",
                              [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, 7])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 7])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def test_an_onnx_model_of_another_program_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match="plain.onnx is an ONNX model without this project's metadata"):
        load_onnx_model(_foreign_onnx(tmp_path / "plain.onnx", "faces"))
    with pytest.raises(ModelFileError, match=r"other.onnx is an ONNX model, but not a face classifier .* \['x'\]"):
        load_onnx_model(_foreign_onnx(tmp_path / "other.onnx", "x"))


def test_sessions_use_the_cores_given_to_the_process_without_spinning(onnx_file):
    options = session_options()
    assert options.intra_op_num_threads == default_threads() >= 1
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert load_onnx_model(onnx_file, threads=1).session.get_session_options().intra_op_num_threads == 1
