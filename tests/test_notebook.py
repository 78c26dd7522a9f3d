"""The exploration notebook runs against the demo run's catalog, so it never rots."""

import nbformat
import pytest

pytestmark = pytest.mark.e2e


def test_exploration_notebook_executes(demo_project, monkeypatch):
    from nbclient import NotebookClient

    notebook = nbformat.read(demo_project / "notebooks" / "exploration.ipynb", as_version=4)
    monkeypatch.setenv("KEDRO_ENV", "demo")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    monkeypatch.chdir(demo_project / "notebooks")
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(demo_project / "notebooks")}})
    client.execute()  # raises CellExecutionError on any failing cell
    text = "\n".join(
        out.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )
    assert "read = kept + quarantined: 560 = 560 + 0" in text
    images = [out for cell in notebook.cells for out in cell.get("outputs", [])
              if "image/png" in out.get("data", {})]
    assert len(images) >= 2  # the class-balance bars and the face grid
