"""Throughput of batched exact products in Z_n[x] against python-flint nmod_poly.

Anchor (docs/design/performance.md): 10^4 products of degree-255 polynomials over Z_256,
python-flint nmod_poly in a loop (objects built beforehand, only the
multiplications timed), target >= 2x its throughput, bit-exact.  Also reported:
Z_30522 and the prime 2^31 - 1.  For each modulus every applicable method of
``PolyRing.mul`` is timed ("simd": the compiled kernel, power-of-two moduli;
"fft": the limb-split float64 FFT) with 1 thread and with all threads, plus torch
(CPU, or CUDA when available) and flint including the array <-> nmod_poly
conversions that an array API needs.  Timings are interleaved (flint, then each
of ours, repeatedly) and the best of each is kept, so a busy machine slows all
of them alike.

Usage::

    python benchmarks/bench_rings.py            # 10^4 products, degree 255
    python benchmarks/bench_rings.py --quick    # 10^3 products
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from geoalign._backend import default_num_threads
from geoalign.rings import HAVE_COMPILED_KERNEL, PolyRing


def interleaved_best(fns: dict, repeat: int, clock=time.perf_counter) -> dict:
    """Best time of each function, running them in turn ``repeat`` times."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            best[name] = min(best[name], clock() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10^3 products instead of 10^4")
    ap.add_argument("--count", type=int, default=None, help="number of products")
    ap.add_argument("--degree", type=int, default=255)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)
    import flint
    import torch

    count = args.count or (1000 if args.quick else 10_000)
    deg = args.degree
    threads = default_num_threads()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"{count} products of degree-{deg} polynomials; best of {args.repeat} interleaved; "
          f"{threads} thread(s) available; flint {flint.__version__}, torch {torch.__version__}; "
          f"compiled kernel: {'built' if HAVE_COMPILED_KERNEL else 'NOT built'}")
    print(f"{'modulus':>12} {'method':>6} {'flint ms':>9} {'1t ms':>7} {'all ms':>7} {'torch ms':>9} "
          f"{'x flint 1t':>10} {'1t cpu':>7} {'x flint':>8} {'x flint+conv':>12} {'exact':>6}")
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

        R1, R = PolyRing(n, num_threads=1), PolyRing(n)
        methods = (["simd"] if HAVE_COMPILED_KERNEL and n & (n - 1) == 0 and n <= 2**16 else []) + ["fft"]
        At, Bt = torch.from_numpy(A).to(device), torch.from_numpy(B).to(device)

        def torch_mul(method):
            C = R.mul(At, Bt, method=method if device == "cpu" else "fft")
            if device == "cuda":
                torch.cuda.synchronize()
            return C

        fns = {"flint": flint_loop}
        for m in methods:
            fns[m + "-1t"] = lambda m=m: R1.mul(A, B, method=m)
            fns[m] = lambda m=m: R.mul(A, B, method=m)
            fns[m + "-torch"] = lambda m=m: torch_mul(m)
        wall = interleaved_best(fns, args.repeat)
        # CPU time of single-threaded runs: robust to other processes sharing the cores.
        cpu = interleaved_best({k: fns[k] for k in ["flint"] + [m + "-1t" for m in methods]},
                               args.repeat, time.process_time)
        t_conv = interleaved_best({"conv": flint_with_conversion}, max(1, args.repeat // 3))["conv"]
        flint_loop()
        ref = np.zeros((count, 2 * deg + 1), dtype=np.int64)
        for i, c in enumerate(out):
            coeffs = [int(v) for v in c.coeffs()]
            ref[i, :len(coeffs)] = coeffs
        for m in methods:
            exact = (bool((R.mul(A, B, method=m) == ref).all())
                     and bool((torch_mul(m).cpu().numpy() == ref).all()))
            all_exact &= exact
            tf, t1, ta = wall["flint"], wall[m + "-1t"], wall[m]
            print(f"{n:>12} {m:>6} {1e3 * tf:9.1f} {1e3 * t1:7.1f} {1e3 * ta:7.1f} "
                  f"{1e3 * wall[m + '-torch']:9.1f} {tf / t1:10.2f} {cpu['flint'] / cpu[m + '-1t']:7.2f} "
                  f"{tf / ta:8.2f} {t_conv / ta:12.2f} {str(exact):>6}")
    print("ratios = flint time / our time (> 1: we are faster); '1t cpu' = ratio of process CPU "
          "times, both single-threaded; 'x flint+conv' includes flint's array conversions; "
          "torch on", device)
    return 0 if all_exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
