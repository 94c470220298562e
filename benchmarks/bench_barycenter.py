"""Free-support W2 barycentre: geoalign (entropic + exact polish) vs POT exact LP.

Prints, for every ``--reg`` (ε as a fraction of the median squared distance)
and solver mode, the time ratio POT / geoalign and the objective ratio
geoalign / POT, all measured in this run (interleaved repeats, min time), with
the exact objective sum_k w_k W2^2(mu_X, nu_k) (ot.emd2) for every support.
A last row runs the defaults with ``reg="auto"`` (0.3% of the median initial
squared distance).  Full size: 8 clouds x 500 points in d = 32; ``--quick``:
4 x 150, d = 8.  ``--cpu-time`` measures process CPU time instead of wall time
(steadier on a shared machine; meaningful with ``--threads 1`` only).
Target (docs/design/performance.md): >= 5x faster at <= 1% higher objective.
"""
import argparse
import time

import numpy as np
import ot
import torch

from geoalign.ot import free_support_barycenter

MODES = {
    "entropic (no polish)": dict(polish=False),
    "entropic fast (3 inner, inf tol), no polish": dict(polish=False, inner_max_iter=3, inner_tol=float("inf")),
    "entropic + exact polish (defaults)": dict(polish=True),
    "entropic fast (5 inner, inf tol) + polish": dict(polish=True, inner_max_iter=5, inner_tol=float("inf")),
}


def exact_objective(X, clouds):
    q = np.full(len(X), 1.0 / len(X))
    return float(np.mean([ot.emd2(q, np.full(len(Y), 1.0 / len(Y)), ot.dist(X, Y)) for Y in clouds]))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and BLAS threads (0: the libraries' defaults)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reg", type=float, nargs="+", default=[0.003, 0.01, 0.03],
                        help="eps as fractions of the median squared distance")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES), metavar="MODE")
    parser.add_argument("--cpu-time", action="store_true", help="process CPU time instead of wall time")
    args = parser.parse_args()
    if args.threads > 0:
        # the same thread count for POT's BLAS calls (ot.dist, plan products) and torch
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)
    K, n, d = (4, 150, 8) if args.quick else (8, 500, 32)
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=2.0, size=(K, d))
    clouds = [rng.normal(size=(n, d)) @ np.diag(rng.uniform(0.5, 1.5, d)) + c for c in centers]
    X0 = clouds[0] + rng.normal(scale=0.1, size=(n, d))
    weights = [np.full(n, 1.0 / n)] * K

    scale = float(np.median(ot.dist(clouds[0], clouds[1])))
    Ys = np.stack(clouds).astype(np.float32)
    X0f = X0.astype(np.float32)
    clock = time.process_time if args.cpu_time else time.perf_counter
    runs = [(r, m) for r in args.reg for m in args.modes] + [("auto", "entropic + exact polish (defaults)")]
    times = {"POT": []} | {run: [] for run in runs}
    results = {}
    for _ in range(args.repeats):  # interleaved repeats, min taken (shared machine)
        t = clock()
        X_pot = ot.lp.free_support_barycenter(clouds, weights, X0.copy(), numItermax=100000)
        times["POT"].append(clock() - t)
        for reg, mode in runs:
            t = clock()
            eps = reg if reg == "auto" else reg * scale
            results[reg, mode] = free_support_barycenter(Ys, init=X0f, reg=eps, warn=False,
                                                         **MODES[mode])
            times[reg, mode].append(clock() - t)
    t_pot = min(times["POT"])
    obj_pot = exact_objective(X_pot, clouds)
    print(f"free-support barycentre K={K} n={n} d={d}, float32, threads={torch.get_num_threads()}, "
          f"min of {args.repeats} ({'CPU' if args.cpu_time else 'wall'} time); "
          f"median squared distance {scale:.4g}")
    print(f"POT ot.lp.free_support_barycenter: {t_pot:.3f} s, exact objective {obj_pot:.6f}")
    print(f"{'reg/median':>10s}  {'mode':44s} {'time s':>7s} {'updates':>9s}  "
          f"{'RATIO time POT/geo':>18s}  {'RATIO objective geo/POT':>23s}")
    for reg, mode in runs:
        res = results[reg, mode]
        t_geo = min(times[reg, mode])
        obj = exact_objective(res.support.astype(np.float64), clouds)
        updates = f"{res.n_iter - res.n_exact}+{res.n_exact}"
        print(f"{reg:>10}  {mode:44s} {t_geo:7.3f} {updates:>9s}  {t_pot / t_geo:17.2f}x  {obj / obj_pot:23.4f}")


if __name__ == "__main__":
    main()
