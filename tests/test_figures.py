"""`geoalign figures`: every registered figure regenerates (quick setting), the manifest records
it, reruns resume, and every figure/table the paper includes is produced."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from geoalign.cli import main
from geoalign.figures import FIGURES, load_all, make_figures

PAPER = Path(__file__).resolve().parents[1] / "paper" / "geoalign.tex"


@pytest.fixture(scope="module")
def quick_figures(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    manifest = make_figures(out, quick=True, progress=False)
    return out, manifest


def test_every_figure_is_written_with_manifest(quick_figures):
    out, manifest = quick_figures
    assert set(manifest) == set(load_all())
    for name, entry in manifest.items():
        for f in entry["files"]:
            path = out / f
            assert path.exists() and path.stat().st_size > 1000, path
        assert entry["quick"] is True and entry["seconds"] >= 0
        assert entry["versions"]["numpy"]
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk.keys() == manifest.keys()


def test_rerun_skips_current_figures(quick_figures):
    out, manifest = quick_figures
    name = next(iter(manifest))
    before = (out / manifest[name]["files"][0]).stat().st_mtime_ns
    again = make_figures(out, only=[name], quick=True, progress=False)
    assert again[name]["created"] == manifest[name]["created"]
    assert (out / manifest[name]["files"][0]).stat().st_mtime_ns == before


def test_paper_includes_only_generated_outputs(quick_figures):
    out, manifest = quick_figures
    tex = PAPER.read_text()
    included = re.findall(r"\\includegraphics(?:\[[^\]]*\])?\{([^}]+)\}", tex)
    tables = re.findall(r"\\input\{\.\./figures/([^}]+)\}", tex)
    assert included and tables
    produced = {f for entry in manifest.values() for f in entry["files"]}
    for name in included + tables:
        assert Path(name).name in produced, f"paper includes {name}, not produced by geoalign figures"


def test_unknown_figure_name_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown figure name"):
        make_figures(tmp_path, only=["no_such_figure"], progress=False)


def test_cli_lists_figures(capsys):
    assert main(["figures", "--list"]) == 0
    out = capsys.readouterr().out
    for name in FIGURES:
        assert name in out


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX distribution (pdflatex)")
def test_paper_builds_with_generated_figures(quick_figures, tmp_path):
    out, _ = quick_figures
    (tmp_path / "paper").mkdir()
    shutil.copy(PAPER, tmp_path / "paper" / PAPER.name)
    shutil.copytree(out, tmp_path / "figures")
    for _ in range(2):  # second pass resolves references
        proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", PAPER.name],
                              cwd=tmp_path / "paper", capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "paper" / "geoalign.pdf").stat().st_size > 50_000
