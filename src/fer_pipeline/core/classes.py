"""Class names, split names and FER2013 constants shared by every stage."""

from __future__ import annotations

#: Canonical class order: the alphabetical order of FER2013's folders. Labels index into it.
CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

#: Class order of the contest CSV ``fer2013.csv`` (column ``emotion`` 0-6). Not alphabetical.
CSV_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

#: CSV label -> canonical label.
CSV_TO_CANONICAL: tuple[int, ...] = tuple(CLASSES.index(name) for name in CSV_CLASSES)

#: Canonical split names: train / val (PublicTest) / test (PrivateTest).
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: File-name prefix (FER2013 folder layout) or CSV ``Usage`` value -> split.
FER_PREFIX_TO_SPLIT: dict[str, str] = {
    "Training": "train",
    "PublicTest": "val",
    "PrivateTest": "test",
}

#: Split -> FER2013's name for it (the file-name prefix and the CSV ``Usage`` value).
SPLIT_TO_FER_NAME: dict[str, str] = {split: name for name, split in FER_PREFIX_TO_SPLIT.items()}

#: FER2013 train-split class counts in canonical order (436 disgust vs 7,215 happy).
FER2013_TRAIN_COUNTS: tuple[int, ...] = (3995, 436, 4097, 7215, 4965, 4830, 3171)

#: FER2013 test-folder class counts (PublicTest + PrivateTest) in canonical order.
FER2013_TEST_COUNTS: tuple[int, ...] = (958, 111, 1024, 1774, 1233, 1247, 831)

#: FER+'s eighth emotion: a class only when ingestion makes it one (``ingestion.ferplus_contempt: class``).
CONTEMPT = "contempt"

IMAGE_SIZE = 48
NUM_CLASSES = len(CLASSES)
