"""Tests for the ``fer-predict`` command line: exit codes, default model lookup, outputs (photos and videos)."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fer_pipeline.commands.predict import find_project_root, main

DEFAULT_MODEL_RELATIVE = Path("data") / "06_models" / "resnet34.pt"  # conf/base/catalog.yml's resnet_model
from fer_pipeline.core.models import build_resnet34, model_config, save_model
from fer_pipeline.demo import draw_photo
from tests.core.photo_files import TIFF_FOLDER_IMAGES, assert_frontal_landmarks, csv_landmarks, write_tiff_folder
from tests.core.video_clips import read_video, write_clip

PHOTO_FACES = [(3, (60, 90, 130, 150)), (5, (290, 80, 120, 140))]


def write_photo(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imencode(path.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tofile(path)
    return path


def make_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small untrained classifier file (resnet18, 44 px), the same for the same seed."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    return save_model(path, build_resnet34(arch="resnet18"), model_config(arch="resnet18", input_size=44))


def make_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A drawn group photo with ``PHOTO_FACES`` faces."""
    folder = tmp_path_factory.mktemp("photos")
    return write_photo(folder / "group.jpg", draw_photo(PHOTO_FACES, rng=np.random.default_rng(1)))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_file(tmp_path_factory)


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_photo(tmp_path_factory)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_success_writes_csv_and_annotations(model_file: Path, photo: Path, tmp_path: Path, capsys) -> None:
    blank = write_photo(tmp_path / "in" / "blank.png", np.full((200, 300, 3), 90, np.uint8))
    out = tmp_path / "out"
    code = main([str(photo), str(blank.parent), "--model", str(model_file), "--output", str(out),
                 "--tta", "flip", "--device", "cpu", "--margin", "0.3", "--quiet"])
    assert code == 0
    rows = read_csv(out / "predictions.csv")
    assert {row["status"] for row in rows} == {"face", "no_face"}
    assert sum(row["status"] == "face" for row in rows) >= 1
    assert (out / "annotated" / "group.png").is_file() and (out / "annotated" / "blank.png").is_file()
    printed = capsys.readouterr().out
    assert "faces" in printed and str(out / "predictions.csv") in printed


def test_detector_yunet_finds_the_same_faces(model_file: Path, photo: Path, tmp_path: Path) -> None:
    rows = {}
    for detector in ("haar", "yunet"):
        out = tmp_path / detector
        assert main([str(photo), "--model", str(model_file), "--output", str(out), "--device", "cpu", "--quiet",
                     "--detector", detector]) == 0
        rows[detector] = [row for row in read_csv(out / "predictions.csv") if row["status"] == "face"]
    assert len(rows["yunet"]) == len(rows["haar"]) == len(PHOTO_FACES)
    for row in rows["yunet"]:  # the score and landmarks, in the photo's pixels; empty for Haar
        assert 0.7 <= float(row["score"]) <= 1.0
        assert_frontal_landmarks([row[k] for k in ("x", "y", "w", "h")], csv_landmarks(row))
    assert all(row["score"] == row["right_eye_x"] == row["left_mouth_corner_y"] == "" for row in rows["haar"])


def test_a_folder_of_tiff_photos_is_searched_with_its_subfolders(model_file: Path, photo: Path, tmp_path: Path,
                                                                  capsys) -> None:
    folder = write_tiff_folder(tmp_path / "jaffe")
    out = tmp_path / "out"
    assert main([str(photo.parent), str(folder), "--model", str(model_file), "--output", str(out), "--device", "cpu",
                 "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == f"fer-predict: skipped 1 file that is not an image or a video: {folder / 'README.txt'}\n"
    rows = read_csv(out / "predictions.csv")
    files = [str(photo), *(str(folder / name) for name in TIFF_FOLDER_IMAGES)]  # .tiff, .TIF, subfolders
    assert list(dict.fromkeys(row["file"] for row in rows)) == files
    assert {row["status"] for row in rows if row["file"] == str(folder / "KA.AN1.40.TIF")} == {"face"}
    # a/face.tiff and b/face.tiff: two annotated images, the CSV names each one's subfolder
    assert sorted(p.name for p in (out / "annotated").iterdir()) == [
        "KA.AN1.39.png", "KA.AN1.40.png", "face.png", "face_2.png", "group.png"]
    assert re.search(r"^image files +5$", captured.out, re.MULTILINE)


def test_a_folder_without_images_or_videos_says_what_it_skipped(model_file: Path, tmp_path: Path, capsys) -> None:
    for name in ("notes.txt", "sub/data.csv", ".hidden.jpg"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_text("not a photo")
    assert main([str(tmp_path / "in"), "--model", str(model_file), "--output", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert (f"skipped 2 files that are not images or videos: {tmp_path / 'in' / 'notes.txt'}, "
            f"{tmp_path / 'in' / 'sub' / 'data.csv'}\n") in err
    assert "no image or video files (.jpg .jpeg" in err and " .tif .tiff " in err and ".hidden" not in err


def test_no_face_is_still_success(model_file: Path, tmp_path: Path) -> None:
    blank = write_photo(tmp_path / "blank.jpg", np.full((200, 300, 3), 90, np.uint8))
    assert main([str(blank), "--model", str(model_file), "--output", str(tmp_path / "out"), "--quiet"]) == 0
    assert [row["status"] for row in read_csv(tmp_path / "out" / "predictions.csv")] == ["no_face"]


def test_unreadable_files_alone_exit_1(model_file: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    code = main([str(tmp_path / "empty.jpg"), str(tmp_path / "text.jpg"), "--model", str(model_file),
                 "--output", str(tmp_path / "out"), "--quiet"])
    assert code == 1
    assert "could be read" in capsys.readouterr().err
    empty_folder = tmp_path / "nothing"
    empty_folder.mkdir()
    assert main([str(empty_folder), "--model", str(model_file), "--quiet"]) == 1


def test_unreadable_next_to_readable_is_a_partial_failure(model_file: Path, photo: Path, tmp_path: Path,
                                                          capsys) -> None:
    """Exit 4, like a broken video beside a photo: the others' results written, the failures listed."""
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    assert main([str(photo), str(tmp_path / "broken.png"), "--model", str(model_file), "--output", str(out),
                 "--quiet"]) == 4
    statuses = [row["status"] for row in read_csv(out / "predictions.csv")]
    assert "unreadable" in statuses and "face" in statuses
    err = capsys.readouterr().err
    assert f"fer-predict: error: 1 of 2 inputs could not be read in full; the others' results are in {out}\n" in err
    assert f"\n  {tmp_path / 'broken.png'}: " in err


def test_an_image_over_the_pixel_limit_is_skipped_and_reported(model_file: Path, photo: Path, tmp_path: Path,
                                                                capsys) -> None:
    """fer-serve's limit (50 million pixels), from the file's header: a 225-megapixel photo took
    2.35 GB to decode and search."""
    side = 7072  # 50,013,184 pixels; a flat PNG of it is 60 kB
    big = tmp_path / "in" / "huge.png"
    big.parent.mkdir()
    cv2.imencode(".png", np.zeros((side, side), np.uint8))[1].tofile(big)
    out = tmp_path / "out"
    code = main([str(photo), str(big), "--model", str(model_file), "--output", str(out), "--device", "cpu", "--quiet"])
    assert code == 4  # some inputs not read: the others' results are written
    rows = {row["file"]: row for row in read_csv(out / "predictions.csv")}
    reason = f"{side}x{side} = {side * side:,} pixels is over the limit of 50,000,000"
    assert rows[str(big)]["status"] == "unreadable" and reason in rows[str(big)]["reason"]
    assert rows[str(photo)]["status"] == "face"
    assert f"unreadable: {big}: {reason}" in capsys.readouterr().out
    assert not (out / "annotated" / "huge.png").exists()
    assert main([str(big), "--model", str(model_file), "--output", str(tmp_path / "out2"), "--device", "cpu",
                 "--quiet", "--max-pixels", str(side * side)]) == 0  # a higher limit reads it


@pytest.mark.parametrize(
    "argv",
    [[], ["--tta", "sideways", "x.jpg"], ["--margin", "-1", "x.jpg"], ["--bogus-option", "x.jpg"],
     ["--every-n-frames", "0", "x.jpg"], ["--detect-max-side", "-5", "x.jpg"], ["--detect-max-side", "16", "x.jpg"],
     ["--workers", "0", "x.jpg"], ["--amp", "fast", "x.jpg"], ["--detector", "mtcnn", "x.jpg"],
     ["--detector", "haar", "--min-score", "0.8", "x.jpg"], ["--min-score", "0", "x.jpg"],
     ["--min-face", "1.5", "x.jpg"], ["--detect-retry-max-side", "16", "x.jpg"],
     ["--detector", "haar", "--detect-retry-max-side", "800", "x.jpg"]],
    ids=["no-path", "bad-tta", "negative-margin", "unknown-option", "zero-every-n", "negative-detect-side",
         "detect-side-under-the-cascade-window", "zero-workers", "bad-amp",
         "unknown-detector", "min-score-with-haar", "zero-min-score", "min-face-over-1", "retry-side-under-24",
         "retry-with-haar"],
)
def test_usage_errors_exit_2(argv: list[str], tmp_path: Path) -> None:
    (tmp_path / "x.jpg").write_bytes(b"")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(argv) == 2
    finally:
        os.chdir(cwd)


def test_a_second_search_no_larger_than_the_first_is_refused_in_the_flags_words(tmp_path: Path, capsys) -> None:
    (tmp_path / "x.jpg").write_bytes(b"")
    assert main(["--detect-max-side", "0", "--detect-retry-max-side", "640", str(tmp_path / "x.jpg")]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert ("--detect-retry-max-side (640) must be larger than --detect-max-side (0, full resolution), "
            "or 0 for no second search") in message


@pytest.mark.parametrize(("flag", "value", "allowed"), [
    ("--margin", "100", "a number from 0 to 1"),
    ("--margin", "nan", "a number from 0 to 1"),
    ("--detect-max-side", "10000000000", "a whole number from 24 to 8192, or 0 (full resolution)"),
    ("--detect-max-side", "1e10", "a whole number from 24 to 8192, or 0 (full resolution)"),
    ("--detect-max-side", "16", "a whole number from 24 to 8192, or 0 (full resolution)"),
    ("--every-n-frames", "0", "a whole number >= 1"),
    ("--max-pixels", "0", "a whole number >= 1"),
])
def test_an_out_of_range_value_names_the_flag_and_the_allowed_range(flag: str, value: str, allowed: str,
                                                                     tmp_path: Path, capsys) -> None:
    (tmp_path / "x.jpg").write_bytes(b"")
    assert main([str(tmp_path / "x.jpg"), flag, value, "--model", str(tmp_path / "none.pt")]) == 2
    assert capsys.readouterr().err.endswith(f"fer-predict: error: argument {flag}: must be {allowed}, got '{value}'\n")


def test_missing_input_exits_2_before_loading_the_model(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "missing.jpg"), "--model", str(tmp_path / "also_missing.pt")]) == 2
    assert "missing.jpg" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "detector", "align", "retry"), [
    ([], "yunet", True, 800),  # the defaults: DEFAULT_DETECTOR, DEFAULT_ALIGN, yunet.RETRY_MAX_SIDE
    (["--detector", "haar", "--no-align"], "haar", False, None),
    (["--detector", "yunet", "--no-align", "--detect-retry-max-side", "0"], "yunet", False, None),
    (["--detect-retry-max-side", "640"], "yunet", True, 640),
])
def test_detector_and_align_reach_the_recognizer(flags: list[str], detector: str, align: bool, retry: int | None,
                                                 model_file: Path, photo: Path, tmp_path: Path, monkeypatch) -> None:
    from fer_pipeline.core.faces import recognizer

    made = []
    original = recognizer.EmotionRecognizer.load.__func__

    def load(cls, path, **options):
        made.append(options)
        made.append(original(cls, path, **options))
        return made[-1]

    monkeypatch.setattr(recognizer.EmotionRecognizer, "load", classmethod(load))
    assert main([str(photo), "--model", str(model_file), "--output", str(tmp_path / "out"), "--device", "cpu",
                 *flags, "--quiet"]) == 0
    assert (made[0]["detector"], made[0]["align"]) == (detector, align)
    assert getattr(made[1].finder.detector, "retry_max_side", None) == retry


def test_the_flags_defaults_are_the_libraries_defaults() -> None:
    from fer_pipeline.commands.predict import build_parser
    from fer_pipeline.core.faces.detector import DEFAULT_ALIGN, DEFAULT_DETECTOR

    defaults = build_parser().parse_args(["x.jpg"])
    assert (defaults.detector, defaults.align) == (DEFAULT_DETECTOR, DEFAULT_ALIGN) == ("yunet", True)
    assert build_parser().parse_args(["x.jpg", "--no-align"]).align is False
    assert build_parser().parse_args(["x.jpg", "--align"]).align is True


def test_an_unknown_device_exits_2_before_anything_is_written(model_file: Path, photo: Path, tmp_path: Path,
                                                             capsys) -> None:
    out = tmp_path / "out"
    assert main([str(photo), "--model", str(model_file), "--output", str(out), "--device", "gpu", "--quiet"]) == 2
    assert capsys.readouterr().err == "fer-predict: error: --device must be auto, cpu, cuda, cuda:1, ..., got 'gpu'\n"
    assert not out.exists()


def test_bad_model_exits_3(photo: Path, tmp_path: Path, capsys) -> None:
    assert main([str(photo), "--model", str(tmp_path / "nope.pt")]) == 3
    assert "kedro run" in capsys.readouterr().err
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a model")
    assert main([str(photo), "--model", str(garbage)]) == 3
    wrong_payload = tmp_path / "weights_only.pt"
    torch.save({"state_dict": {}}, wrong_payload)  # no config
    assert main([str(photo), "--model", str(wrong_payload)]) == 3
    assert f"{wrong_payload} is not a model file of this project" in capsys.readouterr().err


@pytest.mark.parametrize("content", [os.urandom(2048), b"not a model\n"], ids=["random-bytes", "text"])
def test_a_corrupt_model_is_named_with_how_models_are_made_not_torchs_unsafe_advice(
        content: bytes, photo: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(content)
    completed = subprocess.run(
        [sys.executable, "-m", "fer_pipeline.commands.predict", str(photo), "--model", str(corrupt),
         "--output", str(tmp_path / "out"), "--quiet"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "DO_NOT_TRACK": "true"})
    assert completed.returncode == 3
    assert completed.stderr.startswith(f"fer-predict: error: {corrupt} is not a model file of this project")
    assert "kedro run" in completed.stderr and "data/06_models/" in completed.stderr
    assert "weights_only" not in completed.stderr and "Traceback" not in completed.stderr


def test_default_model_is_found_from_the_kedro_project_root(
    model_file: Path, photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[tool.kedro]\npackage_name = "x"\n')
    (project / "notebooks" / "pyproject.toml").write_text("[tool.black]\n")  # not a kedro project
    (project / "conf").mkdir()
    shutil.copytree(Path(__file__).resolve().parents[1] / "conf" / "base", project / "conf" / "base")  # the catalog
    monkeypatch.chdir(project / "notebooks")
    assert find_project_root() == project.resolve()

    assert main([str(photo)]) == 3  # no trained model yet
    err = capsys.readouterr().err
    assert str(project.resolve() / DEFAULT_MODEL_RELATIVE) in err and "kedro run --env demo" in err
    assert "other environments" not in err

    (project / "conf" / "demo").mkdir()
    (project / "conf" / "demo" / "globals.yml").write_text("data_root: data/demo\n")
    demo_model = project / "data" / "demo" / "06_models" / "resnet34.pt"
    demo_model.parent.mkdir(parents=True)
    demo_model.write_bytes(model_file.read_bytes())
    assert main([str(photo)]) == 3  # the demo's model is never taken silently for a real one...
    assert f"--model {demo_model.resolve()} (--env demo)" in capsys.readouterr().err  # ...but it is pointed out

    (project / DEFAULT_MODEL_RELATIVE).parent.mkdir(parents=True)
    (project / DEFAULT_MODEL_RELATIVE).write_bytes(model_file.read_bytes())
    assert main([str(photo), "--quiet", "--device", "cpu"]) == 0
    assert (project / "notebooks" / "predictions" / "predictions.csv").is_file()  # default output: ./predictions


def test_find_project_root_falls_back_to_start(tmp_path: Path) -> None:
    assert find_project_root(tmp_path) == tmp_path.resolve()


def test_python_dash_m_entry_point(model_file: Path, photo: Path, tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "fer_pipeline.commands.predict", str(photo), "--model", str(model_file),
         "--output", str(tmp_path / "out"), "--quiet", "--device", "cpu"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "DO_NOT_TRACK": "true"},
    )
    assert completed.returncode == 0, completed.stderr
    assert "predictions.csv" in completed.stdout
    assert (tmp_path / "out" / "predictions.csv").is_file()
    usage = subprocess.run([sys.executable, "-m", "fer_pipeline.commands.predict"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_video_writes_frame_csv_and_annotated_video(model_file: Path, photo: Path, tmp_path: Path, capsys) -> None:
    clip = write_clip(tmp_path / "in" / "call.avi", frames=8)
    out = tmp_path / "out"
    code = main([str(clip), str(photo), "--model", str(model_file), "--output", str(out), "--every-n-frames", "2",
                 "--device", "cpu", "--quiet"])
    assert code == 0
    rows = read_csv(out / "videos" / "call.csv")
    assert sorted({int(r["frame"]) for r in rows}) == [0, 2, 4, 6] and len({r["track_id"] for r in rows}) == 2
    assert len(read_video(out / "videos" / "call.mp4")) == 8  # every frame, skipped ones with carried boxes
    assert {r["status"] for r in read_csv(out / "predictions.csv")} == {"face"}  # the photo, beside the video
    printed = capsys.readouterr().out
    assert "8 frames (4 processed)" in printed and str(out / "videos" / "call.csv") in printed


def test_truncated_video_keeps_partial_outputs_and_reports_the_break(model_file: Path, tmp_path: Path,
                                                                    capsys) -> None:
    data = write_clip(tmp_path / "whole.avi", frames=10).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"no video here" * 30)
    out = tmp_path / "out"
    assert main([str(cut), str(junk), "--model", str(model_file), "--output", str(out), "--device", "cpu",
                 "--quiet"]) == 4  # partial failure: both listed, the cut video's frames kept
    err = capsys.readouterr().err
    assert err.startswith(f"fer-predict: error: 2 of 2 inputs could not be read in full; the others' results are "
                          f"in {out}\n  {cut}: video broke off at frame")
    assert f"\n  {junk}: OpenCV cannot open it" in err and err.count("video broke off") == 1  # not logged twice
    frames = {int(r["frame"]) for r in read_csv(out / "videos" / "cut.csv")}
    assert frames and max(frames) < 10 and len(read_video(out / "videos" / "cut.mp4")) == len(frames)
    assert not (out / "predictions.csv").exists()  # no photo was given: no empty photo table
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert main([str(junk), "--model", str(model_file), "--output", str(out), "--quiet"]) == 1  # nothing readable
    assert f"{out} is unchanged" in capsys.readouterr().err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_a_broken_video_beside_a_photo_exits_4_without_ffmpegs_raw_lines(model_file: Path, photo: Path,
                                                                         tmp_path: Path) -> None:
    """FFmpeg's own "[mov,mp4,...] moov atom not found" is printed by C code: a subprocess sees it."""
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(os.urandom(3000))
    env = {key: value for key, value in os.environ.items() if key != "OPENCV_FFMPEG_LOGLEVEL"}
    completed = subprocess.run(
        [sys.executable, "-m", "fer_pipeline.commands.predict", str(photo), str(broken), "--model", str(model_file),
         "--output", str(tmp_path / "out"), "--quiet", "--device", "cpu"],
        capture_output=True, text=True, timeout=120, env={**env, "DO_NOT_TRACK": "true"})
    assert completed.returncode == 4
    assert completed.stderr == (f"fer-predict: error: 1 of 2 inputs could not be read in full; the others' results "
                                f"are in {tmp_path / 'out'}\n  {broken}: OpenCV cannot open it as a video (not a "
                                "video, an unsupported codec, or a file cut short before its index, e.g. an MP4 "
                                "without its moov atom)\n")
    assert (tmp_path / "out" / "predictions.csv").is_file()


# ------------------------------------------------------------------------- --backend onnxruntime


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.core.onnx_files import small_model_files

    return small_model_files(tmp_path_factory.mktemp("onnx"))


def _face_rows(out: Path) -> list[dict[str, str]]:
    return [row for row in read_csv(out / "predictions.csv") if row["status"] == "face"]


def test_backend_onnxruntime_gives_the_torch_faces_and_emotions(onnx_files, photo: Path, tmp_path: Path,
                                                                capsys) -> None:
    pt, onnx = onnx_files
    runs = {"torch": [str(pt), "--amp", "off"], "converted": [str(pt), "--backend", "onnxruntime"],
            "onnx": [str(onnx)]}
    rows = {}
    for name, model in runs.items():
        assert main([str(photo), "--output", str(tmp_path / name), "--device", "cpu", "--quiet", "--tta", "flip",
                     "--model", *model]) == 0
        rows[name] = _face_rows(tmp_path / name)
        backend = re.search(r"^backend +(\S+)$", capsys.readouterr().out, re.MULTILINE).group(1)
        assert backend == ("torch" if name == "torch" else "onnxruntime")
    probabilities = [key for key in rows["torch"][0] if key.startswith("prob_")] + ["confidence"]
    assert len(rows["torch"]) == len(PHOTO_FACES)
    for name in ("converted", "onnx"):
        assert [{k: v for k, v in row.items() if k not in probabilities} for row in rows[name]] == [
            {k: v for k, v in row.items() if k not in probabilities} for row in rows["torch"]]
        np.testing.assert_allclose([[float(row[k]) for k in probabilities] for row in rows[name]],
                                   [[float(row[k]) for k in probabilities] for row in rows["torch"]], atol=1e-5)


def test_backend_conflicts_are_usage_errors_and_a_bad_onnx_file_exits_3(onnx_files, photo: Path, tmp_path: Path,
                                                                        capsys) -> None:
    pt, onnx = onnx_files
    out = ["--output", str(tmp_path / "out"), "--quiet"]
    assert main([str(photo), "--model", str(onnx), "--backend", "torch", *out]) == 2
    assert "is an ONNX model, which only ONNX Runtime runs: use --backend onnxruntime" in capsys.readouterr().err
    assert main([str(photo), "--model", str(pt), "--backend", "onnxruntime", "--device", "cuda", *out]) == 2
    assert "--device must be auto or cpu with it" in capsys.readouterr().err
    assert main([str(photo), "--model", str(onnx), "--amp", "on", *out]) == 2
    assert "--amp on is torch's bf16 autocast" in capsys.readouterr().err
    assert main([str(photo), "--model", str(tmp_path / "absent.onnx"), *out]) == 3
    assert "model file not found" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(os.urandom(4096))
    assert main([str(photo), "--model", str(corrupt), *out]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"fer-predict: error: {corrupt} is not an ONNX model ONNX Runtime can load (")
    assert "fer-export MODEL.pt OUT.onnx" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_the_default_model_with_backend_onnxruntime_is_the_export_beside_it(tmp_path: Path) -> None:
    from fer_pipeline.commands.predict import default_model_path

    (tmp_path / "pyproject.toml").write_text('[tool.kedro]\npackage_name = "x"\n')
    shutil.copytree(Path(__file__).resolve().parents[1] / "conf" / "base", tmp_path / "conf" / "base")
    models = tmp_path / "data" / "06_models"
    assert default_model_path(tmp_path, backend="onnxruntime") == models / "resnet34.pt"  # none exported yet
    models.mkdir(parents=True)
    (models / "resnet34.onnx").write_bytes(b"")
    assert default_model_path(tmp_path, backend="onnxruntime") == models / "resnet34.onnx"
    assert default_model_path(tmp_path) == default_model_path(tmp_path, backend="torch") == models / "resnet34.pt"
    # a .pt newer than the export beside it (fer-train, a refused export): the .pt, converted as it loads
    (models / "resnet34.pt").write_bytes(b"")
    os.utime(models / "resnet34.onnx", ns=(1_000_000_000, 1_000_000_000))
    assert default_model_path(tmp_path, backend="onnxruntime") == models / "resnet34.pt"
    os.utime(models / "resnet34.pt", ns=(1_000_000_000, 1_000_000_000))
    assert default_model_path(tmp_path, backend="onnxruntime") == models / "resnet34.onnx"  # as new: the export
