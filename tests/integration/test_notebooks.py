"""The notebooks run top to bottom (tiny-model switch), so they never rot."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixture_paths import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("HEADSPEX_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("HEADSPEX_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    errors = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert any(tmp_path.iterdir()), "the notebook wrote nothing into its run folder"


def test_notebooks_exist() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {"01_attribute_one_layer.ipynb", "02_layerwise_structure.ipynb"} <= names
