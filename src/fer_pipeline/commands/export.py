"""``fer-export MODEL.pt OUT.onnx``: a trained model file as ONNX, checked against PyTorch first.

The export (``core.onnx_export``) runs the ONNX model with ONNX Runtime and the ``.pt`` with PyTorch
on real faces and writes ``OUT.onnx`` only when they agree (top-1 class on at least 99.9 % of the
faces, every logit within ``--tolerance``). The faces: ``--faces`` (a folder of face images, such
as ../shared/datasets/fer2013/test, image files, or a ``fer_dataset.npz``), else the validation
split of the dataset the model records it was trained on, where this project has ingested it
(any environment's ``fer_dataset``).

``--int8``: ONNX Runtime's static int8 quantisation of that export (``core.onnx_int8``), its
activation ranges calibrated on training faces: ``--calibration`` (as ``--faces``), else the
training split of the model's ingested dataset. It is written when its class is PyTorch's on at
least 95 % of the check faces, and the agreement is printed: int8 is not float32.

Exit codes: 0 written, 1 refused (the export disagrees with PyTorch; nothing written), 2 usage
error (no faces to check on, an unreadable ``--faces``), 3 model file missing or invalid.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_BAD_MODEL = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    from fer_pipeline.core.backends import CHECK_FACES, DEFAULT_TOLERANCE

    parser = argparse.ArgumentParser(
        prog="fer-export",
        description="Export a model file of this project (.pt) to ONNX (dynamic batch, the preprocessing and "
        "classes in its metadata) for ONNX Runtime (fer-predict --backend onnxruntime) or any other ONNX runtime. "
        "The export is checked against PyTorch on real faces and written only when they agree.")
    parser.add_argument("model", type=Path, metavar="MODEL.pt", help="the model file (`kedro run` writes "
                        "data/06_models/resnet34.pt)")
    parser.add_argument("out", type=Path, metavar="OUT.onnx", help="the ONNX file to write (replaced when it exists)")
    parser.add_argument("--faces", type=Path, nargs="+", default=None, metavar="PATH",
                        help="faces to check the export on: folders of face images (searched with their "
                        "subfolders), image files, or a fer_dataset.npz (default: the validation faces of the "
                        "dataset the model was trained on, where this project has ingested it)")
    parser.add_argument("--int8", action="store_true",
                        help="write ONNX Runtime's static int8 quantisation of the export instead (faster on CPUs, "
                        "a little less accurate: the agreement with PyTorch is printed)")
    parser.add_argument("--calibration", type=Path, nargs="+", default=None, metavar="PATH",
                        help="--int8: training faces to calibrate on, as --faces (default: the training faces of "
                        "the dataset the model was trained on, where this project has ingested it); never test faces")
    parser.add_argument("--count", type=int, default=CHECK_FACES, metavar="N",
                        help=f"check on at most N faces, spread over them (default {CHECK_FACES})")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="T",
                        help=f"largest logit difference allowed, times the largest logit where that is over 1 "
                        f"(default {DEFAULT_TOLERANCE:g})")
    return parser


def _error(message: str) -> None:
    print(f"fer-export: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code) if isinstance(exit_.code, int) else EXIT_USAGE
    if args.count < 1 or not args.tolerance > 0:
        _error("--count must be >= 1 and --tolerance > 0")
        return EXIT_USAGE
    if args.out.suffix.lower() != ".onnx" or args.out.is_dir():
        _error(f"OUT must be a file name ending in .onnx, got {args.out}")
        return EXIT_USAGE

    from fer_pipeline.core.model_files import CLASSIFIER_ORIGIN, ModelFileError
    from fer_pipeline.core.models import load_model
    from fer_pipeline.core.onnx_export import OnnxExportError, export_onnx
    from fer_pipeline.core.onnx_int8 import CALIBRATION_FACES, export_int8

    if not args.model.is_file():
        _error(f"model file not found: {args.model} ({CLASSIFIER_ORIGIN})")
        return EXIT_BAD_MODEL
    try:
        model, config = load_model(args.model)
    except ModelFileError as error:
        _error(str(error))
        return EXIT_BAD_MODEL
    try:
        faces, where = check_faces(args.faces, config, args.count)
        calibration = check_faces(args.calibration, config, CALIBRATION_FACES, "train", "--calibration")[0] \
            if args.int8 else None
    except ValueError as error:
        _error(str(error))
        return EXIT_USAGE
    try:
        if calibration is not None:
            agreement = export_int8(model, config, args.out, faces, calibration, source=str(args.model),
                                    tolerance=args.tolerance)
        else:
            agreement = export_onnx(model, config, args.out, faces, tolerance=args.tolerance, source=str(args.model))
    except OnnxExportError as error:
        _error(str(error))
        return EXIT_REFUSED
    except OSError as error:  # the folder is read-only, the disk full...: nothing was written
        _error(f"could not write {args.out}: {error}")
        return EXIT_USAGE
    size = f"{args.out.stat().st_size / 1e6:.1f} MB"
    if calibration is None:
        print(f"wrote {args.out} ({size}): agrees with PyTorch on {agreement.faces} faces of {where}: largest logit "
              f"difference {agreement.max_abs_diff:.2g}, top-1 class the same on {agreement.top1_agreement:.2%}")
    else:  # int8 is not float32: how far it is, stated
        print(f"wrote {args.out} ({size}, int8, calibrated on {len(calibration)} training faces): against PyTorch "
              f"float32 on {agreement.faces} faces of {where}, top-1 class the same on "
              f"{agreement.top1_agreement:.2%}, largest logit difference {agreement.max_abs_diff:.2g}")
    return EXIT_OK


def check_faces(paths: list[Path] | None, config: dict, count: int, split: str = "val",
                flag: str = "--faces") -> tuple[np.ndarray, str]:
    """(uint8 faces (N, 48, 48), where they come from): ``paths`` (``flag``'s) or ``split`` of the
    model's training dataset; a ``ValueError`` saying what to pass when there are none."""
    if paths:
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise ValueError(f"{flag}: no such file or folder: {', '.join(missing)}")
        if len(paths) == 1 and paths[0].suffix == ".npz":
            return _npz_faces(paths[0], count, split, flag), str(paths[0])
        return _image_faces(paths, count, flag), ", ".join(map(str, paths))
    recorded = (config.get("training_data") or {}).get("dataset_id")
    found = _ingested_dataset(recorded) if recorded else None
    if found is None:
        said = (f"the model was trained on dataset {recorded}, which this project has not ingested" if recorded
                else "the model records no training dataset")
        example = "train" if split == "train" else "test"
        raise ValueError(f"no faces to {'calibrate' if split == 'train' else 'check'} the export on ({said}): pass "
                         f"{flag} with a folder of face images (e.g. ../shared/datasets/fer2013/{example}) or a "
                         "fer_dataset.npz")
    return _npz_faces(found, count, split, flag), f"{found} ({split} split)"


def _ingested_dataset(dataset_id: str) -> Path | None:
    """This project's ``fer_dataset`` file (any environment) whose id is ``dataset_id``."""
    from fer_pipeline.core.evaluation.dataset_identity import dataset_id as identity
    from fer_pipeline.project import catalog_file, environment_data_roots, project_root

    root = project_root()
    for env in environment_data_roots(root):
        path = catalog_file(root, "fer_dataset", env)
        if path.is_file():
            keys = ("classes", "source_ids", "labels", "splits")
            try:
                with np.load(path, allow_pickle=False) as npz:
                    if set(keys) <= set(npz.files) and identity({key: npz[key] for key in keys}) == dataset_id:
                        return path
            except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # another environment's broken file
                continue
    return None


def _npz_faces(path: Path, count: int, split: str = "val", flag: str = "--faces") -> np.ndarray:
    from fer_pipeline.core.onnx_export import dataset_faces

    try:
        with np.load(path, allow_pickle=False) as npz:
            dataset = {key: npz[key] for key in npz.files if key in ("images", "splits")}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{flag}: {path} is not a readable .npz ({error})") from error
    images = dataset.get("images")
    if images is None or images.dtype != np.uint8 or images.ndim != 3 or len(images) == 0:
        raise ValueError(f"{flag}: {path} has no 'images' array of uint8 faces (N, H, W), as fer_dataset.npz does")
    return dataset_faces(dataset, count, split)


def _image_faces(paths: list[Path], count: int, flag: str = "--faces") -> np.ndarray:
    """Up to ``count`` image files among ``paths`` (spread over their sorted listing), each taken as
    a face crop, as FER2013's are, and made a grey 48x48 face as ingestion makes the training faces
    (``decode_face``); unreadable files are passed over."""
    from fer_pipeline.core.classes import IMAGE_SIZE
    from fer_pipeline.core.ingestion.decode import decode_face
    from fer_pipeline.core.onnx_export import spread
    from fer_pipeline.core.predict.inputs import scan_media

    files = sorted(scan_media(paths).images)
    faces = []
    for index in spread(len(files), count):
        try:
            face, _ = decode_face(files[index].read_bytes(), "convert", "convert", IMAGE_SIZE)
        except OSError:
            continue
        if face is not None:
            faces.append(face)
    if not faces:
        raise ValueError(f"{flag}: no readable image among {', '.join(map(str, paths))}")
    return np.stack(faces)


if __name__ == "__main__":
    sys.exit(main())
