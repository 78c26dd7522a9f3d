"""Small generated contest CSVs with FER+ vote files beside them (never the real files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_pipeline.core.classes import CLASSES, CSV_CLASSES
from fer_pipeline.core.ingestion.ferplus import FERPLUS_TO_CLASS, VOTE_COLUMNS
from fer_pipeline.demo import draw_face

FERPLUS_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
USAGES = ("Training", "PublicTest", "PrivateTest")


def vote_row(**votes: int) -> list[int]:
    """``vote_row(happiness=6, surprise=4)`` -> the 10 counts in the file's column order."""
    unknown = set(votes) - set(VOTE_COLUMNS)
    assert not unknown, unknown
    return [int(votes.get(name, 0)) for name in VOTE_COLUMNS]


def column_of(canonical_label: int) -> str:
    """Our class index -> its FER+ vote column."""
    name = CLASSES[canonical_label]
    return next(column for column, ours in FERPLUS_TO_CLASS.items() if ours == name)


def write_contest_files(folder: Path, rows: list[tuple[int, str, list[int], str]], size: int = 48,
                        seed: int = 0) -> tuple[Path, Path]:
    """fer2013.csv and fer2013new.csv for ``rows`` of (canonical label, usage, votes, image name);
    faces drawn for their label. Returns (csv path, votes path)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    contest, ferplus = ["emotion,pixels,Usage"], [FERPLUS_HEADER]
    for k, (label, usage, votes, name) in enumerate(rows):
        pixels = " ".join(map(str, draw_face(label, rng, size=size).ravel().tolist()))
        contest.append(f"{CSV_CLASSES.index(CLASSES[label])},{pixels},{usage}")
        ferplus.append(",".join([usage, name, *map(str, votes)]))
    (folder / "fer2013.csv").write_text("\n".join(contest) + "\n")
    (folder / "fer2013new.csv").write_text("\n".join(ferplus) + "\n")
    return folder / "fer2013.csv", folder / "fer2013new.csv"


def noisy_rows(per_class_and_split: dict[str, int], seed: int = 0, agreement: float = 0.8,
               contempt_faces: int = 0) -> list[tuple[int, str, list[int], str]]:
    """Rows whose votes mostly agree with the drawn class (``agreement`` of 10 annotators, the
    rest random), every split and class present; plus ``contempt_faces`` per split whose votes
    say contempt (drawn as neutral faces) and one not-a-face row per split."""
    rng = np.random.default_rng(seed)
    rows = []
    for usage in USAGES:
        for label in range(len(CLASSES)):
            for _ in range(per_class_and_split[usage]):
                votes = np.zeros(len(VOTE_COLUMNS), int)
                agree = int(rng.binomial(10, agreement))
                votes[VOTE_COLUMNS.index(column_of(label))] += agree
                for other in rng.integers(0, 8, 10 - agree):
                    votes[other] += 1
                rows.append((label, usage, votes.tolist(), f"fer{len(rows):07d}.png"))
        for _ in range(contempt_faces):
            rows.append((CLASSES.index("neutral"), usage, vote_row(contempt=8, neutral=2), f"fer{len(rows):07d}.png"))
        rows.append((CLASSES.index("sad"), usage, vote_row(nf=10), ""))
    return rows
