"""Parameter sweeps at scale: a function plus a grid, run serially, on local
processes or on a Dask cluster, resumable cell by cell.

A *study* is a function ``func(**params, seed=...) -> scores`` and a
:class:`Grid` of parameter values.  Every *cell* (one combination of parameter
values and one seed) is run once; its scores are cached under a hash of

.. math::

    \\mathrm{key} = \\operatorname{sha256}\\bigl(\\text{function identity},
    \\ \\text{params},\\ \\text{seed}\\bigr)

in a cache folder, written atomically as soon as the cell finishes.  Re-running
a sweep skips every completed cell, so killing a worker or the whole run loses
at most the cells that were in flight.  Results are a tidy
:class:`pandas.DataFrame` (one row per cell and score) saved with the
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
:func:`geoalign.fiber_distributed.distributed_fiber_product`.
"""
from __future__ import annotations

import dataclasses
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .._io import atomic_write_json
from .._validation import check_choice, check_int
from .._warnings import GeoalignDeprecationWarning
from .cache import _cache_file, _check_signature, _function_identity, _load_cached, cell_key
from .executors import EXECUTORS, _progress, _run_dask, _run_processes, _run_serial, connect_client
from .grid import Grid, RESERVED_NAMES
from .results import SweepInterrupted, SweepResult, SweepSummary, _build_frame, _save, _versions

__all__ = ["run_sweep"]


def run_sweep(func: Callable, grid: Grid | Mapping, *, executor: str | None = None,
              n_workers: int | None = None, scheduler: Any = None, out: str | os.PathLike | None = None,
              cache_dir: str | os.PathLike | None = None, name: str | None = None,
              version: str | None = None, labels: Sequence[str] = (),
              threads_per_cell: int | None = None, retry_failed: bool = True,
              progress: bool = True, verbose: bool = True, connect_timeout: float = 5.0,
              max_in_flight: int | None = None) -> SweepResult:
    """Run ``func`` on every cell of ``grid`` and collect the scores in a tidy frame.

    Each cell calls ``func(**params, seed=seed)`` (``seed`` only if ``func``
    takes it) and expects a dict ``{score name: number}`` or a list of such dicts
    (several rows; entries named in ``labels`` become columns instead of scores).

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
        Keys of returned rows that are labels (columns), not scores.
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
    old = sum(bool(records[k].get("old_key")) for k in cached_keys)
    if old:
        warnings.warn(f"{old} cached cell(s) in {cache} hold their scores under the old key "
                      "'metrics'; they are read as 'scores' (still cache hits, not recomputed)",
                      GeoalignDeprecationWarning, stacklevel=2)

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
