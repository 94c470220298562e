"""Cell identity and the cell cache: one JSON record per finished cell, written atomically.

A cell's key is the SHA-256 of (function identity, parameters, seed) (:func:`cell_key`);
``_run_cell`` runs one cell, catching its exceptions, and caches its record.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import numbers
import os
import pickle
import socket
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .._io import atomic_write_json
from .grid import Grid, _plain_value

__all__ = ["cell_key"]


_CACHE_FORMAT = 1


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
def _as_score(value: Any, name: str) -> float:
    if hasattr(value, "detach"):  # torch scalar tensor, without importing torch here
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"score {name!r} must be a scalar, got an array of shape {value.shape}")
        value = value.reshape(()).item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"score {name!r} must be a real number, got {value!r} ({type(value).__name__}); "
                    "non-numeric entries of a row must be declared in labels=")


def _normalise_output(out: Any, labels: Sequence[str]) -> list[dict]:
    """Turn a cell's return value into ``[{"labels": {...}, "scores": {...}}, ...]``."""
    if isinstance(out, Mapping):
        rows, multi = [out], False
    elif isinstance(out, (list, tuple)) and all(isinstance(r, Mapping) for r in out):
        rows, multi = list(out), True
    else:
        raise TypeError("a sweep function must return a dict of scores or a list of dicts, "
                        f"got {type(out).__name__}")
    result = []
    for i, row in enumerate(rows):
        missing = [lab for lab in labels if lab not in row]
        if missing:
            raise ValueError(f"row {i} lacks the label(s) {missing}")
        lab = {k: _plain_value(row[k], f"label {k!r}") for k in labels}
        scores = {str(k): _as_score(v, str(k)) for k, v in row.items() if k not in labels}
        if not scores:
            raise ValueError(f"row {i} holds no score")
        result.append({"row": i if multi else None, "labels": lab, "scores": scores})
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
    _migrate_rows(record)
    return record


def _migrate_rows(record: dict) -> None:
    """Records written before the rename hold ``"metrics"`` per row: read them as ``"scores"``.

    The key is not part of :func:`cell_key` (nor of the format number), so such a
    cell stays a cache hit; ``record["old_key"]`` marks it for the one warning of
    :func:`~geoalign.sweep.run_sweep`.
    """
    for row in record.get("rows", ()):
        if "metrics" in row and "scores" not in row:
            row["scores"] = row.pop("metrics")
            record["old_key"] = True
