import re

import numpy as np
import pytest
import torch
from kedro.io import DatasetError

from fer_pipeline.core.config import ParameterError
from fer_pipeline.kedro_glue.datasets import (
    FigureFolderDataset,
    ModelFile,
    NpzDataset,
    OnnxFileDataset,
    TorchModelDataset,
    VideoFolderDataset,
)


def test_npz_round_trip_keeps_dtypes_and_refuses_pickles(tmp_path):
    data = {
        "images": np.arange(2 * 48 * 48, dtype=np.uint8).reshape(2, 48, 48),
        "labels": np.array([3, 1], dtype=np.int64),
        "splits": np.array(["train", "test"]),
    }
    ds = NpzDataset(filepath=(tmp_path / "sub" / "d.npz").as_posix())
    assert not ds.exists()
    ds.save(data)
    loaded = ds.load()
    assert set(loaded) == set(data)
    for key in data:
        assert loaded[key].dtype == data[key].dtype
        np.testing.assert_array_equal(loaded[key], data[key])
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["d.npz"]  # atomic write left no temp file

    objects = NpzDataset(filepath=(tmp_path / "obj.npz").as_posix())
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DatasetError, match="allow_pickle=False"):
        objects.load()


def test_npz_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="run the stage that writes it first, in the same environment.*--env demo"):
        NpzDataset(filepath=(tmp_path / "none.npz").as_posix()).load()


def test_torch_model_dataset_is_lazy_and_weights_only(tmp_path):
    path = tmp_path / "m.pt"
    ds = TorchModelDataset(filepath=path.as_posix())
    handle = ds.load()
    assert isinstance(handle, ModelFile) and not handle.exists()
    with pytest.raises(FileNotFoundError, match="kedro run --env demo"):
        handle.load()

    layer = torch.nn.Linear(3, 2)
    ds.save({"config": {"arch": "linear", "sizes": [3, 2]}, "state_dict": layer.state_dict()})
    bundle = ds.load().load()
    assert bundle["config"] == {"arch": "linear", "sizes": [3, 2]}
    torch.testing.assert_close(bundle["state_dict"]["weight"], layer.weight.detach())

    with pytest.raises(DatasetError, match="config"):
        ds.save({"state_dict": {}})


class NotAllowed:
    """Any class outside torch's weights_only allow-list."""


def test_model_file_rejects_arbitrary_pickles(tmp_path):
    """Refused as the user's mistake (``kedro run`` prints it in a line), without torch's advice to
    load the file with weights_only=False, which would run its code."""
    path = tmp_path / "evil.pt"
    torch.save({"config": NotAllowed(), "state_dict": {}}, path)
    with pytest.raises(ParameterError, match=f"{re.escape(str(path))} is not a model file of this project") as raised:
        ModelFile(path).load()
    assert "weights_only" not in str(raised.value)


def test_figure_folder_replaces_its_figures_and_stays_for_none(tmp_path):
    from matplotlib.figure import Figure

    folder = tmp_path / "external_confusion"
    ds = FigureFolderDataset(path=folder.as_posix(), save_args={"dpi": 20})
    assert not ds.exists() and ds.load() == {}
    ds.save({"ckplus48": Figure(), "jaffe": Figure()})
    assert sorted(ds.load()) == ["ckplus48", "jaffe"] and (folder / "jaffe.png").stat().st_size > 0
    ds.save({"jaffe": Figure()})
    assert sorted(p.name for p in folder.iterdir()) == ["jaffe.png"]  # the dropped set's figure is gone
    ds.save({})
    assert ds.exists() and not any(folder.iterdir())
    with pytest.raises(DatasetError, match="not a plain file name"):
        ds.save({"../escape": Figure()})
    with pytest.raises(DatasetError, match="saves a dict of figures"):
        ds.save([Figure()])



def test_video_folder_moves_finished_videos_in_and_drops_the_others(tmp_path):
    folder = tmp_path / "annotated_videos"
    ds = VideoFolderDataset(path=folder.as_posix())
    assert not ds.exists() and ds.load() == {}
    made = tmp_path / "work"
    made.mkdir()
    (made / "call.MP4").write_bytes(b"call frames")
    (made / "street.avi").write_bytes(b"street frames")
    ds.save({"call": made / "call.MP4", "street": made / "street.avi"})
    assert {name: path.name for name, path in ds.load().items()} == {"call": "call.mp4", "street": "street.avi"}
    assert (folder / "call.mp4").read_bytes() == b"call frames" and not any(made.iterdir())  # moved
    (folder / "notes.txt").write_text("not a video")
    (made / "call.mp4").write_bytes(b"again")
    ds.save({"call": made / "call.mp4"})
    assert sorted(p.name for p in folder.iterdir()) == ["call.mp4", "notes.txt"]  # the dropped video is gone
    assert not any(p.name.endswith(".tmp") for p in folder.iterdir())
    ds.save({})
    assert ds.exists() and sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    with pytest.raises(DatasetError, match="not a plain file name"):
        ds.save({"../escape": made / "x.mp4"})
    with pytest.raises(DatasetError, match="no file at"):
        ds.save({"gone": made / "gone.mp4"})
    with pytest.raises(DatasetError, match="saves a dict of video file paths"):
        ds.save([made / "x.mp4"])


def test_onnx_file_dataset_writes_bytes_atomically_and_loads_the_path(tmp_path):
    from pathlib import Path

    from fer_pipeline.project import catalog_file

    repo = Path(__file__).resolve().parents[1]
    assert catalog_file(repo, "resnet_onnx") == repo / "data" / "06_models" / "resnet34.onnx"  # beside resnet34.pt
    ds = OnnxFileDataset(filepath=(tmp_path / "06_models" / "resnet34.onnx").as_posix())
    assert not ds.exists()
    ds.save(b"onnx bytes")
    assert ds.load() == tmp_path / "06_models" / "resnet34.onnx" and ds.load().read_bytes() == b"onnx bytes"
    with pytest.raises(DatasetError, match="saves the bytes of an ONNX model, got dict"):
        ds.save({"config": {}})
    assert sorted(p.name for p in (tmp_path / "06_models").iterdir()) == ["resnet34.onnx"]  # no temp file left
