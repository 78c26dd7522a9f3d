"""fer_pipeline.project: the project root and each environment's data root."""

from pathlib import Path

from fer_pipeline.project import environment_data_roots

REPO = Path(__file__).resolve().parents[1]


def test_each_environment_has_its_own_data_root():
    roots = environment_data_roots(REPO)
    assert roots == {"base": REPO / "data", "cpu": REPO / "data" / "cpu", "demo": REPO / "data" / "demo"}
