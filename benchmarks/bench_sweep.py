"""Benchmark of geoalign.sweep: parallel speedup and per-cell overhead.

Measured in one run, on this machine:

1. speedup of a CPU-bound sweep (pure-Python work, one thread per cell) on a
   2-worker dask LocalCluster over the serial executor (target >= 1.7x), next
   to the anchor ``client.map`` + ``gather`` of the bare function on the same
   cluster, and the ``"processes"`` executor (pool start-up included);
2. overhead per cell of a trivial cell (no cache, and with the atomic cell
   cache), serial and on the cluster, against a bare Python loop and a bare
   ``client.map``.

Usage: ``python benchmarks/bench_sweep.py [--quick]``.  The numbers depend on
what else runs on the machine: the two cores may be shared.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geoalign.sweep import LOCAL_CLUSTER_QUIET, Grid, run_sweep  # noqa: E402


def busy_cell(i: int, work: int, seed: int = 0) -> dict:
    """Pure-Python CPU work (no BLAS threads): a sum of squares over ``work`` integers."""
    total = 0
    for k in range(work):
        total += (k * k + i + seed) % 7
    return {"total": float(total)}


def trivial_cell(i: int, seed: int = 0) -> dict:
    return {"i": float(i)}


def _time(fn, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small size (a few seconds)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    from distributed import Client, LocalCluster

    n_cells, work = (8, 300_000) if args.quick else (24, 1_000_000)
    n_trivial = 200 if args.quick else 1000
    opts = dict(progress=False, verbose=False)
    print(f"bench_sweep: {n_cells} CPU-bound cells of {work} pure-Python steps, "
          f"{n_trivial} trivial cells, {args.workers} workers, os.cpu_count()={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f} (cores may be shared with other jobs)")

    cpu_grid = Grid(product={"i": list(range(n_cells)), "work": [work]})
    triv_grid = Grid(product={"i": list(range(n_trivial))})

    # --- serial
    repeats = 2  # best of two: the cores may be shared
    t_loop = _time(lambda: [busy_cell(i, work) for i in range(n_cells)], repeats)
    t_serial = _time(lambda: run_sweep(busy_cell, cpu_grid, executor="serial", **opts), repeats)
    t_triv_loop = _time(lambda: [trivial_cell(i) for i in range(n_trivial)], repeats=3)
    t_triv_serial = _time(lambda: run_sweep(trivial_cell, triv_grid, executor="serial", **opts), repeats=3)
    with tempfile.TemporaryDirectory() as tmp:
        t_triv_cached = _time(lambda: run_sweep(trivial_cell, triv_grid, executor="serial",
                                                cache_dir=Path(tmp) / str(time.perf_counter()), **opts))
        t_triv_resume_dir = Path(tmp) / "resume"
        run_sweep(trivial_cell, triv_grid, executor="serial", cache_dir=t_triv_resume_dir, **opts)
        t_triv_resume = _time(lambda: run_sweep(trivial_cell, triv_grid, executor="serial",
                                                cache_dir=t_triv_resume_dir, **opts))

    # --- dask LocalCluster (start-up timed separately)
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           **LOCAL_CLUSTER_QUIET)
    client = Client(cluster, set_as_default=False)
    t_startup = time.perf_counter() - t0
    try:
        client.gather(client.map(busy_cell, range(args.workers), work=1000, pure=False))  # warm up imports
        run_sweep(trivial_cell, Grid(product={"i": [0, 1]}), scheduler=client, **opts)
        t_map = _time(lambda: client.gather(client.map(busy_cell, range(n_cells), work=work, pure=False)), repeats)
        t_dask = _time(lambda: run_sweep(busy_cell, cpu_grid, scheduler=client, **opts), repeats)
        t_triv_map = _time(lambda: client.gather(client.map(trivial_cell, range(n_trivial), pure=False)))
        t_triv_dask = _time(lambda: run_sweep(trivial_cell, triv_grid, scheduler=client, **opts))
    finally:
        client.close()
        cluster.close()

    # --- local process pool (spawn start-up included in every run)
    t_proc = _time(lambda: run_sweep(busy_cell, cpu_grid, executor="processes", n_workers=args.workers, **opts))

    ms = 1e3
    print("\nCPU-bound sweep (wall seconds; speedup = serial sweep / this)")
    print(f"  bare Python loop           {t_loop:8.3f} s")
    print(f"  sweep serial               {t_serial:8.3f} s   (overhead vs loop {t_serial / t_loop:5.3f}x)")
    print(f"  client.map (anchor)        {t_map:8.3f} s   speedup {t_serial / t_map:5.2f}x")
    print(f"  sweep dask, 2 workers      {t_dask:8.3f} s   speedup {t_serial / t_dask:5.2f}x "
          f"(target >= 1.7x; {t_dask / t_map:5.3f}x client.map)")
    print(f"  sweep processes, 2 workers {t_proc:8.3f} s   speedup {t_serial / t_proc:5.2f}x "
          "(includes spawning the pool)")
    print(f"  LocalCluster start-up      {t_startup:8.3f} s   (not in the dask numbers above)")
    print("\nper-cell overhead of a trivial cell (ms per cell)")
    print(f"  bare loop                  {t_triv_loop / n_trivial * ms:8.4f}")
    print(f"  sweep serial, no cache     {t_triv_serial / n_trivial * ms:8.4f}")
    print(f"  sweep serial, cache write  {t_triv_cached / n_trivial * ms:8.4f}   (atomic JSON + fsync per cell)")
    print(f"  sweep serial, all cached   {t_triv_resume / n_trivial * ms:8.4f}   (resume: read every record)")
    print(f"  client.map (anchor)        {t_triv_map / n_trivial * ms:8.4f}")
    print(f"  sweep dask                 {t_triv_dask / n_trivial * ms:8.4f}   "
          f"({t_triv_dask / t_triv_map:5.2f}x client.map)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
