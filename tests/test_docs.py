"""The documentation builds with warnings as errors, and the notebook gallery is current.

The build needs the ``[docs]`` extra (Sphinx, numpydoc, myst-nb, pydata-sphinx-theme); without it
the build test skips and says which extra to install.  The gallery (``docs/gallery/``) holds the
notebooks executed in their full setting by ``python docs/run_gallery.py``, with the run time of
each; the tests check that it was made from the present notebook sources and that every notebook
fits its budget of 5 minutes.
"""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GALLERY = DOCS / "gallery"
NOTEBOOKS = ROOT / "notebooks"
DOCS_EXTRA = ("sphinx", "numpydoc", "myst_nb", "pydata_sphinx_theme")
FULL_SETTING_BUDGET_S = 300
# Notebooks whose full setting is not yet within the budget: their gallery copy is the quick
# setting, labelled as such in the docs.  Empty: notebook 06 (issue 18: it did not finish in 15
# minutes) now reads the stored comparison instead of retraining it.
NOT_YET_FULL: set[str] = set()

sys.path.insert(0, str(DOCS))
import run_gallery  # noqa: E402

sys.path.remove(str(DOCS))


def _missing_docs_extra() -> list[str]:
    return [m for m in DOCS_EXTRA if importlib.util.find_spec(m) is None]


def test_docs_build_without_warnings(tmp_path):
    missing = _missing_docs_extra()
    if missing:
        pytest.skip(f"the docs build needs the [docs] extra (pip install -e \".[docs]\"); missing: {missing}")
    src = tmp_path / "docs"
    # build from a copy: autosummary writes its stub pages into the source folder
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns("_build", "generated", "__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           str(src), str(tmp_path / "html")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    html = tmp_path / "html"
    for page in ("index.html", "api.html", "extending.html", "design/mathematics.html",
                 "gallery/index.html", "generated/geoalign.QSMA.html"):
        assert (html / page).exists(), page
    for nb in sorted(GALLERY.glob("[0-9][0-9]_*.ipynb")):
        page = (html / "gallery" / f"{nb.stem}.html").read_text(encoding="utf-8")
        assert "<img" in page, f"{nb.stem}: the rendered gallery page shows no figure"


def test_conf_names_the_docs_extra():
    assert "[docs]" in (DOCS / "conf.py").read_text()


def test_gallery_is_current_and_within_budget():
    timings = json.loads((GALLERY / "timings.json").read_text())
    stems = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert sorted(timings) == stems, "run `python docs/run_gallery.py` for the missing notebooks"
    stale = [s for s in stems if timings[s]["source_sha256"] != run_gallery.source_hash(NOTEBOOKS / f"{s}.ipynb")]
    assert not stale, (f"gallery copies of {stale} were executed from an older source: "
                       f"run `python docs/run_gallery.py {' '.join(s[:2] for s in stale)}`")
    for stem in stems:
        t = timings[stem]
        assert (GALLERY / f"{stem}.ipynb").exists()
        if stem in NOT_YET_FULL:
            continue
        assert t["setting"] == "full", f"{stem}: the gallery must hold the full setting"
        assert t["cpu_seconds"] <= FULL_SETTING_BUDGET_S, (
            f"{stem}: its kernel used {t['cpu_seconds']} s of CPU in the full setting")


def test_gallery_index_shows_the_recorded_timings():
    timings = json.loads((GALLERY / "timings.json").read_text())
    index = (GALLERY / "index.md").read_text()
    block = index.split(run_gallery.START)[1].split(run_gallery.END)[0].strip()
    assert block == run_gallery.timings_table(timings)


def test_gallery_notebooks_carry_outputs_with_figures():
    for nb in sorted(GALLERY.glob("[0-9][0-9]_*.ipynb")):
        raw = json.loads(nb.read_text(encoding="utf-8"))
        code = [c for c in raw["cells"] if c["cell_type"] == "code"]
        assert all(c.get("execution_count") for c in code), f"{nb.name} has unexecuted cells"
        assert any("image/png" in o.get("data", {}) for c in code for o in c.get("outputs", [])), nb.name


def test_no_reference_to_the_team_brief():
    pattern = re.compile(r"design\.md")
    hits = []
    for path in ROOT.rglob("*"):
        if (path.is_file() and path.suffix in {".py", ".md", ".ipynb", ".tex", ".rst", ".toml", ".txt"}
                and not any(part.startswith(".") or part in {"_build", "generated"} for part in path.parts)
                and path.resolve() != Path(__file__).resolve()):
            if pattern.search(path.read_text(encoding="utf-8", errors="replace")):
                hits.append(str(path.relative_to(ROOT)))
    assert not hits, f"files cite a design file that is not in the repository: {hits}"
