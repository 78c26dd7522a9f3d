"""``fer-predict``: find faces in photos and videos and classify their emotions with a trained model.

The results go to ``--output``, which then holds this run's results only (``predict_output``:
written beside it and swapped in; a folder holding files fer-predict did not write is refused).

Exit codes: 0 every input read (whether or not faces were found), 1 no readable image or video
among the inputs (``--output`` left as it was), 2 usage error (an unknown ``--device`` too),
missing input path or an ``--output`` that is not fer-predict's, a ``--backend`` the model file or
``--device``/``--amp`` cannot run with, 3 model file (``.pt`` or ``.onnx``) missing or invalid,
4 some inputs could not be read in full (unreadable photos or videos, or a video that broke off
part-way: its frames before the break are kept): the others' results are written, the failures
listed on stderr, 130 interrupted (``--output`` left as it was).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# Light modules (numpy at most): ``--help`` and usage errors need no torch/OpenCV import.
from fer_pipeline.commands.predict_output import OutputFolderError, check_output, discard, publish, start_staging
from fer_pipeline.core.backends import BACKENDS, backend_for, check_backend_options
from fer_pipeline.core.faces.detector import (
    CASCADE_WINDOW,
    DEFAULT_ALIGN,
    DEFAULT_DETECTOR,
    DETECT_MAX_SIDE,
    DETECTOR_KINDS,
    detector_options,
)
from fer_pipeline.core.faces.images import MAX_PIXELS
from fer_pipeline.core.faces.yunet import RETRY_MAX_SIDE
from fer_pipeline.core.ingestion.decode import FORMAT_EXTENSIONS
from fer_pipeline.core.predict.inputs import VIDEO_EXTENSIONS, image_extensions, scan_media
from fer_pipeline.project import catalog_file, environment_data_roots, find_project_root

#: --margin: context added on each side of a face, as a fraction of its side; 1 already makes a
#: crop three times the face, where the face is a ninth of the 48x48 the model sees.
MARGIN_RANGE = (0.0, 1.0)
#: --detect-max-side: from the cascade's 24-px window (smaller finds no face) to 8192 px, past
#: which ``0`` (full resolution) says the same for any photo under the pixel limit.
DETECT_SIDE_RANGE = (CASCADE_WINDOW, 8192)

#: The catalog entries of the trained classifier and of its ONNX export (conf/base/catalog.yml owns their paths).
MODEL_ENTRY = "resnet_model"
ONNX_ENTRY = "resnet_onnx"

EXIT_OK = 0
EXIT_NO_READABLE_IMAGE = 1
EXIT_USAGE = 2
EXIT_BAD_MODEL = 3
EXIT_PARTIAL = 4
EXIT_INTERRUPTED = 130  # the shell's for Ctrl-C


def default_model_path(start: Path | None = None, env: str = "base", backend: str | None = None) -> Path:
    """Where ``kedro run --env <env>`` saves the classifier: the catalog's ``resnet_model``; for
    ``backend`` onnxruntime its ONNX export (``resnet_onnx``) where there is one at least as new as
    the ``.pt`` (``fer-train``, or a run whose export was refused, leaves a newer ``.pt`` beside an
    older ``.onnx``: the ``.pt`` is then converted as it loads)."""
    root = find_project_root(start)
    model = catalog_file(root, MODEL_ENTRY, env)
    onnx = catalog_file(root, ONNX_ENTRY, env)
    if backend == "onnxruntime" and onnx.is_file() and (
            not model.is_file() or onnx.stat().st_mtime_ns >= model.stat().st_mtime_ns):
        return onnx
    return model


def in_range(kind: type, low: float, high: float = math.inf, or_zero: str = "") -> Callable[[str], float]:
    """An argparse ``type``: ``kind(text)`` within [low, high] (or 0 where ``or_zero`` says what 0
    means), else the flag's usage error says the allowed range."""
    noun = "a whole number" if kind is int else "a number"
    allowed = f"{noun} from {low:g} to {high:g}" if high < math.inf else f"{noun} >= {low:g}"
    if or_zero:
        allowed += f", or 0 ({or_zero})"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not (low <= value <= high or (or_zero and value == 0)):  # NaN fails both
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    images = " ".join(ext for extensions in FORMAT_EXTENSIONS.values() for ext in extensions)
    parser = argparse.ArgumentParser(
        prog="fer-predict",
        description="Detect faces in photos and videos (YuNet, or OpenCV's Haar cascade) and classify each face's "
        "emotion with the ResNet trained by `kedro run`. Writes predictions.csv and annotated images; "
        f"for each video ({' '.join(VIDEO_EXTENSIONS)}) videos/<name>.csv (one row per face per processed "
        "frame, with a track id) and an annotated videos/<name>.mp4.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="image or video files, or folders of them, searched with their subfolders "
                        f"(images: {images}, case-insensitive, GIF with OpenCV 4.11 or later; a folder's "
                        "other files are listed as skipped on stderr, hidden ones (.name) ignored)")
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model file, .pt or .onnx (fer-export) (default: the catalog's resnet_model, <kedro project "
        "root>/data/06_models/resnet34.pt, written by the last `kedro run`, or with --backend onnxruntime the "
        "resnet34.onnx beside it; the demo's are in data/demo/06_models/)",
    )
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="what runs the classifier: torch, or onnxruntime (ONNX Runtime on the CPU, float32; a "
                        ".pt is converted when it loads and checked against PyTorch) (default: the model file's, "
                        ".onnx: onnxruntime, else torch)")
    parser.add_argument(
        "--output", type=Path, default=Path("predictions"), help="output folder (default: ./predictions)"
    )
    parser.add_argument("--tta", choices=("none", "flip", "ten_crop"), default="none", help="test-time augmentation")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--amp", choices=("auto", "on", "off"), default="auto",
                        help="bf16 autocast: auto = where the device runs it natively (CUDA, AVX512-BF16/AMX CPUs)")
    parser.add_argument("--every-n-frames", type=in_range(int, 1), default=1, metavar="N",
                        help="videos: detect and classify every Nth frame; the frames between show the last "
                        "boxes in the annotated video (default 1: every frame)")
    parser.add_argument("--max-pixels", type=in_range(int, 1), default=MAX_PIXELS, metavar="N",
                        help="an image with more pixels is skipped and reported as unreadable, from its header, "
                        f"before it is decoded (default {MAX_PIXELS:,}, as fer-serve's serving.max_pixels)")
    parser.add_argument("--workers", type=in_range(int, 1), default=None, metavar="N",
                        help="decode+detect threads (default: one per core, at most 4)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_face_finding(parser)
    return parser


def _add_face_finding(parser: argparse.ArgumentParser) -> None:
    """The face finding flags, as ``FaceFinder.make`` and ``detector.detector_options`` take them."""
    group = parser.add_argument_group("face finding")
    group.add_argument("--detector", choices=DETECTOR_KINDS, default=DEFAULT_DETECTOR,
                       help="face detector: yunet (the shipped, sha256-checked YuNet CNN, with 5 landmarks per face; "
                       "the default) or haar (OpenCV's Haar cascade: frontal, upright faces only)")
    group.add_argument("--detect-max-side", type=in_range(int, *DETECT_SIDE_RANGE, or_zero="full resolution"),
                       default=DETECT_MAX_SIDE, metavar="PX",
                       help="search faces on a copy at most PX long, boxes mapped back to full resolution "
                       f"({DETECT_SIDE_RANGE[0]}-{DETECT_SIDE_RANGE[1]}, default {DETECT_MAX_SIDE}; faces under "
                       f"{CASCADE_WINDOW} px of that copy are missed; 0: full resolution)")
    group.add_argument("--detect-retry-max-side", type=in_range(int, *DETECT_SIDE_RANGE, or_zero="no second search"),
                       default=None, metavar="PX",
                       help="yunet, photos: where the first search finds no face, search again on a copy at most PX "
                       f"long, for small faces in large photos (larger than --detect-max-side; default "
                       f"{RETRY_MAX_SIDE}; 0: never; video frames are searched once)")
    group.add_argument("--min-score", type=float, default=None, metavar="S",
                       help="yunet: keep faces the detector scores at least S, in (0, 1] (default 0.6; lower finds "
                       "more faces and more false ones)")
    group.add_argument("--min-face", type=float, default=None, metavar="F",
                       help="keep faces at least F of the photo's shorter side, in [0, 1) (default: yunet 0.03, "
                       "haar 0.06)")
    group.add_argument("--align", action=argparse.BooleanOptionalAction, default=DEFAULT_ALIGN,
                       help="crop each face with landmarks (YuNet's) levelled and framed like FER2013's faces; "
                       "--no-align: a square around its box (default: --align)")
    group.add_argument("--margin", type=in_range(float, *MARGIN_RANGE), default=0.2,
                       help="square crops (--no-align, haar, faces without landmarks): extra context on each "
                       f"side of a face box, as a fraction of its side ({MARGIN_RANGE[0]:g}-{MARGIN_RANGE[1]:g}, "
                       "default 0.2); aligned crops are framed from the landmarks instead")
    group.add_argument("--whole-image-max-side", type=in_range(int, 0), default=100, metavar="PX",
                       help="an image with no side longer than PX is classified whole, without detection, as an "
                       "already-cropped face such as FER2013's 48x48 images (default 100; 0 disables)")


def _error(message: str) -> None:
    print(f"fer-predict: error: {message}", file=sys.stderr)


def _print_summary(result, paths: dict | None, videos: list, model_path: Path, backend: str, shown) -> None:
    """What was read and written: the photos' ``PredictionResult`` (``paths`` None when no photo
    was given) and each video's (``VideoResult``, csv path) or (file, error) when unreadable.
    ``shown``: a path written in the staging folder -> its path in ``--output``."""
    from collections import Counter

    lines = [("model", str(model_path)), ("backend", backend)]
    if paths is not None:
        emotions = Counter(row["emotion"] for row in result.rows)
        lines += [
            ("image files", str(len(result.files))),
            ("faces", str(result.num_faces)),
            ("images without a face", str(len(result.no_face))),
            ("unreadable files", str(len(result.unreadable))),
        ]
        if emotions:
            lines.append(("emotions", ", ".join(f"{name} {count}" for name, count in emotions.most_common())))
        lines += [("predictions", str(shown(paths["csv"]))), ("annotated images", str(shown(paths["annotated_dir"])))]
    for video, csv_path in videos:
        if isinstance(csv_path, str):  # unreadable: (file, reason)
            lines.append(("video", f"{video}: unreadable"))
            continue
        lines.append(("video", (f"{video.file}: {video.frames_read} frames ({video.frames_processed} processed), "
                                f"{video.num_faces} faces in {video.num_tracks} tracks, "
                                f"{video.frames_per_second:.1f} frames/s")))
        lines.append(("  frames csv", str(shown(csv_path))))
        lines.append(("  annotated video", str(shown(video.annotated))))
    width = max(len(key) for key, _ in lines)
    print("\n".join(f"{key:<{width}}  {value}" for key, value in lines))
    if paths is not None:
        for item in result.unreadable:
            print(f"  unreadable: {item['file']}: {item['reason']}")


def failed_inputs(result, videos: list) -> list[tuple[str, str]]:
    """(file, reason) of every input not read in full: unreadable photos and videos, and videos
    that broke off part-way (their frames before the break are kept)."""
    failed = [(item["file"], item["reason"]) for item in result.unreadable]
    for video, csv_path in videos:
        if isinstance(csv_path, str):  # (file, reason)
            failed.append((video, csv_path))
        elif video.error:
            failed.append((video.file, video.error))
    return failed


def _report_failures(failed: list[tuple[str, str]], total: int, output: Path) -> int:
    """``EXIT_PARTIAL`` once the inputs not read in full are listed on stderr; ``EXIT_OK`` when there are none."""
    if not failed:
        return EXIT_OK
    _error(f"{len(failed)} of {total} inputs could not be read in full; the others' results are in {output}")
    _list_failures(failed)
    return EXIT_PARTIAL


def _list_failures(failed: list[tuple[str, str]]) -> None:
    for file, reason in failed:
        # A reason may already start with its file (the video errors): not named twice.
        print(f"  {reason}" if reason.startswith(f"{file}:") else f"  {file}: {reason}", file=sys.stderr)


def _report_nothing_read(args: argparse.Namespace, failed: list[tuple[str, str]], found_any: bool) -> int:
    if not found_any:
        _error(f"no image or video files ({' '.join((*image_extensions(), *VIDEO_EXTENSIONS))}) in: "
               + ", ".join(args.paths))
    else:
        _error(f"none of the input files could be read as an image or a video; {args.output} is unchanged")
        _list_failures(failed)
    return EXIT_NO_READABLE_IMAGE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits 2 on usage errors, 0 for --help
        return int(exit_.code) if isinstance(exit_.code, int) else EXIT_USAGE

    try:
        detector_options(args.detector, args.min_score, args.min_face, detect_max_side=args.detect_max_side,
                         detect_retry_max_side=args.detect_retry_max_side)
    except ValueError as error:  # the flags argparse cannot check alone (--min-score needs yunet)
        _error(str(error).replace("min_score", "--min-score").replace("min_face", "--min-face")
               .replace("detect_retry_max_side", "--detect-retry-max-side")
               .replace("detect_max_side", "--detect-max-side")
               .replace(", or null for the detector's default", ", or left out for the detector's default"))
        return EXIT_USAGE
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        _error("no such file or folder: " + ", ".join(missing))
        return EXIT_USAGE
    try:
        output = check_output(args.output)
    except OutputFolderError as error:
        _error(str(error))
        return EXIT_USAGE

    # Heavy imports only after the cheap checks, so usage errors answer instantly.
    _quiet_video_log()
    loaded = _load_recognizer(args)
    if isinstance(loaded, int):
        return loaded
    recognizer, model_path = loaded

    photo_files, video_files = _scan_inputs(args.paths)
    if not photo_files and not video_files:
        return _report_nothing_read(args, [], found_any=False)
    staging = start_staging(output)
    try:
        result, paths, videos = _predict_into(staging, photo_files, video_files, recognizer, args)
    except KeyboardInterrupt:
        _stopped(staging, args.output, "interrupted")
        return EXIT_INTERRUPTED
    except BaseException:
        _stopped(staging, args.output, "stopped by the error below")
        raise
    failed = failed_inputs(result, videos)
    if result.num_readable == 0 and all(isinstance(csv_path, str) for _, csv_path in videos):
        discard(staging)
        return _report_nothing_read(args, failed, found_any=True)
    try:
        publish(staging, output)
    except (OutputFolderError, OSError) as error:
        _error(f"{error}; this run's results are in {staging}")
        return EXIT_USAGE
    _print_summary(result, paths, videos, model_path, recognizer.backend,
                   shown=lambda path: args.output / Path(path).relative_to(staging))
    return _report_failures(failed, len(photo_files) + len(video_files), args.output)


def _predict_into(staging: Path, photo_files: list[Path], video_files: list[Path], recognizer,
                  args: argparse.Namespace) -> tuple:
    """(photos' ``PredictionResult``, their written paths or None, the videos' results), written under ``staging``."""
    from fer_pipeline.core.predict.photos import predict_photos, write_outputs

    common = {"progress": not args.quiet, "workers": args.workers}
    result = predict_photos(photo_files, recognizer, max_pixels=args.max_pixels, **common)
    # Written before the videos are read: when a long video is interrupted, the photos' results
    # are among the finished ones that ``_stopped`` keeps.
    paths = write_outputs(result, staging, workers=args.workers) if result.files else None
    return result, paths, _predict_videos(video_files, recognizer, staging / "videos", args, common)


#: Swallows ``core.predict.video``'s warning of a video that broke off: fer-predict lists it with
#: the other failures at the end, and Python's last-resort handler would print it a second time.
_VIDEO_LOG_SINK = logging.NullHandler()


def _quiet_video_log() -> None:
    logger = logging.getLogger("fer_pipeline.core.predict.video")
    if _VIDEO_LOG_SINK not in logger.handlers:
        logger.addHandler(_VIDEO_LOG_SINK)


def _stopped(staging: Path, output: Path, how: str) -> None:
    """A run stopped before its end leaves ``--output`` as it was; its finished files, if any, stay
    in the staging folder, which is named."""
    if any(path.is_file() for path in staging.rglob("*")):
        _error(f"{how}: {output} is unchanged; the files finished so far are in {staging}")
    else:
        discard(staging)


def _scan_inputs(paths: list[str]) -> tuple[list[Path], list[Path]]:
    """(image files, video files) among ``paths``, folders searched with their subfolders
    (``core.predict.inputs.scan_media``); the files a folder holds that are neither, and the
    folders that could not be searched, are listed on stderr."""
    media = scan_media(paths)
    for line in media.report():
        print(f"fer-predict: {line}", file=sys.stderr)
    return media.images, media.videos


def _load_recognizer(args: argparse.Namespace) -> tuple | int:
    """(``EmotionRecognizer``, model path) of ``--model`` (``default_model_path()`` when not given)
    with the face-finding and classifier flags; else the exit code once the reason is printed:
    ``EXIT_BAD_MODEL`` for a missing or invalid model file (a missing default names the models
    the other environments wrote) or detector model, ``EXIT_USAGE`` for a bad ``--device``."""
    from fer_pipeline.core.faces.recognizer import EmotionRecognizer
    from fer_pipeline.core.faces.yunet import DetectorModelError
    from fer_pipeline.core.model_files import ModelFileError
    from fer_pipeline.core.onnx_export import OnnxExportError

    model_path = args.model if args.model is not None else default_model_path(backend=args.backend)
    hint = ("train one first with `kedro run`, or pass --model FILE (the demo, `kedro run --env demo`, "
            "writes its model under data/demo/)")
    if not model_path.is_file():
        if args.model is None:  # the default is missing: name the models the other environments wrote
            found = [f"--model {default_model_path(env=env)} (--env {env})"
                     for env in environment_data_roots(find_project_root())
                     if env != "base" and default_model_path(env=env).is_file()]
            if found:
                hint += "; models of other environments: " + ", ".join(found)
        _error(f"model file not found: {model_path}\n  {hint}")
        return EXIT_BAD_MODEL
    options = {"detector": args.detector, "detect_max_side": args.detect_max_side,
               "detect_retry_max_side": args.detect_retry_max_side, "align": args.align,
               "min_score": args.min_score, "min_face": args.min_face,
               "margin": args.margin, "whole_image_max_side": args.whole_image_max_side, "tta": args.tta,
               "device": args.device, "amp": args.amp}
    try:  # the flags that conflict with the back-end: usage errors before the model loads
        backend = backend_for(model_path, args.backend, "--backend")
        check_backend_options(backend, args.device, args.amp, "--")
    except ValueError as error:
        _error(str(error))
        return EXIT_USAGE
    try:
        return EmotionRecognizer.load(model_path, backend=backend, **options), model_path
    except (ModelFileError, OnnxExportError, DetectorModelError, OSError) as error:  # names the file and the fix
        _error(str(error))
        return EXIT_BAD_MODEL
    except ValueError as error:  # --device, the one option argparse cannot check
        _error(str(error).replace("device must", "--device must"))
        return EXIT_USAGE


def _predict_videos(files: list[Path], recognizer, out: Path, args: argparse.Namespace, common: dict) -> list[tuple]:
    """Each video -> ``out/<name>.csv`` and ``<name>.mp4``; returns (VideoResult, csv path) per
    readable video and (file, reason) per unreadable one. A video that breaks off part-way keeps
    its frames before the break (``VideoResult.error`` says where)."""
    from fer_pipeline.core.predict.photos import unique_name
    from fer_pipeline.core.predict.video import (
        UnreadableVideoError,
        predict_video,
        write_video_csv,
    )

    taken, done = set(), []
    for file in files:
        name = unique_name(file.stem, taken)
        taken.add(name)
        try:
            video = predict_video(file, recognizer, annotated_path=out / f"{name}.mp4",
                                  every_n_frames=args.every_n_frames, **common)
        except UnreadableVideoError as error:  # listed with the other failures at the end
            done.append((str(file), str(error)))
            continue
        done.append((video, write_video_csv(video, out / f"{name}.csv")))
    return done


if __name__ == "__main__":
    sys.exit(main())
