"""Every notebook exists twice, as jupytext percent script and as paired .ipynb without outputs.

The .py file is what is reviewed and edited; the .ipynb is what JupyterLab opens and what
nbmake executes.  They must hold the same code, and the committed .ipynb must carry no
outputs (outputs belong to a run, not to the repository).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SCRIPTS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
IPYNBS = sorted(NOTEBOOKS.glob("*.ipynb"))


def _cells(nb, kind):
    return [c.source.strip() for c in nb.cells if c.cell_type == kind]


def test_notebooks_exist():
    assert SCRIPTS, f"no notebooks/NN_name.py found in {NOTEBOOKS}"
    assert {p.stem for p in SCRIPTS} == {p.stem for p in IPYNBS}, (
        "every notebooks/*.py needs its paired .ipynb and vice versa: "
        f"scripts {sorted(p.stem for p in SCRIPTS)}, notebooks {sorted(p.stem for p in IPYNBS)}")


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_pair_has_identical_cells(script):
    ipynb = script.with_suffix(".ipynb")
    assert ipynb.exists(), f"{script.name} has no paired {ipynb.name} (run jupytext --sync)"
    from_py = jupytext.read(script)
    from_ipynb = jupytext.read(ipynb)
    assert _cells(from_py, "code") == _cells(from_ipynb, "code"), (
        f"code cells of {script.name} and {ipynb.name} differ: run `jupytext --sync {script}`")
    assert _cells(from_py, "markdown") == _cells(from_ipynb, "markdown"), (
        f"markdown cells of {script.name} and {ipynb.name} differ: run `jupytext --sync {script}`")
    formats = from_ipynb.metadata.get("jupytext", {}).get("formats", "")
    assert set(formats.split(",")) == {"ipynb", "py:percent"}, (
        f"{ipynb.name} must be paired with formats 'ipynb,py:percent', got {formats!r}")


@pytest.mark.parametrize("ipynb", IPYNBS, ids=[p.stem for p in IPYNBS])
def test_ipynb_has_no_outputs(ipynb):
    raw = json.loads(ipynb.read_text(encoding="utf-8"))
    dirty = [i for i, c in enumerate(raw["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{ipynb.name} has outputs or execution counts in code cells {dirty}: "
                       "commit notebooks without outputs (jupyter nbconvert --clear-output)")


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_quick_switch(script):
    # Tests run notebooks in the small setting; each notebook must read the switch.
    text = script.read_text(encoding="utf-8")
    assert 'QUICK = os.environ.get("GEOALIGN_QUICK") == "1"' in text, (
        f"{script.name} must define QUICK from the GEOALIGN_QUICK environment variable")
