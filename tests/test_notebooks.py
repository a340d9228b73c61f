"""Every notebook in notebooks/ runs through a real Jupyter kernel
(``nbclient`` + ``ipykernel``, kernel ``python3``), top to bottom, as a user
opening it would run it; a failing cell fails the test with the cell's
traceback. The notebooks are stored without outputs (checked here too).

The kernel spec ``python3`` used is written for the test into a temporary
folder put first on ``JUPYTER_PATH`` and starts *this* interpreter
(``sys.executable -m ipykernel_launcher``), so the kernel sees the symrmt
under test whatever kernel specs the machine has. Needs the ``test`` extra
(``nbclient``, ``nbformat``, ``ipykernel``); skipped without them."""
import json
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TIMEOUT = 300   # seconds per cell


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory):
    pytest.importorskip("ipykernel", reason="the notebook tests need ipykernel (pip install -e '.[test]')")
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (symrmt tests)", "language": "python"}))
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(root)] + ([old] if old else []))
    yield "python3"
    if old is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = old


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_kernel(path, tmp_path, kernel_name, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the notebook tests need nbformat")
    nbclient = pytest.importorskip("nbclient", reason="the notebook tests need nbclient")
    from nbclient.exceptions import CellExecutionError
    monkeypatch.setenv("MPLBACKEND", "Agg")      # the kernel inherits it: no windows
    nb = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=TIMEOUT, kernel_name=kernel_name,
                                     resources={"metadata": {"path": str(tmp_path)}})  # files it writes stay out of the repo
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{path.name}: a cell failed in the kernel:\n{exc}", pytrace=False)
    ran = [c for c in nb.cells if c.cell_type == "code"]
    assert ran and all(c.execution_count for c in ran), f"{path.name}: not every code cell ran"
    errors = [o for c in ran for o in c.outputs if o.output_type == "error"]
    assert not errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_stored_without_outputs(path):
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs", []) == [] and cell.get("execution_count") is None, \
                f"{path.name}: code cell {i} has stored outputs; strip them (e.g. jupyter nbconvert " \
                "--clear-output --inplace)"
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"


def test_there_are_notebooks():
    assert any(p.stem == "quickstart" for p in NOTEBOOKS)
