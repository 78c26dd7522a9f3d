"""``fer-predict``: find faces in photos and videos and classify their emotions with a trained model.

Exit codes: 0 success (whether or not faces were found; also when a video broke off part-way,
its frames before the break are written and the break is reported on stderr), 1 no readable
image or video among the inputs, 2 usage error or missing input path, 3 model file missing or
invalid.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# Light modules (numpy at most): ``--help`` and usage errors need no torch/OpenCV import.
from fer_pipeline.core.faces.detector import CASCADE_WINDOW, DETECT_MAX_SIDE
from fer_pipeline.core.faces.images import MAX_PIXELS
from fer_pipeline.core.ingestion.decode import FORMAT_EXTENSIONS
from fer_pipeline.core.predict.inputs import VIDEO_EXTENSIONS, image_extensions, scan_media
from fer_pipeline.project import catalog_file, environment_data_roots, find_project_root

#: --margin: context added on each side of a face, as a fraction of its side; 1 already makes a
#: crop three times the face, where the face is a ninth of the 48x48 the model sees.
MARGIN_RANGE = (0.0, 1.0)
#: --detect-max-side: from the cascade's 24-px window (smaller finds no face) to 8192 px, past
#: which ``0`` (full resolution) says the same for any photo under the pixel limit.
DETECT_SIDE_RANGE = (CASCADE_WINDOW, 8192)

#: The catalog entry of the trained classifier (conf/base/catalog.yml owns its path).
MODEL_ENTRY = "resnet_model"

EXIT_OK = 0
EXIT_NO_READABLE_IMAGE = 1
EXIT_USAGE = 2
EXIT_BAD_MODEL = 3


def default_model_path(start: Path | None = None, env: str = "base") -> Path:
    """Where ``kedro run --env <env>`` saves the classifier: the catalog's ``resnet_model``."""
    return catalog_file(find_project_root(start), MODEL_ENTRY, env)


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
        description="Detect faces in photos and videos (OpenCV Haar cascade) and classify each face's "
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
        help="model file (default: the catalog's resnet_model, <kedro project root>/data/06_models/resnet34.pt, "
        "written by the last `kedro run`; the demo's is data/demo/06_models/resnet34.pt)",
    )
    parser.add_argument(
        "--output", type=Path, default=Path("predictions"), help="output folder (default: ./predictions)"
    )
    parser.add_argument("--margin", type=in_range(float, *MARGIN_RANGE), default=0.2,
                        help="extra context on each side of a face box, as a fraction of its side "
                        f"({MARGIN_RANGE[0]:g}-{MARGIN_RANGE[1]:g}, default 0.2)")
    parser.add_argument("--tta", choices=("none", "flip", "ten_crop"), default="none", help="test-time augmentation")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--amp", choices=("auto", "on", "off"), default="auto",
                        help="bf16 autocast: auto = where the device runs it natively (CUDA, AVX512-BF16/AMX CPUs)")
    parser.add_argument("--whole-image-max-side", type=in_range(int, 0), default=100, metavar="PX",
                        help="an image with no detected face and no side longer than PX is classified whole, as an "
                        "already-cropped face such as FER2013's 48x48 images (default 100; 0 disables)")
    parser.add_argument("--every-n-frames", type=in_range(int, 1), default=1, metavar="N",
                        help="videos: detect and classify every Nth frame; the frames between show the last "
                        "boxes in the annotated video (default 1: every frame)")
    parser.add_argument("--detect-max-side", type=in_range(int, *DETECT_SIDE_RANGE, or_zero="full resolution"),
                        default=DETECT_MAX_SIDE, metavar="PX",
                        help="search faces on a copy at most PX long, boxes mapped back to full resolution "
                        f"({DETECT_SIDE_RANGE[0]}-{DETECT_SIDE_RANGE[1]}, default {DETECT_MAX_SIDE}; faces under "
                        f"{CASCADE_WINDOW} px of that copy are missed; 0: full resolution)")
    parser.add_argument("--max-pixels", type=in_range(int, 1), default=MAX_PIXELS, metavar="N",
                        help="an image with more pixels is skipped and reported as unreadable, from its header, "
                        f"before it is decoded (default {MAX_PIXELS:,}, as fer-serve's serving.max_pixels)")
    parser.add_argument("--workers", type=in_range(int, 1), default=None, metavar="N",
                        help="decode+detect threads (default: one per core, at most 4)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _error(message: str) -> None:
    print(f"fer-predict: error: {message}", file=sys.stderr)


def _print_summary(result, paths: dict | None, videos: list, model_path: Path) -> None:
    """What was read and written: the photos' ``PredictionResult`` (``paths`` None when no photo
    was given) and each video's (``VideoResult``, csv path) or (file, error) when unreadable."""
    from collections import Counter

    lines = [("model", str(model_path))]
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
        lines += [("predictions", str(paths["csv"])), ("annotated images", str(paths["annotated_dir"]))]
    for video, csv_path in videos:
        if isinstance(csv_path, str):  # unreadable: (file, reason)
            lines.append(("video", f"{video}: unreadable"))
            continue
        lines.append(("video", (f"{video.file}: {video.frames_read} frames ({video.frames_processed} processed), "
                                f"{video.num_faces} faces in {video.num_tracks} tracks, "
                                f"{video.frames_per_second:.1f} frames/s")))
        lines.append(("  frames csv", str(csv_path)))
        lines.append(("  annotated video", str(video.annotated)))
    width = max(len(key) for key, _ in lines)
    print("\n".join(f"{key:<{width}}  {value}" for key, value in lines))
    if paths is not None:
        for item in result.unreadable:
            print(f"  unreadable: {item['file']}: {item['reason']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits 2 on usage errors, 0 for --help
        return int(exit_.code) if isinstance(exit_.code, int) else EXIT_USAGE

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        _error("no such file or folder: " + ", ".join(missing))
        return EXIT_USAGE

    # Heavy imports only after the cheap checks, so usage errors answer instantly.
    from fer_pipeline.core.faces.detector import FaceDetector
    from fer_pipeline.core.predict.photos import predict_photos, write_outputs

    detector = FaceDetector(detect_max_side=args.detect_max_side)
    loaded = _load_model(args.model)
    if loaded is None:
        return EXIT_BAD_MODEL
    model, config, model_path = loaded

    photo_files, video_files = _scan_inputs(args.paths)
    common = {"margin": args.margin, "tta": args.tta, "device": args.device, "progress": not args.quiet,
              "amp": args.amp, "workers": args.workers}
    result = predict_photos(photo_files, model, config, detector=detector, max_pixels=args.max_pixels,
                            whole_image_max_side=args.whole_image_max_side, **common)
    paths = None
    if result.num_readable or (result.files and video_files):
        # Written before the videos are read: a video that fails in an unforeseen way (a codec,
        # Ctrl-C on a long one) loses no photo prediction.
        paths = write_outputs(result, args.output)
    videos = _predict_videos(video_files, model, config, detector, args, common)
    readable_videos = [v for v, csv_path in videos if not isinstance(csv_path, str)]
    if result.num_readable == 0 and not readable_videos:
        if not result.files and not video_files:
            _error(f"no image or video files ({' '.join((*image_extensions(), *VIDEO_EXTENSIONS))}) in: "
                   + ", ".join(args.paths))
        else:
            _error("none of the input files could be read as an image or a video")
            for item in result.unreadable:
                print(f"  {item['file']}: {item['reason']}", file=sys.stderr)
        return EXIT_NO_READABLE_IMAGE
    _print_summary(result, paths, videos, model_path)
    return EXIT_OK


def _scan_inputs(paths: list[str]) -> tuple[list[Path], list[Path]]:
    """(image files, video files) among ``paths``, folders searched with their subfolders
    (``core.predict.inputs.scan_media``); the files a folder holds that are neither, and the
    folders that could not be searched, are listed on stderr."""
    media = scan_media(paths)
    for line in media.report():
        print(f"fer-predict: {line}", file=sys.stderr)
    return media.images, media.videos


def _load_model(model_arg: Path | None) -> tuple | None:
    """(model, config, path) of ``--model``, or of ``default_model_path()`` when not given; None
    once the reason it cannot be loaded is printed (a missing default names the models the
    other environments wrote)."""
    from fer_pipeline.core.model_files import ModelFileError
    from fer_pipeline.core.models import load_model

    model_path = model_arg if model_arg is not None else default_model_path()
    hint = ("train one first with `kedro run`, or pass --model FILE (the demo, `kedro run --env demo`, "
            "writes its model under data/demo/)")
    if not model_path.is_file():
        if model_arg is None:  # the default is missing: name the models the other environments wrote
            found = [f"--model {default_model_path(env=env)} (--env {env})"
                     for env in environment_data_roots(find_project_root())
                     if env != "base" and default_model_path(env=env).is_file()]
            if found:
                hint += "; models of other environments: " + ", ".join(found)
        _error(f"model file not found: {model_path}\n  {hint}")
        return None

    try:
        model, config = load_model(model_path, map_location="cpu")
    except (ModelFileError, OSError) as error:  # names the file and how a model is made
        _error(str(error))
        return None
    return model, config, model_path


def _predict_videos(files: list[Path], model, config: dict, detector, args: argparse.Namespace,
                    common: dict) -> list[tuple]:
    """Each video -> ``<output>/videos/<name>.csv`` and ``<name>.mp4``; returns (VideoResult, csv
    path) per readable video and (file, reason) per unreadable one. A video that breaks off
    part-way keeps its frames before the break, and the break is reported on stderr."""
    from fer_pipeline.core.predict.photos import unique_name
    from fer_pipeline.core.predict.video import (
        UnreadableVideoError,
        predict_video,
        write_video_csv,
    )

    out, taken, done = args.output / "videos", set(), []
    for file in files:
        name = unique_name(file.stem, taken)
        taken.add(name)
        try:
            video = predict_video(file, model, config, detector=detector, annotated_path=out / f"{name}.mp4",
                                  every_n_frames=args.every_n_frames, **common)
        except UnreadableVideoError as error:
            _error(str(error))
            done.append((str(file), str(error)))
            continue
        if video.error:
            _error(video.error)
        done.append((video, write_video_csv(video, out / f"{name}.csv")))
    return done


if __name__ == "__main__":
    sys.exit(main())
