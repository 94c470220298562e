"""Benchmark geoalign.fiber against a plain float32 GEMM and FAISS range search.

Measures, on the same data and in the same run (torch and FAISS with the same
number of threads), interleaving repetitions and keeping the minimum of each
(the machine is shared):

* ``gemm``: ``X @ Y.T`` in float32 (torch), the anchor of every ratio;
* ``join``: :func:`geoalign.fiber.fiber_product` (exact, float64 distances);
* ``faiss``: ``IndexFlatL2.range_search`` with radius ``eps**2`` (squared, strict);
* ``counts``: :func:`geoalign.fiber.fiber_counts` with 64 thresholds.

Targets (docs/design/performance.md): join <= 1.10x gemm and faster than FAISS; counts <= 1.25x gemm.

Usage: ``python benchmarks/bench_fiber.py [--quick] [--n N] [--d D] [--repeats R]``
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from geoalign.fiber import fiber_counts, fiber_product


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small size (n=m=4000) for a fast check")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--target-pairs", type=float, default=2e5, help="choose eps so ~this many pairs match")
    ap.add_argument("--no-faiss", action="store_true")
    args = ap.parse_args(argv)
    n = args.n or (4000 if args.quick else 20000)
    repeats = args.repeats or (3 if args.quick else 3)
    d = args.d
    threads = torch.get_num_threads()

    rng = np.random.default_rng(0)
    # clustered data so that an eps with ~1e5-1e6 matches is a natural tolerance
    centers = rng.normal(size=(n // 4, d)).astype(np.float32)
    X = (centers[rng.integers(0, len(centers), n)] + 0.3 * rng.normal(size=(n, d))).astype(np.float32)
    Y = (centers[rng.integers(0, len(centers), n)] + 0.3 * rng.normal(size=(n, d))).astype(np.float32)
    # eps from a sampled distance quantile hitting the requested number of pairs
    ii, jj = rng.integers(0, n, 400_000), rng.integers(0, n, 400_000)
    sample = np.sqrt(((X[ii].astype(np.float64) - Y[jj]) ** 2).sum(1))
    # the pair count scales with n*m: keep the same fraction of pairs as the full size
    target = args.target_pairs * (n / 20000) ** 2
    q = min(0.5, target / (n * n))
    eps = float(np.quantile(sample, q))
    grid = np.linspace(0.5 * eps, eps, 64)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)

    faiss = None
    if not args.no_faiss:
        try:
            import faiss as _faiss

            _faiss.omp_set_num_threads(threads)
            faiss = _faiss
        except ImportError:
            print("faiss not installed: skipping the FAISS anchor")

    def gemm():
        return Xt @ Yt.T

    def join():
        return fiber_product(X, Y, eps)

    def counts():
        return fiber_counts(X, Y, grid)

    def faiss_range():
        index = faiss.IndexFlatL2(d)
        index.add(Y)
        return index.range_search(X, eps * eps)

    tasks = {"gemm": gemm, "join": join, "counts": counts}
    if faiss is not None:
        tasks["faiss"] = faiss_range
    best = {k: float("inf") for k in tasks}
    results = {}
    for _ in range(repeats):
        for name, fn in tasks.items():
            t, out = _timed(fn)
            best[name] = min(best[name], t)
            results[name] = out
            del out
    fp = results["join"]
    print(f"n = m = {n}, d = {d}, float32, torch threads = {threads}, eps = {eps:.4f}, "
          f"pairs = {fp.count}, repeats = {repeats} (min of interleaved runs)")
    if faiss is not None:
        lims, D, I = results["faiss"]
        print(f"faiss pairs (strict <, squared radius) = {len(I)}")
    fc = results["counts"]
    assert int(fc.counts[-1]) == fp.count, "fiber_counts at max eps must equal the join count"
    for name in tasks:
        print(f"{name:>7s}: {best[name]:8.3f} s   ratio to gemm {best[name] / best['gemm']:.3f}")
    if faiss is not None:
        print(f"join / faiss = {best['join'] / best['faiss']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
