"""Sinkhorn divergence and sliced Wasserstein at the training size, forward + backward.

X, Y of shape (256, 64) on the unit sphere, float32 torch (``--quick``: 64 x 16).
Prints the time per call (min of interleaved repeats) of the default fixed-update
mode, of the converged mode (tol=1e-5, the old default), of sliced Wasserstein
(128 Sobol directions), against a plain symmetric InfoNCE step on the same batch,
and the relative error of the default mode against the converged float64 value.
"""
import argparse
import time

import torch

from geoalign.ot import sinkhorn_divergence, sliced_wasserstein


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch default)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    n, d = (64, 16) if args.quick else (256, 64)
    g = torch.Generator().manual_seed(0)
    X0 = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
    Y0 = torch.nn.functional.normalize(torch.randn(n, d, generator=g) + 0.3, dim=1)

    def step(fn):
        X, Y = X0.clone().requires_grad_(), Y0.clone().requires_grad_()
        fn(X, Y).backward()

    def infonce(X, Y):
        logits = X @ Y.T / 0.07
        labels = torch.arange(n)
        return 0.5 * (torch.nn.functional.cross_entropy(logits, labels)
                      + torch.nn.functional.cross_entropy(logits.T, labels))

    cases = {"InfoNCE step (reference)": infonce}
    for reg in (0.05, 0.01):
        cases[f"divergence reg={reg} default (fixed updates)"] = lambda X, Y, r=reg: sinkhorn_divergence(X, Y, r).value
        cases[f"divergence reg={reg} converged tol=1e-5"] = (
            lambda X, Y, r=reg: sinkhorn_divergence(X, Y, r, tol=1e-5, max_iter=200, warn=False).value)
    cases["sliced W2, 128 Sobol directions"] = lambda X, Y: sliced_wasserstein(X, Y, 128, seed=0).value
    times = {k: [] for k in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            t = time.perf_counter()
            step(fn)
            times[name].append(time.perf_counter() - t)
    base = min(times["InfoNCE step (reference)"])
    print(f"forward+backward, X, Y ({n}, {d}) float32 on the sphere, threads={torch.get_num_threads()}, "
          f"min of {args.repeats} interleaved repeats")
    for name in cases:
        t = min(times[name])
        print(f"  {name:45s} {t * 1e3:8.2f} ms   RATIO to InfoNCE {t / base:6.1f}x")
    for reg in (0.05, 0.01):
        ref = sinkhorn_divergence(X0.double(), Y0.double(), reg, tol=1e-10, max_iter=20000).value.item()
        fast = sinkhorn_divergence(X0, Y0, reg).value.item()
        print(f"  reg={reg}: default mode relative error vs converged float64 = {abs(fast - ref) / abs(ref):.2e}")


if __name__ == "__main__":
    main()
