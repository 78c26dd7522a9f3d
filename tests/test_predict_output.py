"""fer-predict's ``--output`` folder (``commands.predict_output``): one run's results, whole, and
never a file of the user's deleted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fer_pipeline.commands.predict import main
from tests.test_predict_cli import make_model_file, make_photo, read_csv, write_photo


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_file(tmp_path_factory)


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_photo(tmp_path_factory)


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _siblings(folder: Path) -> list[str]:
    """The hidden staging / old folders a run left beside ``folder``."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def test_a_second_run_replaces_the_first_runs_results(model_file: Path, photo: Path, tmp_path: Path) -> None:
    blank = write_photo(tmp_path / "in" / "blank.png", np.full((200, 300, 3), 90, np.uint8))
    out = tmp_path / "out"
    argv = ["--model", str(model_file), "--output", str(out), "--device", "cpu", "--quiet"]
    assert main([str(photo), str(blank), *argv]) == 0
    assert _files(out) == [".fer-predict.json", "annotated/blank.png", "annotated/group.png", "predictions.csv"]
    assert main([str(blank), *argv]) == 0
    # the first run's annotated group photo is gone with its CSV: the folder is the second run's only
    assert _files(out) == [".fer-predict.json", "annotated/blank.png", "predictions.csv"]
    assert [row["file"] for row in read_csv(out / "predictions.csv")] == [str(blank)]
    assert _siblings(out) == []  # no staging or old folder left beside it


def test_an_output_folder_holding_other_files_is_refused_and_left_alone(model_file: Path, photo: Path,
                                                                       tmp_path: Path, capsys) -> None:
    out = tmp_path / "results"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "mine.txt").write_text("the user's")
    assert main([str(photo), "--model", str(model_file), "--output", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"fer-predict: error: --output {out} holds files fer-predict did not write "
                                       "(notes/mine.txt): give a new or empty folder, or move them\n")
    assert _files(out) == ["notes/mine.txt"] and _siblings(out) == []

    # a file added to a folder fer-predict wrote is the user's too
    (out / "notes" / "mine.txt").unlink()
    (out / "notes").rmdir()  # empty: taken
    assert main([str(photo), "--model", str(model_file), "--output", str(out), "--device", "cpu", "--quiet"]) == 0
    (out / "annotated" / "extra.png").write_bytes(b"mine")
    assert main([str(photo), "--model", str(model_file), "--output", str(out), "--quiet"]) == 2
    assert "(annotated/extra.png)" in capsys.readouterr().err and (out / "annotated" / "extra.png").is_file()


@pytest.mark.parametrize("output", ["file", "cwd"])
def test_an_output_that_cannot_be_swapped_is_refused(output: str, model_file: Path, photo: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    target = tmp_path / "target"
    if output == "file":
        target.write_text("a file")
    else:
        (target / "inner").mkdir(parents=True)
        monkeypatch.chdir(target / "inner")  # renaming the folder would move the working directory
    assert main([str(photo), "--model", str(model_file), "--output", str(target), "--quiet"]) == 2
    assert "--output" in capsys.readouterr().err


def test_an_interrupted_run_leaves_the_output_as_it_was(model_file: Path, photo: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    out = tmp_path / "out"
    argv = ["--model", str(model_file), "--output", str(out), "--device", "cpu", "--quiet"]
    assert main([str(photo), *argv]) == 0
    before = {name: (out / name).read_bytes() for name in _files(out)}
    video = tmp_path / "long.avi"
    video.write_bytes(b"not read")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("fer_pipeline.core.predict.video.predict_video", interrupted)
    blank = write_photo(tmp_path / "in" / "blank.png", np.full((200, 300, 3), 90, np.uint8))
    try:
        code = main([str(blank), str(video), *argv])
    except KeyboardInterrupt:  # not handled: a traceback (and pytest would stop here)
        code = None
    assert code == 130
    assert {name: (out / name).read_bytes() for name in _files(out)} == before
    [staging] = _siblings(out)
    assert _files(out.parent / staging) == ["annotated/blank.png", "predictions.csv"]  # the finished photos
    assert capsys.readouterr().err.endswith(f"fer-predict: error: interrupted: {out} is unchanged; the files "
                                            f"finished so far are in {out.parent / staging}\n")


def test_publish_puts_the_earlier_results_back_when_the_swap_fails(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from fer_pipeline.commands import predict_output

    out = tmp_path / "out"
    staging = predict_output.start_staging(out)
    (staging / "predictions.csv").write_text("first")
    predict_output.publish(staging, out)
    second = predict_output.start_staging(out)
    (second / "predictions.csv").write_text("second")
    real_rename = predict_output.os.rename

    def failing(source, target):
        if Path(source) == second:
            raise OSError("cross-device link")
        real_rename(source, target)

    monkeypatch.setattr(predict_output.os, "rename", failing)
    with pytest.raises(OSError):
        predict_output.publish(second, out)
    assert (out / "predictions.csv").read_text() == "first" and (second / "predictions.csv").read_text() == "second"
