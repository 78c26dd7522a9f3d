"""``fer-predict``: find faces in photos and classify their emotions with a trained model.

Exit codes: 0 success (whether or not faces were found), 1 no readable image among the
inputs, 2 usage error or missing input path, 3 model file missing or invalid.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fer_pipeline.project import environment_data_roots, find_project_root

#: The model's path below any environment's ``data_root`` (the catalog's ``resnet_model``).
MODEL_BELOW_DATA_ROOT = Path("06_models") / "resnet34.pt"
#: Where ``kedro run`` saves the trained classifier (the base environment's ``data_root``, ``data``;
#: ``--env demo`` and ``--env cpu`` write under their own, conf/<env>/globals.yml).
DEFAULT_MODEL_RELATIVE = Path("data") / MODEL_BELOW_DATA_ROOT

EXIT_OK = 0
EXIT_NO_READABLE_IMAGE = 1
EXIT_USAGE = 2
EXIT_BAD_MODEL = 3


def default_model_path(start: Path | None = None) -> Path:
    return find_project_root(start) / DEFAULT_MODEL_RELATIVE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fer-predict",
        description="Detect faces in photos (OpenCV Haar cascade) and classify each face's emotion "
        "with the ResNet trained by `kedro run`. Writes predictions.csv and annotated images.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help=f"model file (default: <kedro project root>/{DEFAULT_MODEL_RELATIVE.as_posix()}, "
        "written by the last `kedro run`; the demo's is data/demo/06_models/resnet34.pt)",
    )
    parser.add_argument(
        "--output", type=Path, default=Path("predictions"), help="output folder (default: ./predictions)"
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=0.2,
        help="extra context around each face box, as a fraction of its side (default 0.2)",
    )
    parser.add_argument("--tta", choices=("none", "flip", "ten_crop"), default="none", help="test-time augmentation")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--whole-image-max-side",
        type=int,
        default=100,
        metavar="PX",
        help="an image with no detected face and no side longer than PX is classified whole, as an "
        "already-cropped face such as FER2013's 48x48 images (default 100; 0 disables)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _error(message: str) -> None:
    print(f"fer-predict: error: {message}", file=sys.stderr)


def _print_summary(result, paths: dict, model_path: Path) -> None:  # noqa: ANN001 - PredictionResult
    from collections import Counter

    emotions = Counter(row["emotion"] for row in result.rows)
    lines = [
        ("model", str(model_path)),
        ("image files", str(len(result.files))),
        ("faces", str(result.num_faces)),
        ("images without a face", str(len(result.no_face))),
        ("unreadable files", str(len(result.unreadable))),
    ]
    if emotions:
        lines.append(("emotions", ", ".join(f"{name} {count}" for name, count in emotions.most_common())))
    lines += [("predictions", str(paths["csv"])), ("annotated images", str(paths["annotated_dir"]))]
    width = max(len(key) for key, _ in lines)
    print("\n".join(f"{key:<{width}}  {value}" for key, value in lines))
    for item in result.unreadable:
        print(f"  unreadable: {item['file']}: {item['reason']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits 2 on usage errors, 0 for --help
        return int(exit_.code) if isinstance(exit_.code, int) else EXIT_USAGE
    if args.margin < 0:
        _error(f"--margin must be >= 0, got {args.margin}")
        return EXIT_USAGE

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        _error("no such file or folder: " + ", ".join(missing))
        return EXIT_USAGE

    model_path = args.model if args.model is not None else default_model_path()
    hint = ("train one first with `kedro run`, or pass --model FILE (the demo, `kedro run --env demo`, "
            "writes its model under data/demo/)")
    if not model_path.is_file():
        if args.model is None:  # the default is missing: name the models the other environments wrote
            found = [f"--model {data_root / MODEL_BELOW_DATA_ROOT} (--env {env})"
                     for env, data_root in environment_data_roots(find_project_root()).items()
                     if env != "base" and (data_root / MODEL_BELOW_DATA_ROOT).is_file()]
            if found:
                hint += "; models of other environments: " + ", ".join(found)
        _error(f"model file not found: {model_path}\n  {hint}")
        return EXIT_BAD_MODEL

    # Heavy imports only after the cheap checks, so usage errors answer instantly.
    from fer_pipeline.core.models import load_model
    from fer_pipeline.core.predict import predict_photos, write_outputs

    try:
        model, config = load_model(model_path, map_location="cpu")
    except Exception as error:  # noqa: BLE001 - any failure here means "not a usable model file"
        _error(f"cannot load model {model_path}: {type(error).__name__}: {error}\n  {hint}")
        return EXIT_BAD_MODEL

    result = predict_photos(
        args.paths,
        model,
        config,
        margin=args.margin,
        tta=args.tta,
        device=args.device,
        progress=not args.quiet,
        whole_image_max_side=args.whole_image_max_side,
    )
    if result.num_readable == 0:
        if not result.files:
            _error("no image files (.jpg .jpeg .png .bmp .webp) in: " + ", ".join(args.paths))
        else:
            _error("none of the input files could be read as an image")
            for item in result.unreadable:
                print(f"  {item['file']}: {item['reason']}", file=sys.stderr)
        return EXIT_NO_READABLE_IMAGE
    paths = write_outputs(result, args.output)
    _print_summary(result, paths, model_path)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
