"""Throughput of batched exact products in Z_n[x] against python-flint nmod_poly.

Anchor (design.md §4): 10^4 products of degree-255 polynomials over Z_256,
python-flint nmod_poly in a loop (objects built beforehand, only the
multiplications timed), target >= 2x its throughput, bit-exact.  Also reported:
Z_30522 and the prime 2^31 - 1, our product with 1 thread and with all threads,
torch (CPU, or CUDA when available) and flint including the array <-> nmod_poly
conversions that an array API needs.

Usage::

    python benchmarks/bench_rings.py            # 10^4 products, degree 255
    python benchmarks/bench_rings.py --quick    # 10^3 products
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from geoalign._backend import default_num_threads
from geoalign.rings import PolyRing


def best_of(fn, repeat: int, clock=time.perf_counter) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10^3 products instead of 10^4")
    ap.add_argument("--count", type=int, default=None, help="number of products")
    ap.add_argument("--degree", type=int, default=255)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    import flint
    import torch

    count = args.count or (1000 if args.quick else 10_000)
    deg = args.degree
    threads = default_num_threads()
    print(f"{count} products of degree-{deg} polynomials; best of {args.repeat}; "
          f"{threads} thread(s) available; flint {flint.__version__}, torch {torch.__version__}")
    header = (f"{'modulus':>12} {'flint ms':>9} {'ours-1t ms':>10} {'ours ms':>8} {'torch ms':>9} "
              f"{'x flint (1t)':>12} {'(1t cpu)':>8} {'x flint':>8} {'x flint+conv':>12} {'exact':>6}")
    print(header)
    all_exact = True
    for n in (256, 30522, 2**31 - 1):
        rng = np.random.default_rng(n % 1000)
        A = rng.integers(0, n, (count, deg + 1))
        B = rng.integers(0, n, (count, deg + 1))
        fa = [flint.nmod_poly(a.tolist(), n) for a in A]
        fb = [flint.nmod_poly(b.tolist(), n) for b in B]
        out: list = []

        def flint_loop():
            out[:] = [x * y for x, y in zip(fa, fb)]

        def flint_with_conversion():
            C = np.zeros((count, 2 * deg + 1), dtype=np.int64)
            for i, (a, b) in enumerate(zip(A.tolist(), B.tolist())):
                c = (flint.nmod_poly(a, n) * flint.nmod_poly(b, n)).coeffs()
                C[i, :len(c)] = c
            return C

        t_flint = best_of(flint_loop, args.repeat)
        t_flint_conv = best_of(flint_with_conversion, max(1, args.repeat // 2))
        R1, R = PolyRing(n, num_threads=1), PolyRing(n)
        t_one = best_of(lambda: R1.mul(A, B), args.repeat)
        # CPU time of single-threaded runs: robust to other processes sharing the cores.
        c_flint = best_of(flint_loop, args.repeat, time.process_time)
        c_one = best_of(lambda: R1.mul(A, B), args.repeat, time.process_time)
        t_all = best_of(lambda: R.mul(A, B), args.repeat)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        At, Bt = torch.from_numpy(A).to(device), torch.from_numpy(B).to(device)

        def torch_mul():
            C = R.mul(At, Bt)
            if device == "cuda":
                torch.cuda.synchronize()
            return C

        t_torch = best_of(torch_mul, args.repeat)
        C = R.mul(A, B)
        ref = np.zeros_like(C)
        for i, c in enumerate(out):
            coeffs = [int(v) for v in c.coeffs()]
            ref[i, :len(coeffs)] = coeffs
        exact = bool((C == ref).all()) and bool((torch_mul().cpu().numpy() == ref).all())
        all_exact &= exact
        print(f"{n:>12} {1e3 * t_flint:9.1f} {1e3 * t_one:10.1f} {1e3 * t_all:8.1f} {1e3 * t_torch:9.1f} "
              f"{t_flint / t_one:12.2f} {c_flint / c_one:8.2f} {t_flint / t_all:8.2f} {t_flint_conv / t_all:12.2f} {str(exact):>6}")
    print("ratios = flint time / our time (> 1: we are faster); '1t cpu' = ratio of process CPU "
          "times, both single-threaded; 'x flint+conv' includes flint's array conversions; "
          "torch on", device)
    return 0 if all_exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
