"""What a sweep returns: :class:`SweepResult` (a tidy frame), :class:`SweepSummary` and
:class:`SweepInterrupted`; saving the frame and its configuration atomically."""
from __future__ import annotations

import dataclasses
import importlib
import os
import platform
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from .._io import atomic_path, atomic_write_json
from .._warnings import GeoalignDeprecationWarning
from .grid import Grid

__all__ = ["SweepSummary", "SweepResult", "SweepInterrupted", "load_results"]


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
        Tidy results: one row per cell and score; columns = parameters, ``seed``,
        [labels, ``row``], ``score`` (its name), ``value``, ``status``, ``cached``,
        ``elapsed_s``, ``error``, ``key``.  Failed cells give one row with
        ``score=None`` and ``value=NaN``.
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
        """Scores as columns (one row per cell and row), for plotting."""
        ok = self.frame[self.frame["status"] == "done"]
        index = [c for c in ok.columns if c not in ("score", "value", "status", "cached",
                                                   "elapsed_s", "error", "key")]
        # set_index/unstack keeps parameter values that are None (pivot_table would drop them)
        wide = ok.set_index([*index, "score"])["value"].unstack("score").reset_index()
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
                for score, value in r["scores"].items():
                    rows.append({**base, **extra, "score": score, "value": float(value), **common})
        else:
            extra = {lab: None for lab in labels}
            if any_multi:
                extra["row"] = None
            rows.append({**base, **extra, "score": None, "value": float("nan"), **common})
    columns = [*grid.names, "seed", *labels, *(["row"] if any_multi else []), "score", "value",
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
            if table[col].dtype == object and col not in ("error", "key", "score", "status"):
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


def load_results(path: str | os.PathLike):
    """Read the tidy frame that :func:`run_sweep` saved (``results.parquet`` or ``results.csv``).

    Parameters
    ----------
    path : path
        The ``out`` folder of the sweep (its ``sweep.json`` names the results
        file) or the results file itself.

    Returns
    -------
    pandas.DataFrame
        The frame of :attr:`SweepResult.frame`.  Files written before scores
        were called scores have a ``metric`` column; it is returned as
        ``score``, with one :class:`~geoalign._warnings.GeoalignDeprecationWarning`.
    """
    import json

    import pandas as pd

    path = Path(path)
    if path.is_dir():
        config = path / "sweep.json"
        if config.is_file():
            path = path / json.loads(config.read_text())["results_file"]
        else:
            found = [path / n for n in ("results.parquet", "results.csv") if (path / n).is_file()]
            if not found:
                raise FileNotFoundError(f"{path} holds no sweep.json, results.parquet or results.csv")
            path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"sweep results file {path} does not exist")
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix == ".csv":
        frame = pd.read_csv(path)
    else:
        raise ValueError(f"path must be a sweep folder, a .parquet or a .csv file, got {path}")
    if "metric" in frame.columns and "score" not in frame.columns and "value" in frame.columns:
        warnings.warn(f"{path} was written with the old column name 'metric'; it is read as 'score'",
                      GeoalignDeprecationWarning, stacklevel=2)
        frame = frame.rename(columns={"metric": "score"})
    return frame
