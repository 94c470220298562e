"""Log-domain Sinkhorn: geoalign vs POT ``ot.sinkhorn(method="sinkhorn_log")``.

Fixed iterations (tol=0 for both), costs uniform in [0, 1], reg = 0.01.
Full size: n = m = 2000, 1000 iterations (POT ~45 s here); ``--quick``: n = 500,
100 iterations.  Prints the speed ratios POT / geoalign (float64 and float32) and
the plan differences, all measured in this run.
"""
import argparse
import time

import numpy as np
import ot
import torch

from geoalign.ot import sinkhorn


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, iters = (500, 100) if args.quick else (2000, 1000)
    reg = 0.01
    rng = np.random.default_rng(0)
    C = rng.random((n, n))
    a = np.full(n, 1.0 / n)
    b = np.full(n, 1.0 / n)

    t = time.perf_counter()
    P_pot = ot.sinkhorn(a, b, C, reg, method="sinkhorn_log", numItermax=iters, stopThr=0.0)
    t_pot = time.perf_counter() - t

    t = time.perf_counter()
    r64 = sinkhorn(a, b, C, reg, max_iter=iters, tol=0.0)
    t64 = time.perf_counter() - t
    t = time.perf_counter()
    r32 = sinkhorn(a.astype(np.float32), b.astype(np.float32), C.astype(np.float32), reg,
                   max_iter=iters, tol=0.0)
    t32 = time.perf_counter() - t

    scale = P_pot.max()
    print(f"log-domain Sinkhorn n=m={n}, reg={reg}, {iters} fixed iterations, threads={args.threads}")
    print(f"  POT sinkhorn_log (numpy float64): {t_pot:8.3f} s")
    print(f"  geoalign float64:                 {t64:8.3f} s  max|dP| = {np.abs(r64.plan - P_pot).max():.2e}"
          f"  (relative to max P: {np.abs(r64.plan - P_pot).max() / scale:.2e})")
    print(f"  geoalign float32:                 {t32:8.3f} s  max|dP| = {np.abs(r32.plan - P_pot).max():.2e}"
          f"  (relative to max P: {np.abs(r32.plan - P_pot).max() / scale:.2e})")
    print(f"  RATIO POT/geoalign: float64 {t_pot / t64:.1f}x   float32 {t_pot / t32:.1f}x")


if __name__ == "__main__":
    main()
