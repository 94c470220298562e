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
    produced = {f for entry in manifest.values() for f in entry["files"]} | {"numbers.tex"}
    assert (out / "numbers.tex").exists()
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


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not found: install a minimal TeX Live (apt-get install "
                           "texlive-latex-base texlive-latex-recommended; .ci/run does it in CI)")
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


# --------------------------------------------------------------------------- cache key = code
from geoalign.figures import registry  # noqa: E402
from geoalign.figures.registry import (  # noqa: E402
    FigureCacheError,
    FigureContext,
    FigureOutput,
    code_hash,
    format_number,
    macro_name,
    module_closure,
    read_numbers,
)

ROOT = Path(__file__).resolve().parents[1]


def test_closure_follows_lazy_imports_of_figure_modules():
    fiber = module_closure("geoalign.figures.fiber_figs")
    # imported inside the figure functions, relative (from ..fiber / ..data.planted)
    assert {"geoalign.fiber", "geoalign.data.planted", "geoalign.figures.registry", "geoalign"} <= set(fiber)
    assert "geoalign.models.qsma" not in fiber
    training = module_closure("geoalign.figures.training_figs")
    assert {"geoalign.models.qsma", "geoalign.comparison", "geoalign.train"} <= set(training)


def test_closure_follows_lazily_re_exported_names():
    # ``from ..manifolds import frechet_mean`` reaches manifolds/frechet.py through the
    # package's lazy export table, not through an import statement
    geometry = module_closure("geoalign.figures.geometry")
    assert {"geoalign.manifolds.frechet", "geoalign.manifolds.sphere",
            "geoalign.manifolds.hyperbolic"} <= set(geometry)
    assert "geoalign.manifolds.spd" not in geometry


def _write_package(root: Path, name: str) -> Path:
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "fig.py").write_text("def f():\n    from .dep import g\n    return g()\n")
    (pkg / "dep.py").write_text("from . import deeper\n\ndef g():\n    return 1\n")
    (pkg / "deeper.py").write_text("X = 1\n")
    (pkg / "unrelated.py").write_text("Y = 2\n")
    return pkg


def test_code_hash_changes_with_transitive_imports_only(tmp_path, monkeypatch):
    name = "geoalign_codehash_probe"
    pkg = _write_package(tmp_path, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    closure = module_closure(f"{name}.fig", package=name)
    assert set(closure) == {name, f"{name}.fig", f"{name}.dep", f"{name}.deeper"}
    before = code_hash(f"{name}.fig", package=name)
    (pkg / "unrelated.py").write_text("Y = 3  # edited\n")
    assert code_hash(f"{name}.fig", package=name) == before
    (pkg / "deeper.py").write_text("X = 2  # a change two imports away\n")
    after = code_hash(f"{name}.fig", package=name)
    assert after != before
    (pkg / "fig.py").write_text("def f():\n    from .dep import g\n    return g() + 1\n")
    assert code_hash(f"{name}.fig", package=name) not in (before, after)


def _register(monkeypatch, name, numbers=None, calls=None):
    import matplotlib.pyplot as plt

    def func(ctx):
        if calls is not None:
            calls.append(name)
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([0, 1], [0, 1])
        return FigureOutput(fig, params={"n": 2}, numbers=dict(numbers or {}))

    monkeypatch.setitem(FIGURES, name, registry._Entry(name, func, "figure", "test figure"))
    return func


def test_code_change_makes_figure_recompute(tmp_path, monkeypatch):
    calls = []
    _register(monkeypatch, "probe_fig", calls=calls)
    make_figures(tmp_path, only=["probe_fig"], progress=False)
    make_figures(tmp_path, only=["probe_fig"], progress=False)
    assert calls == ["probe_fig"]  # current: skipped
    monkeypatch.setattr(registry, "code_hash", lambda module, package="geoalign": "edited-source")
    assert registry.figure_status(tmp_path)["probe_fig"] == "stale"
    make_figures(tmp_path, only=["probe_fig"], progress=False)
    assert calls == ["probe_fig", "probe_fig"]


def test_numbers_tex_has_one_macro_per_number(tmp_path, monkeypatch):
    _register(monkeypatch, "probe_fig", numbers={"alpha": 0.123456, "count": 7, "label": "QSMA",
                                                 "tiny": 3.3e-16, "neg": -0.25})
    manifest = make_figures(tmp_path, only=["probe_fig"], progress=False)
    macros = read_numbers(tmp_path / "numbers.tex")
    assert macros == manifest["probe_fig"]["numbers"] == {
        "ProbeFigAlpha": "0.123", "ProbeFigCount": "7", "ProbeFigLabel": "QSMA",
        "ProbeFigTiny": r"\ensuremath{3.30\times 10^{-16}}", "ProbeFigNeg": r"\ensuremath{-}0.250"}
    text = (tmp_path / "numbers.tex").read_text()
    assert r"\newcommand{\ProbeFigAlpha}{0.123}" in text.splitlines()


def test_numbers_reject_bad_keys_values_and_clashes(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="letters only.*'k_jl'"):
        macro_name("dimension", "k_jl")
    with pytest.raises(ValueError, match="not a finite number"):
        format_number(float("nan"))
    _register(monkeypatch, "ab_c", numbers={"d": 1})
    _register(monkeypatch, "ab", numbers={"cD": 2})  # both give \AbCD
    with pytest.raises(ValueError, match=r"both define \\AbCD"):
        make_figures(tmp_path, only=["ab_c", "ab"], progress=False)


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]", "\xff\xfe"])
def test_corrupt_manifest_is_a_one_line_error_naming_force(tmp_path, monkeypatch, capsys, bad):
    _register(monkeypatch, "probe_fig")
    (tmp_path / "manifest.json").write_bytes(bad.encode("latin-1"))
    with pytest.raises(FigureCacheError) as info:
        make_figures(tmp_path, only=["probe_fig"], progress=False)
    message = str(info.value)
    assert "\n" not in message and "manifest.json" in message and "--force" in message
    assert main(["figures", "--only", "probe_fig", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "manifest.json" in err and "--force" in err
    manifest = make_figures(tmp_path, only=["probe_fig"], progress=False, force=True)  # rebuilds
    assert json.loads((tmp_path / "manifest.json").read_text()).keys() == manifest.keys() == {"probe_fig"}


def test_corrupt_numbers_tex_is_a_one_line_error_naming_force(tmp_path, monkeypatch):
    _register(monkeypatch, "probe_fig", numbers={"alpha": 1.5})
    make_figures(tmp_path, only=["probe_fig"], progress=False)
    (tmp_path / "numbers.tex").write_text("\\newcommand{\\ProbeFigAlpha}{1.50}\ngarbage {\n")
    with pytest.raises(FigureCacheError, match=r"numbers\.tex is corrupt \(line 2 .*--force"):
        make_figures(tmp_path, only=["probe_fig"], progress=False)
    make_figures(tmp_path, only=["probe_fig"], progress=False, force=True)
    assert read_numbers(tmp_path / "numbers.tex") == {"ProbeFigAlpha": "1.50"}


# --------------------------------------------------------------------------- the paper's numbers
_DECIMAL = re.compile(r"(?<![\w\\])\d*\.\d+")


def hand_typed_results(tex: str) -> list[str]:
    """Sentences of the abstract and of the results onwards (Results, Limitations, ... up to the
    bibliography) that contain a decimal number typed in by hand rather than a macro."""
    tex = re.sub(r"(?<!\\)%.*", "", tex)
    abstract = re.search(r"\\begin\{abstract\}(.*?)\\end\{abstract\}", tex, re.S)
    start = tex.find(r"\section{Results}")
    end = tex.find(r"\begin{thebibliography}")
    parts = [abstract.group(1) if abstract else "", tex[start:end] if start >= 0 else ""]
    text = " ".join(parts)
    # layout, not results: graphics options, float placement, inputs, labels and references
    text = re.sub(r"\\includegraphics\[[^\]]*\]", "", text)
    text = re.sub(r"\\begin\{(figure|table)\}\[[^\]]*\]", "", text)
    text = re.sub(r"\\(input|label|ref|cite)\{[^}]*\}", "", text)
    sentences = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    return [s for s in sentences if _DECIMAL.search(s)]


def test_hand_typed_result_detector_catches_a_typed_number():
    tex = (r"\begin{abstract}QSMA wins by 0.05.\end{abstract}\section{Results} Our mAP is "
           r"\QsmaTrainingDigitsAllMap{} at $\eta=\DimensionJlEta$. It was 0.57 before. "
           r"\includegraphics[width=0.9\linewidth]{x.pdf} \begin{thebibliography} 1.5 \end{thebibliography}")
    assert hand_typed_results(tex) == ["QSMA wins by 0.05.", "It was 0.57 before."]


def test_paper_has_no_hand_typed_results():
    typed = hand_typed_results(PAPER.read_text())
    assert typed == [], f"results typed by hand in {PAPER.name} (use a macro of figures/numbers.tex): {typed}"


def test_paper_macros_come_from_committed_numbers():
    tex = PAPER.read_text()
    assert r"\input{../figures/numbers.tex}" in tex
    defined = read_numbers(ROOT / "figures" / "numbers.tex")
    manifest = json.loads((ROOT / "figures" / "manifest.json").read_text())
    assert defined == {m: v for e in manifest.values() for m, v in (e.get("numbers") or {}).items()}
    used = set(re.findall(r"\\([A-Z][A-Za-z]+)", tex))
    prefixes = tuple(macro_name(name, "x")[:-1] for name in manifest)
    figure_macros = {m for m in used if m.startswith(prefixes)}
    assert figure_macros, "the paper quotes no figure numbers"
    assert figure_macros <= set(defined), f"undefined number macros: {sorted(figure_macros - set(defined))}"
