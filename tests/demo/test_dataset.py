"""The demo dataset on disk: layout, proportions, determinism, skip/overwrite, the CLI, photos."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.demo.dataset import (
    SPEC_FILE,
    generate_demo_dataset,
    main,
    split_counts,
)


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    summary = generate_demo_dataset(root, n_train=140, n_test=70, seed=3, progress=False)
    return root, summary


def test_split_counts_proportions_and_minimum():
    counts = split_counts(2800, (3995, 436, 4097, 7215, 4965, 4830, 3171))
    assert sum(counts) == 2800
    assert counts.index(max(counts)) == CLASSES.index("happy")
    assert counts.index(min(counts)) == CLASSES.index("disgust")
    tiny = split_counts(10, (3995, 436, 4097, 7215, 4965, 4830, 3171))
    assert sum(tiny) == 10 and min(tiny) >= 1
    assert min(split_counts(30, (3995, 436, 4097, 7215, 4965, 4830, 3171))) >= 3
    with pytest.raises(ValueError):
        split_counts(5, (1,) * 7)


def test_layout_prefixes_counts_and_unique_ids(small_dataset):
    root, summary = small_dataset
    assert summary["generated"] is True
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(CLASSES)
    assert sorted(p.name for p in (root / "test").iterdir()) == sorted(CLASSES)
    ids = []
    for split, prefixes in (("train", {"Training"}), ("test", {"PublicTest", "PrivateTest"})):
        counts = summary["counts"][split]
        for name in CLASSES:
            files = sorted((root / split / name).glob("*.jpg"))
            assert len(files) == counts[name] >= 1
            for path in files:
                prefix, image_id = path.stem.split("_")
                assert prefix in prefixes
                ids.append(int(image_id))
        assert counts["happy"] == max(counts.values())
        assert counts["disgust"] == min(counts.values())
    assert sum(summary["counts"]["train"].values()) == 140
    assert sum(summary["counts"]["test"].values()) == 70
    assert len(ids) == len(set(ids)) == 210
    assert summary["prefix_counts"]["PublicTest"] == 35 and summary["prefix_counts"]["PrivateTest"] == 35
    # stratified halves: within each class, public and private differ by at most one
    for name in CLASSES:
        stems = [p.stem for p in (root / "test" / name).glob("*.jpg")]
        public = sum(s.startswith("PublicTest") for s in stems)
        assert abs(public - (len(stems) - public)) <= 1


def test_images_are_grayscale_jpegs(small_dataset):
    root, _ = small_dataset
    path = next((root / "train" / "happy").glob("*.jpg"))
    assert path.read_bytes()[:2] == b"\xff\xd8"
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image.shape == (48, 48) and image.dtype == np.uint8


def test_same_seed_same_bytes_other_seed_differs(small_dataset, tmp_path):
    root, _ = small_dataset
    again = tmp_path / "again"
    generate_demo_dataset(again, n_train=140, n_test=70, seed=3, progress=False)
    assert _files(again) == _files(root)
    assert all((again / f).read_bytes() == (root / f).read_bytes() for f in _files(root))
    other = tmp_path / "other"
    generate_demo_dataset(other, n_train=140, n_test=70, seed=4, progress=False)
    common = set(_files(other)) & set(_files(root))
    differing = sum((other / f).read_bytes() != (root / f).read_bytes() for f in common)
    assert _files(other) != _files(root) or differing == len(common)


def test_spec_skip_and_overwrite(tmp_path):
    root = tmp_path / "demo"
    first = generate_demo_dataset(root, n_train=21, n_test=14, seed=1, progress=False)
    spec = json.loads((root / SPEC_FILE).read_text())
    assert spec["seed"] == 1 and spec["n_train"] == 21 and spec["counts"] == first["counts"]

    marker = next((root / "train").rglob("*.jpg"))
    marker.write_bytes(marker.read_bytes())  # same content, new mtime
    mtime = marker.stat().st_mtime_ns
    second = generate_demo_dataset(root, n_train=21, n_test=14, seed=1, progress=False)
    assert second["generated"] is False and second["counts"] == first["counts"]
    assert marker.stat().st_mtime_ns == mtime

    third = generate_demo_dataset(root, n_train=21, n_test=14, seed=1, overwrite=True, progress=False)
    assert third["generated"] is True

    # a different spec regenerates and leaves no stale files behind
    fourth = generate_demo_dataset(root, n_train=28, n_test=14, seed=2, progress=False)
    assert fourth["generated"] is True
    assert len(list(root.rglob("*.jpg"))) == 42

    # a missing file means the stored dataset is incomplete: regenerate
    next((root / "test").rglob("*.jpg")).unlink()
    assert generate_demo_dataset(root, n_train=28, n_test=14, seed=2, progress=False)["generated"] is True


def test_refuses_to_replace_a_foreign_dataset(tmp_path):
    (tmp_path / "train" / "happy").mkdir(parents=True)
    (tmp_path / "train" / "happy" / "Training_1.jpg").write_bytes(b"real")
    with pytest.raises(FileExistsError):
        generate_demo_dataset(tmp_path, n_train=14, n_test=7, progress=False)
    assert (tmp_path / "train" / "happy" / "Training_1.jpg").read_bytes() == b"real"


def test_cli(tmp_path, capsys):
    assert main([str(tmp_path / "cli"), "--n-train", "14", "--n-test", "7", "--seed", "5"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert len(list((tmp_path / "cli").rglob("*.jpg"))) == 21
    assert main([str(tmp_path / "cli"), "--n-train", "14", "--n-test", "7", "--seed", "5"]) == 0
    assert "kept existing" in capsys.readouterr().out


def test_write_demo_photos_gives_detectable_faces_and_a_blank(tmp_path):
    from fer_pipeline.core.faces.detector import FaceDetector
    from fer_pipeline.core.faces.images import load_image, to_gray
    from fer_pipeline.demo.dataset import write_demo_photos

    paths = write_demo_photos(tmp_path, n_photos=4, seed=1)
    assert [p.suffix for p in paths] == [".jpg", ".png", ".jpg", ".png", ".jpg"]
    assert paths[-1].name == "demo_no_face.jpg"
    detector = FaceDetector()
    found = [len(detector.detect(to_gray(load_image(p)))) for p in paths]
    assert found[-1] == 0
    assert sum(found[:-1]) >= 5  # 1 + 2 + 1 + 2 faces drawn; Haar finds nearly all
    again = write_demo_photos(tmp_path / "again", n_photos=4, seed=1)
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(paths, again))


def test_write_demo_clip_writes_its_frames_with_a_moving_and_a_still_face(tmp_path):
    import cv2

    from fer_pipeline.demo import write_demo_clip

    path = write_demo_clip(tmp_path / "clip.avi", frames=5, size=(640, 480))
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (read := capture.read())[0]:
        frames.append(read[1])
    capture.release()
    assert len(frames) == 5 and frames[0].shape == (480, 640, 3)
    moving, still = (slice(110, 310), slice(60, 240)), (slice(150, 280), slice(380, 510))
    first, last = frames[0].astype(float), frames[-1].astype(float)
    assert abs(first[moving] - last[moving]).mean() > 3 * abs(first[still] - last[still]).mean()
