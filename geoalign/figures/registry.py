"""Registry of paper figures and the runner behind ``geoalign figures``.

A figure function is registered with :func:`figure` and has the signature
``func(ctx: FigureContext) -> FigureOutput``.  It computes everything it draws
from embedded data (planted models, scikit-learn's digits) — never from typed-in
numbers — and returns a matplotlib figure plus the parameters it used and, for
tables, the rows it generated.  The runner saves PDF and PNG (and CSV/LaTeX for
tables) atomically and records each output in ``manifest.json`` (inputs,
parameters, seed, package versions, wall time), so an interrupted run resumes
where it stopped: a figure whose manifest entry matches its current key and
whose files exist is skipped unless ``force=True``.

The key of a figure hashes its name, the :class:`FigureContext` and the source
of the figure's module together with every ``geoalign`` module that module
imports, transitively (:func:`code_hash`): editing any code a figure runs makes
it recompute, while editing an unrelated module does not.

A figure may also return named numbers (``FigureOutput.numbers``).  The runner
records them in the manifest and writes ``numbers.tex``, one
``\newcommand`` per number, so that the paper quotes results only through
macros that ``geoalign figures`` regenerates (:func:`macro_name`).
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib.util
import json
import math
import re
import time
from pathlib import Path
from typing import Any, Callable

from .._io import atomic_path, atomic_write_json, atomic_write_text
from .._registry import Registry

__all__ = [
    "FigureContext",
    "FigureOutput",
    "figure",
    "FIGURES",
    "load_all",
    "make_figures",
    "package_versions",
    "FigureCacheError",
    "code_hash",
    "module_closure",
    "macro_name",
    "format_number",
    "read_numbers",
    "write_numbers",
    "figure_status",
]

NUMBERS_FILE = "numbers.tex"
MANIFEST_FILE = "manifest.json"


class FigureCacheError(ValueError):
    """A cache file of ``geoalign figures`` (``manifest.json``, ``numbers.tex``) is unreadable.

    The message is one line naming the file and how to rebuild it (``--force``).
    """

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path} is corrupt ({problem}); rebuild it with "
                         "`geoalign figures --force` (or make_figures(..., force=True))")
        self.path = path


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
    force : bool
        Set by ``make_figures(force=True)`` (``geoalign figures --force``): a figure that
        keeps results of its own between runs (the ``comparison`` table's stored cells)
        recomputes them.  Not part of the cache key.
    """

    quick: bool = False
    seed: int = 0
    device: str = "cpu"
    force: bool = False

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
    numbers : dict
        Named results the paper quotes, ``{key: value}``.  ``key`` is letters only
        (``"kJl"``, ``"mapFull"``); the runner writes ``\\<Figure><Key>{value}``
        to ``numbers.tex`` (see :func:`macro_name`).  ``value`` is a string (used
        verbatim) or a number (formatted by :func:`format_number`).
    """

    figure: Any = None
    params: dict = dataclasses.field(default_factory=dict)
    table: Any = None
    caption: str = ""
    numbers: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class _Entry:
    name: str
    func: Callable[[FigureContext], FigureOutput]
    kind: str  # "figure" or "table"
    description: str


def _entry_of(func: Any) -> _Entry:
    """The :class:`_Entry` that :func:`figure` attached to a figure function."""
    entry = getattr(func, "__figure_entry__", None)
    if not isinstance(entry, _Entry):
        raise ValueError(f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', func)} is "
                         "listed in FIGURES but not decorated with @figure(name, ...)")
    return entry


#: figure name -> its function, ``"module:function"`` (imported when used, in this order); the
#: function is decorated with :func:`figure`, which gives its kind and description.  A figure
#: module is never skipped: every entry is imported by :func:`load_all`, and a test checks
#: that every ``@figure`` in ``geoalign/figures`` is listed here.
FIGURES = Registry("figure", {
    "fiber_curves": "geoalign.figures.fiber_figs:fiber_curves_figure",
    "robustness": "geoalign.figures.fiber_figs:robustness_figure",
    "dimension": "geoalign.figures.fiber_figs:dimension_figure",
    "decomposition": "geoalign.figures.geometry:decomposition_figure",
    "barycenters": "geoalign.figures.geometry:barycenters_figure",
    "wasserstein_barycenter": "geoalign.figures.transport_figs:wasserstein_barycenter_figure",
    "qsma_training": "geoalign.figures.training_figs:qsma_training_figure",
    "comparison": "geoalign.figures.comparison_figs:comparison_table",
    "semi_paired": "geoalign.figures.regimes_figs:semi_paired_figure",
    "transductive": "geoalign.figures.regimes_figs:transductive_figure",
}, loader=_entry_of)


def figure(name: str, kind: str = "figure", description: str = ""):
    """Decorator declaring a figure (or table) function ``name``.

    A function listed in :data:`FIGURES` (the paper's figures) gets its kind and
    description here; any other is registered under ``name`` (a name taken by
    another function raises ``ValueError``).
    """
    if kind not in ("figure", "table"):
        raise ValueError(f"kind must be 'figure' or 'table', got {kind!r}")

    def register(func: Callable[[FigureContext], FigureOutput]):
        entry = _Entry(name, func, kind, description or (func.__doc__ or "").strip().split("\n")[0])
        func.__figure_entry__ = entry
        if name in FIGURES:
            if FIGURES.target(name) != f"{func.__module__}:{func.__qualname__}":
                raise ValueError(f"figure {name!r} is already registered")
        else:
            FIGURES.register(name, entry)
        return func

    return register


def load_all() -> dict[str, _Entry]:
    """Import every figure module of :data:`FIGURES`; ``{name: entry}`` in registry order."""
    return FIGURES.load_all()


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


@functools.lru_cache(maxsize=None)
def _lazy_exports_table(package: str) -> dict[str, str]:
    """``{name: submodule}`` of a package that re-exports lazily (``_EXPORTS`` in its ``__init__``).

    Such names reach their submodule through :func:`geoalign._lazy.lazy_exports`, not
    through an ``import`` statement, so the closure must follow the table explicitly.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, AttributeError, ValueError):
        return {}
    if spec is None or spec.submodule_search_locations is None or not spec.origin:
        return {}
    tree = ast.parse(Path(spec.origin).read_bytes())
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        if isinstance(target, ast.Name) and target.id == "_EXPORTS" and isinstance(node.value, ast.Dict):
            return {k.value: v.value for k, v in zip(node.value.keys, node.value.values)
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)}
    return {}


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Absolute names of every module an ``import`` anywhere in ``tree`` may load.

    Lazily re-exported names are resolved to the submodule that defines them, and a plain
    ``import pkg`` of a lazy package counts every submodule of its table (``pkg.name``
    attribute access may reach any of them).
    """
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.add(alias.name)
                names.update(f"{alias.name}.{sub}" for sub in _lazy_exports_table(alias.name).values())
        elif isinstance(node, ast.ImportFrom):
            base = ("." * node.level + (node.module or "")) if node.level else node.module
            base = importlib.util.resolve_name(base, package) if node.level else base
            names.add(base)
            table = _lazy_exports_table(base)
            for alias in node.names:
                if alias.name == "*":
                    names.update(f"{base}.{sub}" for sub in table.values())
                    continue
                # ``from pkg import sub`` may import the submodule ``pkg.sub``
                names.add(f"{base}.{alias.name}")
                if alias.name in table:
                    names.add(f"{base}.{table[alias.name]}")
    return names


def _source_file(spec) -> Path | None:
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return None
    path = Path(spec.origin)
    if path.suffix not in (".py", ".pyi"):
        # compiled extension: hash its C source when shipped (the binary differs per build)
        stem = path.name.split(".")[0]
        c_source = path.with_name(stem + ".c")
        return c_source if c_source.exists() else path
    return path


def module_closure(module: str, package: str = "geoalign") -> dict[str, Path]:
    """Source files of ``module`` and of every ``package`` module it imports, transitively.

    Imports are read from the source with :mod:`ast` (also those inside functions, as
    figure functions import lazily), relative imports are resolved, and the parent
    packages of every module are included because importing a module runs their
    ``__init__``.  Names that are not modules (``from .x import func``) are skipped.

    Returns
    -------
    dict
        ``{module name: source path}``, sorted by name.
    """
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or not (name == package or name.startswith(package + ".")):
            continue
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, AttributeError, ValueError):
            spec = None
        path = _source_file(spec)
        if path is None:
            continue
        seen[name] = path
        if path.suffix == ".py":
            tree = ast.parse(path.read_bytes(), filename=str(path))
            todo.extend(_imported_names(tree, name, spec.submodule_search_locations is not None))
    return dict(sorted(seen.items()))


@functools.lru_cache(maxsize=None)
def _code_hash_cached(module: str, package: str, stamp: tuple) -> str:
    digest = hashlib.sha256()
    for name, path in module_closure(module, package).items():
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def code_hash(module: str, package: str = "geoalign") -> str:
    """SHA-256 (16 hex digits) of the sources in :func:`module_closure` of ``module``.

    Part of every figure's cache key: a change to the figure's module or to any
    ``package`` module it imports changes the hash.  Cached per process, keyed on the
    modification times of the files, so repeated calls cost one ``stat`` per file.
    """
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size)
                  for p in module_closure(module, package).values())
    return _code_hash_cached(module, package, stamp)


def figure_status(out_dir: str | Path = "figures", quick: bool = False, seed: int = 0,
                  device: str = "cpu") -> dict[str, str]:
    """``{name: "current" | "stale" | "missing"}`` for every registered figure in ``out_dir``.

    ``current``: the manifest's key matches the key of the present code and settings and the
    files exist; ``stale``: the entry exists but the code, settings or files changed;
    ``missing``: no entry.  Raises :class:`FigureCacheError` for a corrupt manifest.
    """
    load_all()
    out_dir = Path(out_dir)
    manifest = _read_manifest(out_dir / MANIFEST_FILE, force=False)
    ctx = FigureContext(quick=quick, seed=seed, device=device)
    status = {}
    for name, entry in FIGURES.items():
        done = manifest.get(name)
        if done is None:
            status[name] = "missing"
        elif done.get("key") == _key(entry, ctx) and all(p.exists() for p in _outputs(entry, out_dir)):
            status[name] = "current"
        else:
            status[name] = "stale"
    return status


def _key(entry: _Entry, ctx: FigureContext) -> str:
    settings = {k: v for k, v in dataclasses.asdict(ctx).items() if k != "force"}
    blob = json.dumps({"name": entry.name, **settings, "code": code_hash(entry.func.__module__)},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


_KEY_RE = re.compile(r"^[A-Za-z]+$")
_MACRO_RE = re.compile(r"^\\newcommand\{\\([A-Za-z]+)\}\{(.*)\}$")


def macro_name(figure_name: str, key: str) -> str:
    """LaTeX macro (without backslash) for number ``key`` of figure ``figure_name``.

    The figure name in CamelCase without digits or underscores, then ``key`` with its first
    letter capitalised: ``macro_name("dimension", "kJl") == "DimensionKJl"``.

    Raises
    ------
    ValueError
        If ``key`` is not letters only (LaTeX macro names cannot hold digits or ``_``).
    """
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(f"number key of figure {figure_name!r} must be letters only "
                         f"(a LaTeX macro name), got {key!r}")
    words = [w for w in re.split(r"[^A-Za-z]+", figure_name) if w]
    return "".join(w[0].upper() + w[1:] for w in words) + key[0].upper() + key[1:]


def format_number(value: Any, digits: int = 3) -> str:
    """Text of ``value`` for ``numbers.tex``.

    Strings are used verbatim; integers (and bools) as integers; floats with ``digits``
    significant digits, without exponent for magnitudes in ``[1e-4, 1e6)`` and as
    ``\\ensuremath{m\\times 10^{e}}`` otherwise.  A leading minus sign becomes
    ``\\ensuremath{-}`` so that the macro reads correctly in text and in maths.

    Raises
    ------
    ValueError
        For NaN or infinite values (a result the paper cannot quote).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int)) or (hasattr(value, "dtype") and value.dtype.kind in "biu"):
        text = str(int(value))
    else:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value} to {NUMBERS_FILE}: not a finite number")
        if value == 0 or 1e-4 <= abs(value) < 1e6:
            decimals = max(digits - 1 - math.floor(math.log10(abs(value))), 0) if value else digits - 1
            text = f"{value:.{decimals}f}"
        else:
            mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
            return f"\\ensuremath{{{mantissa}\\times 10^{{{int(exponent)}}}}}"
    return text.replace("-", "\\ensuremath{-}", 1) if text.startswith("-") else text


def write_numbers(path: str | Path, manifest: dict[str, dict]) -> Path:
    """Write ``numbers.tex`` from the ``numbers`` recorded in ``manifest`` (atomically).

    One ``\\newcommand{\\Macro}{value}`` per number, grouped by figure in manifest order.

    Raises
    ------
    ValueError
        If two figures define the same macro.
    """
    lines = ["% Generated by `geoalign figures` from manifest.json; do not edit.",
             "% One macro per number that the paper quotes."]
    owner: dict[str, str] = {}
    for name, entry in manifest.items():
        numbers = entry.get("numbers") or {}
        if numbers:
            lines.append(f"% {name}")
        for macro, value in numbers.items():
            if macro in owner:
                raise ValueError(f"figures {owner[macro]!r} and {name!r} both define \\{macro}")
            owner[macro] = name
            lines.append(f"\\newcommand{{\\{macro}}}{{{value}}}")
    return atomic_write_text(path, "\n".join(lines) + "\n")


def read_numbers(path: str | Path) -> dict[str, str]:
    """Macros of a ``numbers.tex`` written by :func:`write_numbers`: ``{macro: value}``.

    Raises
    ------
    FigureCacheError
        If a line is neither a comment nor a ``\\newcommand`` of that form.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FigureCacheError(path, f"not UTF-8 text: {exc.reason}") from None
    out: dict[str, str] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("%"):
            continue
        match = _MACRO_RE.match(line)
        if match is None:
            raise FigureCacheError(path, f"line {i} is not a \\newcommand: {line[:40]!r}")
        out[match.group(1)] = match.group(2)
    return out


def _read_manifest(path: Path, force: bool) -> dict[str, dict]:
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or not all(isinstance(v, dict) for v in manifest.values()):
            raise ValueError("expected an object of per-figure objects")
    except (ValueError, UnicodeDecodeError) as exc:
        if force:
            return {}
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FigureCacheError(path, problem) from None
    return manifest


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
        ``<name>.csv``/``.tex`` (tables), ``manifest.json`` and ``numbers.tex``.
    only : list of str, optional
        Names to (re)generate; default all registered figures.
    quick : bool
        Small setting (seconds per figure instead of minutes).
    force : bool
        Regenerate even when the manifest says the outputs are current; also
        replaces a corrupt ``manifest.json`` or ``numbers.tex``.

    Raises
    ------
    FigureCacheError
        If ``manifest.json`` or ``numbers.tex`` in ``out_dir`` cannot be read and
        ``force`` is false (one line naming the file and ``--force``).
    """
    load_all()
    names = list(FIGURES) if not only else list(only)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure name(s) {unknown}; available: {sorted(FIGURES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / MANIFEST_FILE
    numbers_path = out_dir / NUMBERS_FILE
    manifest = _read_manifest(manifest_path, force)
    if numbers_path.exists() and not force:
        read_numbers(numbers_path)  # a corrupt file is an error, not something to overwrite silently
    ctx = FigureContext(quick=quick, seed=seed, device=device, force=force)
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
        numbers = {macro_name(name, k): format_number(v) for k, v in result.numbers.items()}
        paths = _save(entry, result, out_dir)
        manifest[name] = {
            "key": key,
            "kind": entry.kind,
            "description": entry.description,
            "caption": result.caption,
            "files": [p.name for p in paths],
            "params": result.params,
            "numbers": numbers,
            "quick": quick,
            "seed": seed,
            "device": device,
            "versions": versions,
            "seconds": round(time.perf_counter() - t0, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_json(manifest_path, manifest)  # after every figure: resumable
        write_numbers(numbers_path, manifest)
    if not numbers_path.exists() or read_numbers(numbers_path) != {
            m: v for e in manifest.values() for m, v in (e.get("numbers") or {}).items()}:
        write_numbers(numbers_path, manifest)
    return manifest
