"""Where the cells of a sweep run: in this process, a local process pool, or a Dask cluster."""
from __future__ import annotations

import os
import pickle
import sys
import traceback
from typing import Any

from .._validation import check_int, check_nonnegative_scalar
from .cache import _run_cell

__all__ = ["EXECUTORS", "LOCAL_CLUSTER_QUIET", "connect_client"]


EXECUTORS = ("serial", "processes", "dask")
# No dashboard; the scheduler's small HTTP server (health, metrics) still starts, so give it a
# free port: the default 8787 clashes with any other cluster on the machine ("Port 8787 is
# already in use" warning, an error under -W error).
LOCAL_CLUSTER_QUIET = {"dashboard_address": None, "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"}}


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
