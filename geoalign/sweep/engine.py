"""Parameter sweeps at scale: a function plus a grid, run serially, on local
processes or on a Dask cluster, resumable cell by cell.

A *study* is a function ``func(**params, seed=...) -> metrics`` and a
:class:`Grid` of parameter values.  Every *cell* (one combination of parameter
values and one seed) is run once; its metrics are cached under a hash of

.. math::

    \\mathrm{key} = \\operatorname{sha256}\\bigl(\\text{function identity},
    \\ \\text{params},\\ \\text{seed}\\bigr)

in a cache folder, written atomically as soon as the cell finishes.  Re-running
a sweep skips every completed cell, so killing a worker or the whole run loses
at most the cells that were in flight.  Results are a tidy
:class:`pandas.DataFrame` (one row per cell and metric) saved with the
configuration, package versions and timing.

Executors
---------
``"serial"``
    in this process, one cell after another (Ctrl-C stops after caching what
    finished; :class:`SweepInterrupted` carries the partial result).
``"processes"``
    a local pool of spawned processes (``n_workers``).
``"dask"``
    a ``dask.distributed`` cluster: ``scheduler="tcp://host:port"`` connects to
    a running one (short connect timeout), an existing ``client`` is reused, and
    otherwise a :class:`~distributed.LocalCluster` with ``n_workers`` processes
    (one thread each) is started for the run.

The same cluster machinery splits a large ε-join into row blocks:
:func:`distributed_fiber_product`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib
import inspect
import itertools
import json
import math
import numbers
import os
import pickle
import platform
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .._io import atomic_path, atomic_write_json, read_config_file
from .._registry import resolve_target
from .._validation import check_array, check_choice, check_int, check_nonnegative_scalar
from .._warnings import deprecated_aliases

__all__ = [
    "Grid",
    "SweepSummary",
    "SweepResult",
    "SweepInterrupted",
    "run_sweep",
    "cell_key",
    "connect_client",
    "distributed_fiber_product",
    "BlockedFiberProduct",
]

# moved out of this module (issue 13): the study registry and the built-in studies to
# geoalign.studies, the ``geoalign sweep`` command line to geoalign.cli.sweep
_MOVED = {**{name: "geoalign.studies" for name in ("Study", "register_study", "get_study", "list_studies",
                                                   "run_study", "concentration_study")},
          **{name: "geoalign.cli.sweep" for name in ("configure_parser", "run_cli")}}
__getattr__ = deprecated_aliases("geoalign.sweep", {
    name: (f"{module}.{name}", functools.partial(resolve_target, f"{module}:{name}"))
    for name, module in _MOVED.items()})

EXECUTORS = ("serial", "processes", "dask")
# No dashboard; the scheduler's small HTTP server (health, metrics) still starts, so give it a
# free port: the default 8787 clashes with any other cluster on the machine ("Port 8787 is
# already in use" warning, an error under -W error).
LOCAL_CLUSTER_QUIET = {"dashboard_address": None, "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"}}
# Column names of the tidy frame; a grid axis may not reuse them.
RESERVED_NAMES = frozenset({"seed", "metric", "value", "status", "error", "traceback", "elapsed_s",
                            "cached", "key", "row", "started_at", "host", "pid"})
_CACHE_FORMAT = 1


# --------------------------------------------------------------------------- grid
def _plain_value(value: Any, where: str) -> Any:
    """Return ``value`` as a JSON scalar (numpy scalars unwrapped) or raise."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} must be finite, got {value!r}")
        return value
    raise TypeError(f"{where} must be a number, string, bool or None (a JSON scalar), "
                    f"got {value!r} ({type(value).__name__})")


def _axis_values(name: str, values: Any, kind: str) -> tuple:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{kind} axis names must be Python identifiers, got {name!r}")
    if name in RESERVED_NAMES:
        raise ValueError(f"{kind} axis {name!r} uses a reserved column name; reserved: "
                         f"{', '.join(sorted(RESERVED_NAMES))} (seeds go in Grid(seeds=...))")
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{kind} axis {name!r} must be a list of values, got {values!r}")
    values = tuple(_plain_value(v, f"{kind} axis {name!r} value") for v in values)
    if not values:
        raise ValueError(f"{kind} axis {name!r} is empty: an empty axis gives an empty grid")
    return values


@dataclasses.dataclass(frozen=True)
class Grid:
    """Cells of a sweep: a Cartesian product of axes, zipped axes and seeds.

    The cells are

    .. math::

        \\{(p, z_j, s) : p \\in \\textstyle\\prod_a P_a,\\ j < m,\\ s \\in S\\},

    i.e. every combination of the ``product`` axes, times the ``m`` aligned
    entries of the ``zipped`` axes (all of length ``m``), times every seed.

    Parameters
    ----------
    product : mapping of str to list, optional
        Axes combined in a Cartesian product.
    zipped : mapping of str to list, optional
        Axes of equal length varied together (``n[j]`` goes with ``batch[j]``).
    seeds : list of int, default (0,)
        Seeds; each parameter combination runs once per seed.

    Examples
    --------
    >>> g = Grid(product={"eps": [0.1, 0.2], "dim": [8, 16]},
    ...          zipped={"n": [100, 200], "batch": [10, 20]}, seeds=[0, 1, 2])
    >>> len(g)
    24
    """

    product: Mapping[str, Sequence[Any]] = dataclasses.field(default_factory=dict)
    zipped: Mapping[str, Sequence[Any]] = dataclasses.field(default_factory=dict)
    seeds: Sequence[int] = (0,)

    def __post_init__(self) -> None:
        if not isinstance(self.product, Mapping):
            raise TypeError(f"product must be a mapping name -> list of values, got {type(self.product).__name__}")
        if not isinstance(self.zipped, Mapping):
            raise TypeError(f"zipped must be a mapping name -> list of values, got {type(self.zipped).__name__}")
        product = {k: _axis_values(k, v, "product") for k, v in self.product.items()}
        zipped = {k: _axis_values(k, v, "zipped") for k, v in self.zipped.items()}
        both = sorted(set(product) & set(zipped))
        if both:
            raise ValueError(f"axes {both} appear in both product and zipped")
        lengths = {k: len(v) for k, v in zipped.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError("zipped axes must have the same length, got "
                             + ", ".join(f"{k}: {n}" for k, n in lengths.items()))
        if isinstance(self.seeds, (str, bytes)) or not isinstance(self.seeds, Iterable):
            raise TypeError(f"seeds must be a list of integers, got {self.seeds!r}")
        seeds = tuple(check_int(s.item() if isinstance(s, np.generic) else s, "seeds entry")
                      for s in self.seeds)
        if not seeds:
            raise ValueError("seeds is empty: give at least one seed (default (0,))")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {list(seeds)}")
        object.__setattr__(self, "product", product)
        object.__setattr__(self, "zipped", zipped)
        object.__setattr__(self, "seeds", seeds)

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names: product axes, then zipped axes."""
        return (*self.product, *self.zipped)

    def __len__(self) -> int:
        n_zip = len(next(iter(self.zipped.values()))) if self.zipped else 1
        return math.prod(len(v) for v in self.product.values()) * n_zip * len(self.seeds)

    def params(self) -> Iterator[dict[str, Any]]:
        """Parameter combinations (without seeds), product axes varying slowest."""
        zipped_rows = (list(zip(*self.zipped.values())) if self.zipped else [()])
        for combo in itertools.product(*self.product.values()):
            for zrow in zipped_rows:
                yield {**dict(zip(self.product, combo)), **dict(zip(self.zipped, zrow))}

    def cells(self) -> Iterator[tuple[dict[str, Any], int]]:
        """``(params, seed)`` for every cell."""
        for p in self.params():
            for seed in self.seeds:
                yield p, seed

    def to_dict(self) -> dict:
        """JSON-ready form, inverse of :meth:`from_dict`."""
        return {"product": {k: list(v) for k, v in self.product.items()},
                "zipped": {k: list(v) for k, v in self.zipped.items()},
                "seeds": list(self.seeds)}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> "Grid":
        """Build a grid from ``{"product": {...}, "zipped": {...}, "seeds": [...]}``."""
        if not isinstance(spec, Mapping):
            raise TypeError(f"grid spec must be a mapping, got {type(spec).__name__}")
        unknown = sorted(set(spec) - {"product", "zipped", "seeds"})
        if unknown:
            raise ValueError(f"unknown grid keys {unknown}; expected 'product', 'zipped', 'seeds'")
        return cls(product=spec.get("product", {}), zipped=spec.get("zipped", {}),
                   seeds=spec.get("seeds", (0,)))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Grid":
        """Read a grid from a ``.json`` or ``.toml`` file (same keys as :meth:`from_dict`)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"grid file {str(path)!r} does not exist")
        if path.suffix.lower() not in (".json", ".toml"):
            raise ValueError(f"grid file must end in .json or .toml, got {path.name!r}")
        spec = read_config_file(path, "grid file")
        return cls.from_dict(spec)


# --------------------------------------------------------------------------- identity and keys
def _function_identity(func: Callable, version: str | None) -> str:
    """``module:qualname`` plus a fingerprint: ``version`` if given, else the source code.

    Hashing the source (as joblib.Memory does) means an edited function never
    reuses stale cached cells.  The whole defining module is hashed, so editing
    a helper next to the function also invalidates its cells; for functions
    defined inside geoalign (the built-in studies) the package version is
    included too.  Edits to *other* modules the function calls are not seen:
    pass ``version=`` (or clear the cache) when those change.
    """
    extra = ""
    if isinstance(func, functools.partial):
        extra = "|partial:" + repr((func.args, sorted(func.keywords.items())))
        func = func.func
    name = f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', type(func).__qualname__)}"
    if version is not None:
        fingerprint = f"version={version}"
    else:
        try:
            module = inspect.getmodule(func)
            source = inspect.getsource(module if module is not None else func)
            if name.startswith("geoalign."):
                from .. import __version__
                source += f"\ngeoalign=={__version__}"
            fingerprint = hashlib.sha256(source.encode()).hexdigest()[:16]
        except (OSError, TypeError):
            code = getattr(func, "__code__", None)
            fingerprint = hashlib.sha256(code.co_code).hexdigest()[:16] if code is not None else "opaque"
    return f"{name}@{fingerprint}{extra}"


def cell_key(identity: str, params: Mapping[str, Any], seed: int) -> str:
    """Cache key of one cell: SHA-256 of the canonical JSON of (function, params, seed)."""
    blob = json.dumps({"function": identity, "params": dict(params), "seed": int(seed)},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _check_signature(func: Callable, grid: Grid) -> bool:
    """Raise if ``func`` cannot take the grid's parameters; return whether it takes ``seed``."""
    if not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}")
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return True  # builtins without a signature: pass everything and let the cell report
    params = sig.parameters
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    keyword_ok = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    name = getattr(func, "__qualname__", repr(func))
    if not var_kw:
        unknown = [n for n in grid.names if n not in keyword_ok]
        if unknown:
            raise ValueError(f"grid parameters {unknown} are not accepted by {name}{sig}; "
                             f"accepted: {sorted(keyword_ok - {'seed'})}")
    takes_seed = var_kw or "seed" in keyword_ok
    required = [n for n, p in params.items()
                if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and n not in grid.names and not (n == "seed" and takes_seed)]
    if required:
        raise ValueError(f"{name}{sig} requires {required}, which the grid does not give")
    if not takes_seed and len(grid.seeds) > 1:
        raise ValueError(f"{name} takes no 'seed' argument but the grid has {len(grid.seeds)} "
                         "seeds: the repeats would be identical; add a seed parameter or use one seed")
    return takes_seed


# --------------------------------------------------------------------------- one cell
def _as_metric(value: Any, name: str) -> float:
    if hasattr(value, "detach"):  # torch scalar tensor, without importing torch here
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"metric {name!r} must be a scalar, got an array of shape {value.shape}")
        value = value.reshape(()).item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"metric {name!r} must be a real number, got {value!r} ({type(value).__name__}); "
                    "non-numeric entries of a row must be declared in labels=")


def _normalise_output(out: Any, labels: Sequence[str]) -> list[dict]:
    """Turn a cell's return value into ``[{"labels": {...}, "metrics": {...}}, ...]``."""
    if isinstance(out, Mapping):
        rows, multi = [out], False
    elif isinstance(out, (list, tuple)) and all(isinstance(r, Mapping) for r in out):
        rows, multi = list(out), True
    else:
        raise TypeError("a sweep function must return a dict of metrics or a list of dicts, "
                        f"got {type(out).__name__}")
    result = []
    for i, row in enumerate(rows):
        missing = [lab for lab in labels if lab not in row]
        if missing:
            raise ValueError(f"row {i} lacks the label(s) {missing}")
        lab = {k: _plain_value(row[k], f"label {k!r}") for k in labels}
        metrics = {str(k): _as_metric(v, str(k)) for k, v in row.items() if k not in labels}
        if not metrics:
            raise ValueError(f"row {i} holds no metric")
        result.append({"row": i if multi else None, "labels": lab, "metrics": metrics})
    return result


def _cache_file(cache_dir: str | os.PathLike, key: str) -> Path:
    return Path(cache_dir) / f"{key}.json"


def _run_cell(func: Any, params: dict, seed: int, takes_seed: bool, key: str, identity: str,
              labels: tuple, cache_dir: str | None, threads: int | None) -> dict:
    """Run one cell; catch its exceptions; write its record atomically to the cache."""
    if cache_dir is not None:
        # a completed record is already there when Dask recomputes a result that was lost with a
        # killed worker before the client fetched it, or when two runs share the cache
        previous = _load_cached(cache_dir, key, identity)
        if previous is not None and previous["status"] == "done":
            return {**previous, "cache_written": True}
    if isinstance(func, bytes):  # pre-pickled for process pools (cloudpickle when available)
        func = pickle.loads(func)
    started = time.time()
    t0 = time.perf_counter()
    record: dict[str, Any] = {"format": _CACHE_FORMAT, "key": key, "function": identity,
                              "params": params, "seed": seed, "host": socket.gethostname(),
                              "pid": os.getpid(), "started_at": started}
    limiter: Any = contextlib.nullcontext()
    if threads is not None:
        try:
            from threadpoolctl import threadpool_limits

            limiter = threadpool_limits(limits=threads)
        except ImportError:  # the cell then uses the BLAS default
            pass
    try:
        with limiter:
            out = func(**params, seed=seed) if takes_seed else func(**params)
        record["rows"] = _normalise_output(out, labels)
        record["status"] = "done"
    except Exception as exc:  # noqa: BLE001 - a failing cell is data, not a crash
        record.update(status="failed", rows=[], error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc())
    record["elapsed_s"] = time.perf_counter() - t0
    if cache_dir is not None:
        try:
            atomic_write_json(_cache_file(cache_dir, key), record)
            record["cache_written"] = True
        except OSError as exc:  # e.g. a remote worker without the shared folder: the client writes
            record["cache_written"] = False
            record["cache_error"] = str(exc)
    return record


def _load_cached(cache_dir: str | None, key: str, identity: str) -> dict | None:
    if cache_dir is None:
        return None
    path = _cache_file(cache_dir, key)
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if record.get("format") != _CACHE_FORMAT or record.get("function") != identity:
        return None
    return record


# --------------------------------------------------------------------------- results
@dataclasses.dataclass
class SweepSummary:
    """Counts and timing of one sweep run.

    Attributes
    ----------
    total : int
        Cells in the grid.
    done : int
        Cells computed (successfully) in this run.
    cached : int
        Cells skipped because a completed result was in the cache.
    failed : int
        Cells that raised (or whose worker died); recorded and not cached as done.
    not_run : int
        Cells never started (the run was interrupted).
    elapsed_s : float
        Wall-clock time of the run.
    executor : str
    errors : list of (params, seed, error)
    """

    total: int
    done: int
    cached: int
    failed: int
    not_run: int
    elapsed_s: float
    executor: str
    errors: list = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"sweep: {self.total} cells - {self.done} done, {self.cached} cached, "
                 f"{self.failed} failed" + (f", {self.not_run} not run" if self.not_run else "")
                 + f" ({self.elapsed_s:.2f} s, executor={self.executor})"]
        for params, seed, error in self.errors[:20]:
            lines.append(f"  FAILED {params} seed={seed}: {error}")
        if len(self.errors) > 20:
            lines.append(f"  ... and {len(self.errors) - 20} more failures (see SweepResult.failed)")
        return "\n".join(lines)


@dataclasses.dataclass
class SweepResult:
    """Outcome of :func:`run_sweep`.

    Attributes
    ----------
    frame : pandas.DataFrame
        Tidy results: one row per cell and metric; columns = parameters, ``seed``,
        [labels, ``row``], ``metric``, ``value``, ``status``, ``cached``,
        ``elapsed_s``, ``error``, ``key``.  Failed cells give one row with
        ``metric=None`` and ``value=NaN``.
    summary : SweepSummary
    failed : pandas.DataFrame
        One row per failed cell: parameters, ``seed``, ``error``, ``traceback``, ``key``.
    config : dict
        What was saved next to the results (grid, function, versions, timing).
    path : pathlib.Path or None
        The results file, when ``out`` was given.
    """

    frame: Any
    summary: SweepSummary
    failed: Any
    config: dict
    path: Path | None = None

    def wide(self):
        """Metrics as columns (one row per cell and row), for plotting."""
        ok = self.frame[self.frame["status"] == "done"]
        index = [c for c in ok.columns if c not in ("metric", "value", "status", "cached",
                                                    "elapsed_s", "error", "key")]
        # set_index/unstack keeps parameter values that are None (pivot_table would drop them)
        wide = ok.set_index([*index, "metric"])["value"].unstack("metric").reset_index()
        wide.columns.name = None
        return wide


class SweepInterrupted(KeyboardInterrupt):
    """Raised when a sweep is interrupted (Ctrl-C); ``.result`` holds what finished.

    Every cell in ``.result`` with status ``"done"`` is in the cache, so running
    the same sweep again resumes where this one stopped.
    """

    def __init__(self, result: SweepResult):
        super().__init__(f"sweep interrupted: {result.summary.done + result.summary.cached} of "
                         f"{result.summary.total} cells complete and cached; rerun to resume")
        self.result = result


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for mod in ("geoalign", "numpy", "scipy", "pandas", "pyarrow", "dask", "distributed", "torch"):
        module = sys.modules.get(mod)
        if module is None and mod in ("geoalign", "numpy", "pandas"):
            module = importlib.import_module(mod)
        if module is not None:
            out[mod] = str(getattr(module, "__version__", "unknown"))
    return out


def _build_frame(grid: Grid, cells: list, records: dict, cached_keys: set, labels: Sequence[str]):
    import pandas as pd

    any_multi = any(r.get("status") == "done" and r["rows"] and r["rows"][0]["row"] is not None
                    for r in records.values())
    rows = []
    for params, seed, key in cells:
        rec = records.get(key)
        if rec is None:
            continue
        base = {**params, "seed": seed}
        common = {"status": rec["status"], "cached": key in cached_keys,
                  "elapsed_s": float(rec.get("elapsed_s", float("nan"))),
                  "error": rec.get("error"), "key": key}
        if rec["status"] == "done":
            for r in rec["rows"]:
                extra = dict(r["labels"])
                if any_multi:
                    extra["row"] = r["row"] if r["row"] is not None else 0
                for metric, value in r["metrics"].items():
                    rows.append({**base, **extra, "metric": metric, "value": float(value), **common})
        else:
            extra = {lab: None for lab in labels}
            if any_multi:
                extra["row"] = None
            rows.append({**base, **extra, "metric": None, "value": float("nan"), **common})
    columns = [*grid.names, "seed", *labels, *(["row"] if any_multi else []), "metric", "value",
               "status", "cached", "elapsed_s", "error", "key"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["value"] = frame["value"].astype("float64")
    failed = pd.DataFrame(
        [{**params, "seed": seed, "error": records[key].get("error"),
          "traceback": records[key].get("traceback"), "key": key}
         for params, seed, key in cells if key in records and records[key]["status"] != "done"],
        columns=[*grid.names, "seed", "error", "traceback", "key"])
    return frame, failed


def _save(frame, config: dict, out: Path) -> Path:
    """Save the frame (parquet via pyarrow, else CSV) and the configuration, atomically."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        import pyarrow  # noqa: F401

        path = out / "results.parquet"
        table = frame.copy()
        # parquet needs one type per column: grid values may mix ints, floats and strings
        for col in table.columns:
            if table[col].dtype == object and col not in ("error", "key", "metric", "status"):
                kinds = {type(v) for v in table[col] if v is not None}
                if len(kinds) > 1:
                    table[col] = table[col].map(lambda v: None if v is None else str(v))
        with atomic_path(path) as tmp:
            table.to_parquet(tmp, index=False)
    except ImportError:
        path = out / "results.csv"
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
    config = {**config, "results_file": path.name}
    atomic_write_json(out / "sweep.json", config)
    return path


# --------------------------------------------------------------------------- executors
def _progress(total: int, initial: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="cell",
                dynamic_ncols=True, leave=True)


def _run_serial(todo, run_args, on_record):
    for key, params, seed in todo:
        on_record(key, _run_cell(run_args["func"], params, seed, *run_args["rest"](key)))


def _die_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this worker when the sweep process dies, even by ``kill -9``.

    On Linux the kernel sends SIGKILL to the worker when its parent exits
    (``prctl(PR_SET_PDEATHSIG)``); a parent that died before the call is
    detected by the parent pid.  Elsewhere the pool's own shutdown applies.
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
            return
    if os.getppid() != parent_pid:  # the parent is already gone: nothing to work for
        os._exit(1)


def _run_processes(todo, run_args, on_record, n_workers: int):
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    func = run_args["func"]
    try:
        import cloudpickle

        payload = cloudpickle.dumps(func)
    except ImportError:
        payload = pickle.dumps(func)
    except Exception as exc:
        raise TypeError(f"func cannot be sent to worker processes ({exc}); "
                        "define it at module top level") from exc
    ctx = multiprocessing.get_context("spawn")  # fork is unsafe with threads (tqdm, torch, dask)
    queue = list(todo)[::-1]
    while queue:
        lost = []
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx,
                                 initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
            running: dict = {}
            try:
                while queue or running:
                    # submit no more than there are workers, so "in flight" means "running"
                    while queue and len(running) < n_workers:
                        key, params, seed = queue.pop()
                        fut = pool.submit(_run_cell, payload, params, seed, *run_args["rest"](key))
                        running[fut] = (key, params, seed)
                    finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for fut in finished:
                        record = fut.result()  # raises BrokenProcessPool: the cell stays in running
                        key = running.pop(fut)[0]
                        on_record(key, record)
            except BrokenProcessPool as exc:
                lost = list(running.values())
                reason = f"BrokenProcessPool: a worker process died while this cell was in flight ({exc})"
            except BaseException:
                for fut in running:
                    fut.cancel()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        for key, params, seed in lost:  # record the lost cells; the pool restarts for the rest
            on_record(key, {"status": "failed", "rows": [], "error": reason, "traceback": "",
                            "params": params, "seed": seed, "key": key, "elapsed_s": float("nan")})


def connect_client(scheduler: Any = None, n_workers: int | None = None, timeout: float = 5.0):
    """Return ``(client, close)`` for a scheduler address, an existing client or a new LocalCluster.

    Parameters
    ----------
    scheduler : str, distributed.Client or None
        ``"tcp://host:port"`` to connect (failing after ``timeout`` seconds with
        a :class:`ConnectionError`), a client to reuse, or ``None`` to start a
        :class:`~distributed.LocalCluster` of ``n_workers`` processes with one
        thread each and no dashboard.
    n_workers : int, optional
        Workers of the LocalCluster (default: CPU count).
    timeout : float
        Seconds to wait for a remote scheduler.

    Returns
    -------
    client : distributed.Client
    close : callable
        Releases what this call created (nothing for a client you passed).
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ImportError("the dask executor needs dask.distributed: "
                          "pip install 'geoalign[distributed]'") from exc
    if isinstance(scheduler, Client):
        return scheduler, lambda: None
    if scheduler is not None:
        if not isinstance(scheduler, str):
            raise TypeError(f"scheduler must be an address like 'tcp://host:8786' or a Client, "
                            f"got {type(scheduler).__name__}")
        timeout = check_nonnegative_scalar(timeout, "connect_timeout")
        try:
            client = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"could not reach the Dask scheduler at {scheduler!r} within "
                                  f"{timeout:g} s ({type(exc).__name__}: {exc}); is "
                                  "'dask scheduler' running there?") from exc
        return client, client.close
    n = check_int(n_workers if n_workers is not None else (os.cpu_count() or 1), "n_workers", minimum=1)
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           **LOCAL_CLUSTER_QUIET)
    client = Client(cluster, set_as_default=False)

    def close() -> None:
        client.close()
        cluster.close()

    return client, close


def _run_dask(todo, run_args, on_record, client, window: int):
    from distributed import as_completed

    func = run_args["func"]
    queue = list(todo)[::-1]
    meta: dict = {}
    # results are fetched concurrently in the background (a blocking .result() per cell costs a
    # round trip each); errors come back as exception objects
    ac = as_completed(loop=client.loop, with_results=True, raise_errors=False)

    def submit(n: int) -> None:
        # one client.map per batch: far cheaper than a client.submit per cell
        batch = [queue.pop() for _ in range(min(n, len(queue)))]
        if not batch:
            return
        rest = [run_args["rest"](key) for key, _, _ in batch]
        futures = client.map(_run_cell, [func] * len(batch), [p for _, p, _ in batch],
                             [s for _, _, s in batch], *map(list, zip(*rest)),
                             key=[f"sweep-cell-{key}" for key, _, _ in batch], pure=False)
        for fut, cell in zip(futures, batch):
            meta[fut.key] = cell
        ac.update(futures)

    try:
        submit(window)
        for batch in ac.batches():
            for fut, record in batch:
                key, params, seed = meta.pop(fut.key)
                if fut.status != "finished" or not isinstance(record, dict):
                    # KilledWorker, CancelledError...: an exception or a (type, exception, tb) tuple
                    exc = record[1] if isinstance(record, tuple) and len(record) == 3 else record
                    tb = ("".join(traceback.format_exception(exc)) if isinstance(exc, BaseException)
                          else "")
                    record = {"status": "failed", "rows": [], "traceback": tb,
                              "error": f"{type(exc).__name__}: {exc}", "params": params,
                              "seed": seed, "key": key, "elapsed_s": float("nan")}
                fut.release()
                on_record(key, record)
            if queue and len(meta) <= window // 2:
                submit(window - len(meta))
    except BaseException:
        client.cancel(list(ac.futures))
        raise


# --------------------------------------------------------------------------- the sweep
def run_sweep(func: Callable, grid: Grid | Mapping, *, executor: str | None = None,
              n_workers: int | None = None, scheduler: Any = None, out: str | os.PathLike | None = None,
              cache_dir: str | os.PathLike | None = None, name: str | None = None,
              version: str | None = None, labels: Sequence[str] = (),
              threads_per_cell: int | None = None, retry_failed: bool = True,
              progress: bool = True, verbose: bool = True, connect_timeout: float = 5.0,
              max_in_flight: int | None = None) -> SweepResult:
    """Run ``func`` on every cell of ``grid`` and collect the metrics in a tidy frame.

    Each cell calls ``func(**params, seed=seed)`` (``seed`` only if ``func``
    takes it) and expects a dict ``{metric: number}`` or a list of such dicts
    (several rows; entries named in ``labels`` become columns instead of metrics).

    Parameters
    ----------
    func : callable
        The study.  For ``"processes"`` and ``"dask"`` it must be importable
        by the workers (module top level) or picklable with cloudpickle.
    grid : Grid or mapping
        The cells (a mapping is passed to :meth:`Grid.from_dict`).
    executor : {"serial", "processes", "dask"}, optional
        Default: ``"dask"`` when ``scheduler`` is given, else ``"serial"``.
    n_workers : int, optional
        Processes of the local pool or of the LocalCluster (default: CPU count).
    scheduler : str or distributed.Client, optional
        ``"tcp://host:port"`` of a running Dask scheduler, or a client.
    out : path, optional
        Folder for ``results.parquet`` (``results.csv`` without pyarrow),
        ``sweep.json`` (grid, function, versions, timing, summary) and, unless
        ``cache_dir`` is given, the cell cache ``out/cache``.
    cache_dir : path, optional
        Cell cache; completed cells found here are not recomputed.  Without
        ``out`` or ``cache_dir`` nothing is cached.  For a remote cluster the
        folder should be shared; otherwise the client writes each record.
    name : str, optional
        Study name recorded in the configuration.
    version : str, optional
        Fingerprint of ``func`` in the cache key (default: a hash of its source,
        so an edited function recomputes).
    labels : sequence of str
        Keys of returned rows that are labels (columns), not metrics.
    threads_per_cell : int, optional
        BLAS/OpenMP threads per cell (threadpoolctl).  Default: 1 for the
        parallel executors, unlimited for ``"serial"``.
    retry_failed : bool
        Re-run cells whose cached record is a failure (default) or keep them.
    progress, verbose : bool
        tqdm progress bar over cells; print the summary at the end.
    connect_timeout : float
        Seconds to wait for a remote scheduler before a :class:`ConnectionError`.
    max_in_flight : int, optional
        Cells submitted to Dask at once (default max(256, 16 per worker thread)), which
        keeps the scheduler's memory bounded for very large grids.

    Returns
    -------
    SweepResult

    Raises
    ------
    SweepInterrupted
        On Ctrl-C; completed cells are cached and ``.result`` holds them.
    """
    t_start = time.perf_counter()
    started_at = time.time()
    if not isinstance(grid, Grid):
        grid = Grid.from_dict(grid)
    if executor is None:
        executor = "dask" if scheduler is not None else "serial"
    check_choice(executor, "executor", EXECUTORS)
    if scheduler is not None and executor != "dask":
        raise ValueError(f"scheduler= is only used by executor='dask', got executor={executor!r}")
    if n_workers is not None:
        n_workers = check_int(n_workers, "n_workers", minimum=1)
    if threads_per_cell is not None:
        threads_per_cell = check_int(threads_per_cell, "threads_per_cell", minimum=1)
    elif executor != "serial":
        threads_per_cell = 1
    if isinstance(labels, str):
        labels = (labels,)
    labels = tuple(labels)
    clash = sorted(set(labels) & (set(grid.names) | RESERVED_NAMES))
    if clash:
        raise ValueError(f"labels {clash} clash with grid parameters or reserved column names")
    takes_seed = _check_signature(func, grid)
    identity = _function_identity(func, version)
    out_path = Path(out) if out is not None else None
    if cache_dir is None and out_path is not None:
        cache_dir = out_path / "cache"
    cache = str(cache_dir) if cache_dir is not None else None
    if cache is not None:
        Path(cache).mkdir(parents=True, exist_ok=True)

    cells = [(params, seed, cell_key(identity, params, seed)) for params, seed in grid.cells()]
    records: dict[str, dict] = {}
    cached_keys: set[str] = set()
    todo = []
    for params, seed, key in cells:
        rec = _load_cached(cache, key, identity)
        if rec is not None and (rec["status"] == "done" or not retry_failed):
            records[key] = rec
            cached_keys.add(key)
        else:
            todo.append((key, params, seed))

    bar = _progress(len(cells), len(cached_keys), progress, name or getattr(func, "__name__", "sweep"))

    def on_record(key: str, record: dict) -> None:
        if "format" not in record and cache is not None:
            # the worker died after finishing the cell but before reporting it: the cache has it
            saved = _load_cached(cache, key, identity)
            if saved is not None and saved["status"] == "done":
                record = {**saved, "cache_written": True}
        if cache is not None and not record.get("cache_written", False) and "format" in record:
            atomic_write_json(_cache_file(cache, key), record)  # worker could not write it
        records[key] = record
        bar.update(1)
        if record["status"] != "done":
            bar.set_postfix_str(f"failed: {sum(r['status'] != 'done' for r in records.values())}")

    run_args = {"func": func,
                "rest": lambda key: (takes_seed, key, identity, labels, cache, threads_per_cell)}
    client_info = None
    interrupted = False
    try:
        if todo:
            if executor == "serial":
                _run_serial(todo, run_args, on_record)
            elif executor == "processes":
                _run_processes(todo, run_args, on_record, n_workers or os.cpu_count() or 1)
            else:
                client, close = connect_client(scheduler, n_workers, connect_timeout)
                try:
                    client_info = {"scheduler": client.scheduler.address,
                                   "workers": len(client.scheduler_info(n_workers=-1)["workers"])}
                    threads = sum(client.nthreads().values()) or 1
                    window = max_in_flight or max(16 * threads, 256)
                    _run_dask(todo, run_args, on_record, client, check_int(window, "max_in_flight", minimum=1))
                finally:
                    close()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()

    frame, failed = _build_frame(grid, cells, records, cached_keys, labels)
    statuses = [records[k]["status"] for _, _, k in cells if k in records]
    new_done = sum(1 for _, _, k in cells if k in records and k not in cached_keys
                   and records[k]["status"] == "done")
    errors = [(p, s, records[k].get("error")) for p, s, k in cells
              if k in records and records[k]["status"] != "done"]
    summary = SweepSummary(total=len(cells), done=new_done, cached=len(cached_keys),
                           failed=sum(st != "done" for st in statuses),
                           not_run=len(cells) - len(statuses),
                           elapsed_s=time.perf_counter() - t_start, executor=executor, errors=errors)
    config = {
        "name": name, "function": identity, "grid": grid.to_dict(), "labels": list(labels),
        "executor": executor, "n_workers": n_workers, "dask": client_info,
        "threads_per_cell": threads_per_cell, "cache_dir": cache,
        "versions": _versions(), "started_at": started_at, "finished_at": time.time(),
        "interrupted": interrupted,
        "summary": {k: v for k, v in dataclasses.asdict(summary).items() if k != "errors"},
        "failed": [{"params": p, "seed": s, "error": e} for p, s, e in errors],
    }
    path = _save(frame, config, out_path) if out_path is not None else None
    result = SweepResult(frame=frame, summary=summary, failed=failed, config=config, path=path)
    if verbose:
        print(summary)
        if interrupted:
            print("interrupted: completed cells are cached; run the same sweep again to resume")
    if interrupted:
        raise SweepInterrupted(result)
    return result


# --------------------------------------------------------------------------- blocked ε-join
@dataclasses.dataclass
class BlockedFiberProduct:
    """An ε-join computed in row blocks.

    Attributes
    ----------
    pairs : numpy.ndarray, shape=[k, 2], int64
        ``(i, j)`` with ``i`` indexing ``X`` and ``j`` indexing ``Y``, sorted.
    distances : numpy.ndarray, shape=[k]
    count : int
        ``k`` = N(ε).
    shape : tuple of int
        ``(len(X), len(Y))``.
    eps : float
    n_blocks : int
    metric : str
        The join's ``metric`` (``"euclidean"`` unless one was passed).

    Notes
    -----
    :meth:`to_sparse` and :meth:`precision_recall` are those of
    :class:`geoalign.fiber.FiberProduct` (see :meth:`as_fiber_product`).
    """

    pairs: np.ndarray
    distances: np.ndarray
    count: int
    shape: tuple
    eps: float
    n_blocks: int
    metric: str = "euclidean"

    def as_fiber_product(self):
        """The same pairs as a :class:`geoalign.fiber.FiberProduct` (imports torch)."""
        from ..fiber import FiberProduct

        return FiberProduct(self.pairs, self.distances, self.eps, self.metric, tuple(self.shape))

    def to_sparse(self, format: str = "csr"):
        """Sparse distance matrix (explicit zeros kept), see :meth:`FiberProduct.to_sparse`."""
        return self.as_fiber_product().to_sparse(format)

    def precision_recall(self, true_pairs: Any):
        """Precision/recall against ground-truth pairs, see :meth:`FiberProduct.precision_recall`."""
        return self.as_fiber_product().precision_recall(true_pairs)

    @property
    def rho(self) -> float:
        """:math:`\\rho(\\varepsilon) = N(\\varepsilon)/(nm)` (NaN when ``n*m == 0``)."""
        total = self.shape[0] * self.shape[1]
        return self.count / total if total else float("nan")

    def __len__(self) -> int:
        return self.count


def _fiber_block(x_block, y, eps: float, row0: int, join: Any, kwargs: dict):
    """Worker side: join one row block and shift its row indices by ``row0``."""
    if join is None:
        from ..fiber import fiber_product as join
    res = join(x_block, y, eps, **kwargs)
    pairs = np.asarray(res.pairs, dtype=np.int64).reshape(-1, 2).copy()
    pairs[:, 0] += row0
    return pairs, np.asarray(res.distances).reshape(-1)


def distributed_fiber_product(X: Any, Y: Any, eps: float, client_or_scheduler: Any, *,
                              block_rows: int = 4096, join: Callable | None = None,
                              connect_timeout: float = 5.0, **kwargs: Any) -> BlockedFiberProduct:
    """Exact ε-join of ``X`` and ``Y`` split into row blocks computed by Dask workers.

    .. math::

        F_\\varepsilon = \\bigcup_b \\{(i_0^b + i, j) : \\|X_{i_0^b+i} - Y_j\\| \\le \\varepsilon\\}

    ``Y`` is scattered to the workers once; block ``b`` calls
    ``fiber_product(X[i0:i1], Y, eps, **kwargs)`` (``geoalign.fiber``, imported
    on the workers) and its row indices are shifted by ``i0``.  Blocks arrive
    in row order, so the concatenated pairs stay sorted.

    Parameters
    ----------
    X : array-like, shape=[n, d]
    Y : array-like, shape=[m, d]
    eps : float
        Tolerance, >= 0.
    client_or_scheduler : distributed.Client or str
        A client, or a scheduler address ``"tcp://host:port"``.
    block_rows : int
        Rows of ``X`` per task.
    join : callable, optional
        Any function with the ``fiber_product(X, Y, eps, **kwargs)`` contract
        (result with ``.pairs``, ``.distances``); default ``geoalign.fiber.fiber_product``.
    connect_timeout : float
        Seconds to wait for a scheduler address.
    **kwargs
        Passed to the join (``metric=...`` and so on); with the default join,
        ``num_threads=1`` and ``progress=False`` unless given.

    Returns
    -------
    BlockedFiberProduct
    """
    from .._backend import to_numpy

    X = check_array(X, "X", ndim=2)
    Y = check_array(Y, "Y", ndim=2)
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X and Y must have the same dimension d, got X {tuple(X.shape)} and Y {tuple(Y.shape)}")
    eps = check_nonnegative_scalar(eps, "eps", allow_inf=True)
    block_rows = check_int(block_rows, "block_rows", minimum=1)
    if join is None:
        importlib.import_module("geoalign.fiber")  # fail here, clearly, not on every worker
        # the workers are the parallelism: single-threaded kernels, no progress bar per block
        kwargs = {"num_threads": 1, "progress": False, **kwargs}
    X, Y = to_numpy(X), to_numpy(Y)
    metric = str(kwargs.get("metric", "euclidean"))
    if client_or_scheduler is None:
        raise ValueError("client_or_scheduler is required: a distributed.Client or 'tcp://host:port'")
    client, close = connect_client(client_or_scheduler, timeout=connect_timeout)
    try:
        starts = list(range(0, X.shape[0], block_rows))
        if not starts or Y.shape[0] == 0:
            return BlockedFiberProduct(np.empty((0, 2), np.int64), np.empty(0, X.dtype), 0,
                                       (X.shape[0], Y.shape[0]), eps, 0, metric)
        # hash=False: equal data scattered by an earlier call must not share (and lose) its key
        y_future = client.scatter(Y, broadcast=True, hash=False)
        blocks = client.scatter([X[i0:i0 + block_rows] for i0 in starts], hash=False)
        futures = [client.submit(_fiber_block, blk, y_future, eps, i0, join, kwargs, pure=False)
                   for blk, i0 in zip(blocks, starts)]
        parts = client.gather(futures)
    finally:
        close()
    pairs = np.concatenate([p for p, _ in parts], axis=0)
    distances = np.concatenate([dist for _, dist in parts], axis=0)
    return BlockedFiberProduct(pairs=pairs, distances=distances, count=int(pairs.shape[0]),
                               shape=(X.shape[0], Y.shape[0]), eps=eps, n_blocks=len(starts),
                               metric=metric)
