"""FER+ votes joined onto the contest CSV: each label mode's rule, the exclusions and every refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.ingestion import IngestionError, ingest, join_ferplus
from fer_pipeline.core.ingestion.dataset import build_dataset
from fer_pipeline.core.ingestion.ferplus import ferplus_labels, read_votes

from .ferplus_files import FERPLUS_HEADER, noisy_rows, vote_row, write_contest_files
from .helpers import check_consistent, make_fer_folder

HAPPY, SAD, NEUTRAL, SURPRISE = (CLASSES.index(n) for n in ("happy", "sad", "neutral", "surprise"))
SEVEN = CLASSES
EIGHT = (*CLASSES, "contempt")


def labels_of(mode: str, *rows: list[int], named: bool = True, classes=SEVEN):
    votes = np.array(rows)
    return ferplus_labels(votes, np.full(len(votes), named), mode, classes)


# ----------------------------------------------------------------------------- the label rules

def test_majority_drops_single_votes_then_needs_more_than_half() -> None:
    labels, targets, reasons = labels_of(
        "ferplus_majority",
        vote_row(happiness=6, surprise=4),                      # 6 of 10
        vote_row(happiness=5, surprise=2, sadness=1, fear=1, anger=1),  # singles dropped: 5 of 7
        vote_row(happiness=5, surprise=5),                      # 5 of 10: not more than half
        vote_row(happiness=4, surprise=3, neutral=3),            # no majority
    )
    assert labels.tolist() == [HAPPY, HAPPY, -1, -1]
    assert targets is None
    assert reasons[0] is None and reasons[1] is None
    assert reasons[2].startswith("ferplus_no_majority") and reasons[3].startswith("ferplus_no_majority")


def test_majority_unknown_not_face_and_contempt_winners_are_excluded() -> None:
    rows = (vote_row(unknown=7, happiness=3), vote_row(nf=9, neutral=1), vote_row(contempt=8, neutral=2))
    labels, _, reasons = labels_of("ferplus_majority", *rows)
    assert labels.tolist() == [-1, -1, -1]
    assert [r.split(":")[0] for r in reasons] == ["ferplus_unknown", "ferplus_not_face", "ferplus_contempt"]
    labels8, _, reasons8 = labels_of("ferplus_majority", *rows, classes=EIGHT)
    assert labels8.tolist() == [-1, -1, EIGHT.index("contempt")] and reasons8[2] is None


def test_a_row_without_image_name_is_not_a_face_in_every_mode() -> None:
    for mode in ("ferplus_majority", "ferplus_plurality", "ferplus_probability"):
        labels, _, reasons = labels_of(mode, vote_row(happiness=10), named=False)
        assert labels.tolist() == [-1]
        assert reasons[0].startswith("ferplus_not_face")


def test_plurality_takes_the_top_emotion_and_excludes_ties() -> None:
    labels, _, reasons = labels_of(
        "ferplus_plurality",
        vote_row(happiness=4, surprise=3, neutral=3),
        vote_row(happiness=4, surprise=4, neutral=2),
        vote_row(sadness=1, anger=1, fear=1),   # plurality counts every vote: a three-way tie
        vote_row(sadness=2, anger=1),
    )
    assert labels.tolist() == [HAPPY, -1, -1, SAD]
    assert reasons[1].startswith("ferplus_tie") and "happiness / surprise" in reasons[1]
    assert reasons[2].startswith("ferplus_tie")


def test_probability_targets_are_the_vote_distribution_over_the_classes() -> None:
    labels, targets, reasons = labels_of(
        "ferplus_probability",
        vote_row(happiness=6, surprise=3, anger=1),   # the single anger vote is dropped
        vote_row(happiness=4, unknown=4, contempt=2),  # contempt not a class: 4 of 10 left
        vote_row(happiness=6, contempt=2, unknown=2),
    )
    assert targets.dtype == np.float32 and targets.shape == (3, 7)
    np.testing.assert_allclose(targets[0], np.eye(7)[HAPPY] * 6 / 9 + np.eye(7)[SURPRISE] * 3 / 9, atol=1e-6)
    assert labels[0] == HAPPY
    assert labels[1] == -1 and reasons[1].startswith("ferplus_unknown: only 4 of 10 votes")
    np.testing.assert_allclose(targets[1], 0)
    np.testing.assert_allclose(targets[2], np.eye(7)[HAPPY], atol=1e-6)
    _, _, reasons = labels_of("ferplus_probability", vote_row(contempt=7, neutral=3), vote_row(nf=6, happiness=4))
    assert [r.split(":")[0] for r in reasons] == ["ferplus_contempt", "ferplus_not_face"]
    # one label per face is still needed (selection, scoring): a tie for the top class excludes it
    labels, targets, reasons = labels_of("ferplus_probability", vote_row(happiness=4, surprise=4, neutral=2),
                                         vote_row(unknown=4, happiness=3, sadness=2, anger=1))
    assert labels.tolist() == [-1, HAPPY] and reasons[0].startswith("ferplus_tie: happy / surprise tie")
    # an unknown plurality does not exclude while the classes hold most of the remaining votes
    np.testing.assert_allclose(targets[1], np.eye(7)[HAPPY] * 0.6 + np.eye(7)[SAD] * 0.4, atol=1e-6)
    _, targets8, _ = labels_of("ferplus_probability", vote_row(happiness=6, contempt=2, unknown=2), classes=EIGHT)
    np.testing.assert_allclose(targets8[0], np.eye(8)[HAPPY] * 0.75 + np.eye(8)[7] * 0.25, atol=1e-6)


# ----------------------------------------------------------------------------- joined to the CSV

@pytest.fixture
def contest_files(tmp_path: Path) -> tuple[Path, Path]:
    return write_contest_files(tmp_path / "fer", noisy_rows({"Training": 3, "PublicTest": 2, "PrivateTest": 2},
                                                            seed=1, contempt_faces=1))


def test_fer2013_mode_keeps_the_contest_labels_and_the_votes_beside_them(contest_files) -> None:
    csv_path, votes_path = contest_files
    plain = ingest(csv_path, progress=False)
    joined = join_ferplus(plain, votes_path, "fer2013")
    assert joined.kept == plain.kept and joined.label_mode == "fer2013" and joined.classes == SEVEN
    np.testing.assert_array_equal(joined.labels, plain.labels)
    np.testing.assert_array_equal(joined.extras["fer2013_labels"], plain.labels)
    assert joined.extras["ferplus_votes"].shape == (plain.kept, 10)
    assert (~joined.extras["ferplus_named"]).sum() == 3  # one not-a-face row per split
    arrays = joined.as_arrays()
    assert str(arrays["label_mode"]) == "fer2013" and "targets" not in arrays


@pytest.mark.parametrize("mode", ["ferplus_majority", "ferplus_plurality", "ferplus_probability"])
def test_ferplus_modes_relabel_and_quarantine_every_excluded_row_with_a_reason(contest_files, mode) -> None:
    csv_path, votes_path = contest_files
    plain = ingest(csv_path, progress=False)
    joined = join_ferplus(plain, votes_path, mode)
    check_consistent(joined)  # read == kept + quarantined
    votes = read_votes(votes_path)
    expected, targets, reasons = ferplus_labels(votes.votes, votes.named, mode, SEVEN)
    np.testing.assert_array_equal(joined.labels, expected[expected >= 0])
    excluded = {q["item"]: q["reason"] for q in joined.quarantine}
    for row in np.flatnonzero(expected < 0) + 1:
        assert excluded[f"fer2013.csv:row{row}"].startswith("ferplus_")
    assert sum(r.startswith("ferplus_not_face") for r in excluded.values()) == 3
    assert sum(r.startswith("ferplus_contempt") for r in excluded.values()) == 3  # contempt not a class
    assert ("targets" in joined.extras) == (mode == "ferplus_probability")
    if mode == "ferplus_probability":
        np.testing.assert_allclose(joined.extras["targets"].sum(1), 1, atol=1e-6)
        np.testing.assert_array_equal(joined.extras["targets"].argmax(1), joined.labels)
    # the contest labels of the kept faces ride along for dual evaluation
    np.testing.assert_array_equal(joined.extras["fer2013_labels"], plain.labels[expected >= 0])


def test_contempt_as_an_eighth_class_is_counted_in_the_report(contest_files, tmp_path: Path) -> None:
    csv_path, votes_path = contest_files
    params = ingestion_params(csv_path, votes_path, "ferplus_majority", contempt="class")
    dataset, report = build_dataset(csv_path, params)
    assert [str(c) for c in dataset["classes"]] == list(EIGHT)
    assert report["classes"] == list(EIGHT) and report["label_mode"] == "ferplus_majority"
    assert all(report["counts"][split]["contempt"] == 1 for split in ("train", "val", "test"))
    assert report["consistent"] and "ferplus_contempt" not in report["reasons"]
    assert report["reasons"]["ferplus_not_face"] == 3


def ingestion_params(csv_path: Path, votes_path: Path | None, mode: str, contempt: str = "exclude", **more) -> dict:
    return {"source_path": str(csv_path), "source_kind": "auto", "on_error": "quarantine", "colour": "convert",
            "size": "convert", "duplicates": "keep", "val_fraction": 0.1, "test_fraction": 0.1, "seed": 0,
            "required_splits": ["train", "val", "test"], "workers": 1, "demo": None,
            "ferplus_votes_path": None if votes_path is None else str(votes_path), "label_mode": mode,
            "ferplus_contempt": contempt, **more}


def test_build_dataset_stores_the_label_set_and_counts_exclusions_by_reason(contest_files) -> None:
    csv_path, votes_path = contest_files
    dataset, report = build_dataset(csv_path, ingestion_params(csv_path, votes_path, "ferplus_probability"))
    assert str(dataset["label_mode"]) == "ferplus_probability"
    assert dataset["targets"].shape == (len(dataset["labels"]), 7)
    for key in ("ferplus_votes", "ferplus_named", "fer2013_labels", "leaked"):
        assert len(dataset[key]) == len(dataset["labels"]), key
    assert report["reasons"]["ferplus_not_face"] == 3
    assert report["read"] == report["kept"] + report["quarantined"]


# ----------------------------------------------------------------------------- refusals

def test_a_folder_source_with_votes_names_the_contest_csv_route(tmp_path: Path, contest_files, monkeypatch) -> None:
    make_fer_folder(tmp_path / "folder")
    _, votes_path = contest_files
    # refused before a single image is decoded (the real folder takes minutes)
    monkeypatch.setattr("fer_pipeline.core.ingestion.dataset.ingest", lambda *a, **k: pytest.fail("decoded first"))
    with pytest.raises(IngestionError, match="contest CSV source.*fer2013.csv"):
        build_dataset(tmp_path / "folder", ingestion_params(tmp_path / "folder", votes_path, "ferplus_majority"))
    with pytest.raises(IngestionError, match="no FER\\+ votes file there"):
        build_dataset(contest_files[0], ingestion_params(contest_files[0], tmp_path / "nope.csv", "ferplus_majority"))


def test_rows_stay_aligned_past_blank_lines_and_a_quarantined_csv_row(tmp_path: Path) -> None:
    """Row k of each file is the k-th non-blank data row: blank lines in either file and a bad CSV
    row (quarantined, still a row) shift nothing."""
    rows = [(HAPPY, "Training", vote_row(happiness=9, sadness=1), "a.png"),
            (SAD, "Training", vote_row(sadness=8, neutral=2), "b.png"),
            (NEUTRAL, "PublicTest", vote_row(neutral=10), "c.png"),
            (SURPRISE, "PrivateTest", vote_row(surprise=7, happiness=3), "d.png")]
    csv_path, votes_path = write_contest_files(tmp_path, rows)
    contest = csv_path.read_text().splitlines()
    contest[2] = "5,1 2 3,Training"  # row 2: a bad pixel count, quarantined
    csv_path.write_text("\n".join([contest[0], "", *contest[1:3], "  ", *contest[3:]]) + "\r\n\r\n")
    ferplus = votes_path.read_text().splitlines()
    votes_path.write_text("\n".join([*ferplus[:2], "", *ferplus[2:]]) + "\n\n")
    joined = join_ferplus(ingest(csv_path, progress=False), votes_path, "ferplus_majority")
    assert joined.source_ids.tolist() == ["fer2013.csv:row1", "fer2013.csv:row3", "fer2013.csv:row4"]
    assert joined.labels.tolist() == [HAPPY, NEUTRAL, SURPRISE]
    assert joined.splits.tolist() == ["train", "val", "test"]


def test_a_votes_file_with_another_row_count_stops(contest_files) -> None:
    csv_path, votes_path = contest_files
    lines = votes_path.read_text().splitlines()
    votes_path.write_text("\n".join(lines[:-1]) + "\n")
    expected = (f"fer2013new.csv has {len(lines) - 2} data rows but fer2013.csv has {len(lines) - 1}: "
                f"fer2013.csv:row{len(lines) - 1} has no counterpart")
    with pytest.raises(IngestionError, match=expected):
        join_ferplus(ingest(csv_path, progress=False), votes_path, "ferplus_majority")


def test_a_votes_file_in_another_order_stops_at_the_first_mismatching_row(contest_files) -> None:
    csv_path, votes_path = contest_files
    lines = votes_path.read_text().splitlines()
    first_val = next(k for k, line in enumerate(lines) if line.startswith("PublicTest"))
    lines[first_val], lines[1] = lines[1], lines[first_val]  # a Training row swapped with a PublicTest one
    votes_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(IngestionError, match=r"fer2013new.csv:row1 has Usage 'PublicTest' but "
                                             r"fer2013.csv:row1 has 'Training'"):
        join_ferplus(ingest(csv_path, progress=False), votes_path, "ferplus_majority")


def test_a_file_that_is_not_a_votes_file_stops(tmp_path: Path, contest_files) -> None:
    csv_path, _ = contest_files
    other = tmp_path / "other.csv"
    other.write_text("Usage,Image name,neutral\nTraining,a.png,10\n")
    with pytest.raises(IngestionError, match="missing column.*happiness"):
        join_ferplus(ingest(csv_path, progress=False), other, "ferplus_majority")
    broken = tmp_path / "broken.csv"
    for cells in ("1,2,x,0,0,0,0,0,0,0", "1,2,1.5,0,0,0,0,0,0,0", "1,2,-1,0,0,0,0,0,0,0"):
        broken.write_text(FERPLUS_HEADER + f"\nTraining,a.png,{cells}\n")
        with pytest.raises(IngestionError, match="broken.csv:row1: a vote count is not a non-negative integer"):
            read_votes(broken)
    with pytest.raises(IngestionError, match="no FER\\+ votes file"):
        read_votes(tmp_path / "missing.csv")


def test_settings_that_need_the_votes_or_a_ferplus_mode_are_refused(contest_files) -> None:
    csv_path, votes_path = contest_files
    with pytest.raises(ValueError, match="needs the FER\\+ votes"):
        build_dataset(csv_path, ingestion_params(csv_path, None, "ferplus_majority"))
    with pytest.raises(ValueError, match="class needs a FER\\+ label mode"):
        build_dataset(csv_path, ingestion_params(csv_path, votes_path, "fer2013", contempt="class"))
    with pytest.raises(ValueError, match="label_mode must be one of"):
        build_dataset(csv_path, ingestion_params(csv_path, votes_path, "ferplus_majoirty"))
    with pytest.raises(ValueError, match="ferplus_contempt must be one of"):
        build_dataset(csv_path, ingestion_params(csv_path, votes_path, "ferplus_majority", contempt="yes"))
