"""The fer2013.csv reader: label and usage remapping, every kind of bad row in both error modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fer_pipeline.core.classes import CLASSES, CSV_CLASSES
from fer_pipeline.core.ingestion import IngestionError, detect_source_kind, ingest

from .helpers import check_consistent, face, reasons_for


def write_csv(path: Path, rows: list[tuple], header: str = "emotion,pixels,Usage") -> Path:
    lines = [header] + [",".join(str(cell) for cell in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path



def pixel_string(pixels: np.ndarray) -> str:
    return " ".join(map(str, pixels.ravel().tolist()))



def test_csv_remaps_labels_and_usage(tmp_path: Path) -> None:
    rows = [(csv_label, pixel_string(face(csv_label)), usage)
            for csv_label, usage in zip(range(7), ["Training", "Training", "PublicTest", "PrivateTest",
                                                   "Training", "PublicTest", "PrivateTest"])]
    csv_path = write_csv(tmp_path / "fer2013.csv", rows)
    for path in (tmp_path, csv_path):  # the folder or the file itself
        assert detect_source_kind(path) == "csv"
        result = ingest(path, progress=False)
        check_consistent(result)
        assert result.source_kind == "csv"
        assert result.source_ids.tolist() == [f"fer2013.csv:row{k}" for k in range(1, 8)]
        # CSV 4 = sad -> canonical 5; CSV 6 = neutral -> canonical 4.
        assert result.labels[4] == CLASSES.index("sad") == 5
        assert result.labels[6] == CLASSES.index("neutral") == 4
        assert [CLASSES[v] for v in result.labels] == list(CSV_CLASSES)
        assert result.splits.tolist() == ["train", "train", "val", "test", "train", "val", "test"]
        np.testing.assert_array_equal(result.images[3], face(3))
        assert all(len(h) == 32 for h in result.byte_hashes)



GOOD = pixel_string(face(1))
BAD_ROWS = [
    ((3, " ".join(GOOD.split()[:-1]), "Training"), "csv_bad_pixel_count"),
    ((3, GOOD.replace(" ", " x ", 1), "Training"), "csv_non_numeric_pixels"),
    ((3, "300 " + " ".join(GOOD.split()[1:]), "Training"), "csv_pixel_out_of_range"),
    ((7, GOOD, "Training"), "csv_label_out_of_range"),
    ((-1, GOOD, "Training"), "csv_label_out_of_range"),
    (("happy", GOOD, "Training"), "csv_bad_label"),
    ((3, GOOD, "Validation"), "csv_unknown_usage"),
]


@pytest.mark.parametrize("row, category", BAD_ROWS, ids=[b[1] + str(i) for i, b in enumerate(BAD_ROWS)])
def test_bad_csv_row_is_quarantined_or_fails(tmp_path: Path, row, category) -> None:
    rows = [(0, GOOD, "Training"), row, (6, pixel_string(face(2)), "PrivateTest")]
    write_csv(tmp_path / "fer2013.csv", rows)
    result = ingest(tmp_path, progress=False)
    check_consistent(result)
    assert result.read == 3 and len(result.labels) == 2
    assert result.source_ids.tolist() == ["fer2013.csv:row1", "fer2013.csv:row3"]
    [reason] = reasons_for(result, "fer2013.csv:row2")
    assert reason.startswith(category + ":")
    with pytest.raises(IngestionError, match=rf"fer2013\.csv:row2: {category}"):
        ingest(tmp_path, on_error="fail", progress=False)



def test_csv_short_row_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "fer2013.csv"
    path.write_text(f"emotion,pixels,Usage\n0,{GOOD},Training\n3\n")
    result = ingest(path, progress=False)
    assert result.read == 2 and reasons_for(result, "fer2013.csv:row2")[0].startswith("csv_malformed_row")



@pytest.mark.parametrize("on_error", ["quarantine", "fail"])
def test_csv_missing_column_is_a_file_error(tmp_path: Path, on_error: str) -> None:
    write_csv(tmp_path / "fer2013.csv", [(0, GOOD)], header="emotion,pixels")
    with pytest.raises(IngestionError, match=r"fer2013\.csv: missing column\(s\) usage"):
        ingest(tmp_path, on_error=on_error, progress=False)

