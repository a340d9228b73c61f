"""Every notebook in notebooks/ executes: its code cells run in order in one
namespace (what a kernel would do), at the small sizes the notebooks use.
No Jupyter dependency: the .ipynb JSON is read directly."""
import json
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    os.environ.setdefault("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)  # outputs the notebook writes stay out of the repo
    nb = json.loads(path.read_text())
    ns = {"__name__": "__notebook__"}
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        src = "\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!")))
        try:
            exec(compile(src, f"{path.name}[cell {i}]", "exec"), ns)
        except Exception as exc:  # name the cell that failed
            raise AssertionError(f"{path.name}: code cell {i} failed: {type(exc).__name__}: {exc}") from exc


def test_there_are_notebooks():
    assert any(p.stem == "quickstart" for p in NOTEBOOKS)
