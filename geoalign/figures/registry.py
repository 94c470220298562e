"""Registry of paper figures and the runner behind ``geoalign figures``.

A figure function is registered with :func:`figure` and has the signature
``func(ctx: FigureContext) -> FigureOutput``.  It computes everything it draws
from embedded data (planted models, scikit-learn's digits) — never from typed-in
numbers — and returns a matplotlib figure plus the parameters it used and, for
tables, the rows it generated.  The runner saves PDF and PNG (and CSV/LaTeX for
tables) atomically and records each output in ``manifest.json`` (inputs,
parameters, seed, package versions, wall time), so an interrupted run resumes
where it stopped: a figure whose manifest entry matches its current parameters
and whose files exist is skipped unless ``force=True``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

from .._io import atomic_path, atomic_write_json, atomic_write_text, read_config_file

__all__ = [
    "FigureContext",
    "FigureOutput",
    "figure",
    "FIGURES",
    "make_figures",
    "package_versions",
]


@dataclasses.dataclass(frozen=True)
class FigureContext:
    """What a figure function may depend on.

    Attributes
    ----------
    quick : bool
        Small setting (for tests and previews): fewer samples, epochs and grid points.
    seed : int
        Base seed; every random draw of the figure derives from it.
    device : str
        torch device for figures that train or run torch kernels.
    """

    quick: bool = False
    seed: int = 0
    device: str = "cpu"

    def pick(self, full: Any, quick: Any) -> Any:
        """Return ``quick`` in the quick setting and ``full`` otherwise."""
        return quick if self.quick else full


@dataclasses.dataclass
class FigureOutput:
    """What a figure function returns.

    Attributes
    ----------
    figure : matplotlib.figure.Figure or None
        The figure to save (None for a table-only output).
    params : dict
        Parameters and data description recorded in the manifest.
    table : pandas.DataFrame or None
        Rows of a generated table, saved as CSV and LaTeX (``<name>.tex``).
    caption : str
        One-line description stored in the manifest (and used for tables).
    """

    figure: Any = None
    params: dict = dataclasses.field(default_factory=dict)
    table: Any = None
    caption: str = ""


@dataclasses.dataclass(frozen=True)
class _Entry:
    name: str
    func: Callable[[FigureContext], FigureOutput]
    kind: str  # "figure" or "table"
    description: str


FIGURES: dict[str, _Entry] = {}


def figure(name: str, kind: str = "figure", description: str = ""):
    """Decorator registering a figure (or table) function under ``name``."""
    if kind not in ("figure", "table"):
        raise ValueError(f"kind must be 'figure' or 'table', got {kind!r}")

    def register(func: Callable[[FigureContext], FigureOutput]):
        if name in FIGURES:
            raise ValueError(f"figure {name!r} is already registered")
        FIGURES[name] = _Entry(name, func, kind, description or (func.__doc__ or "").strip().split("\n")[0])
        return func

    return register


def package_versions() -> dict[str, str]:
    """Versions of the packages a figure may depend on."""
    import importlib

    out = {}
    for mod in ("geoalign", "numpy", "scipy", "torch", "ot", "matplotlib", "pandas", "sklearn"):
        try:
            out[mod] = str(importlib.import_module(mod).__version__)
        except Exception:  # noqa: BLE001 - optional packages
            out[mod] = "absent"
    return out


def _outputs(entry: _Entry, out_dir: Path) -> list[Path]:
    if entry.kind == "table":
        return [out_dir / f"{entry.name}.csv", out_dir / f"{entry.name}.tex"]
    return [out_dir / f"{entry.name}.pdf", out_dir / f"{entry.name}.png"]


def _key(entry: _Entry, ctx: FigureContext) -> str:
    blob = json.dumps({"name": entry.name, **dataclasses.asdict(ctx)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _save(entry: _Entry, result: FigureOutput, out_dir: Path) -> list[Path]:
    paths = _outputs(entry, out_dir)
    if entry.kind == "table":
        if result.table is None:
            raise RuntimeError(f"table {entry.name!r} returned no table")
        atomic_write_text(paths[0], result.table.to_csv(index=False))
        latex = result.table.to_latex(index=False, float_format="%.3f", escape=True)
        atomic_write_text(paths[1], latex)
    else:
        import matplotlib.pyplot as plt

        if result.figure is None:
            raise RuntimeError(f"figure {entry.name!r} returned no figure")
        for path in paths:
            with atomic_path(path) as tmp:
                result.figure.savefig(tmp, format=path.suffix[1:], dpi=150, bbox_inches="tight")
        plt.close(result.figure)
        if result.table is not None:  # data behind the figure, for readers of the paper
            atomic_write_text(out_dir / f"{entry.name}.csv", result.table.to_csv(index=False))
    return paths


def make_figures(
    out_dir: str | Path = "figures",
    only: list[str] | None = None,
    quick: bool = False,
    seed: int = 0,
    device: str = "cpu",
    force: bool = False,
    progress: bool = True,
) -> dict[str, dict]:
    """Regenerate figures and tables into ``out_dir``; return the manifest.

    Parameters
    ----------
    out_dir : path
        Output folder (created).  Holds ``<name>.pdf``/``.png`` (figures),
        ``<name>.csv``/``.tex`` (tables) and ``manifest.json``.
    only : list of str, optional
        Names to (re)generate; default all registered figures.
    quick : bool
        Small setting (seconds per figure instead of minutes).
    force : bool
        Regenerate even when the manifest says the outputs are current.
    """
    from . import load_all

    load_all()
    names = list(FIGURES) if not only else list(only)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure name(s) {unknown}; available: {sorted(FIGURES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "manifest.json"
    manifest: dict[str, dict] = (read_config_file(manifest_path, "figure manifest")
                                 if manifest_path.exists() else {})
    ctx = FigureContext(quick=quick, seed=seed, device=device)
    versions = package_versions()

    from tqdm.auto import tqdm

    bar = tqdm(names, desc="figures", disable=not progress, unit="fig")
    for name in bar:
        entry = FIGURES[name]
        key = _key(entry, ctx)
        done = manifest.get(name, {})
        if (not force and done.get("key") == key
                and all(p.exists() for p in _outputs(entry, out_dir))):
            bar.set_postfix_str(f"{name}: current")
            continue
        bar.set_postfix_str(name)
        t0 = time.perf_counter()
        result = entry.func(ctx)
        paths = _save(entry, result, out_dir)
        manifest[name] = {
            "key": key,
            "kind": entry.kind,
            "description": entry.description,
            "caption": result.caption,
            "files": [p.name for p in paths],
            "params": result.params,
            "quick": quick,
            "seed": seed,
            "device": device,
            "versions": versions,
            "seconds": round(time.perf_counter() - t0, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_json(manifest_path, manifest)  # after every figure: resumable
    return manifest
