"""QSMA training throughput (samples/s, CPU) against a plain contrastive model of the same size.

The anchor is the same MLP encoders and heads trained with symmetric InfoNCE
only (``QSMA(use_alignment=False, use_barycentric=False, use_kl=False,
n_samples=0)``: a LinearContrastive-like MLP).  Target (issue 5): all QSMA
terms cost at most 1.5x the anchor's time per sample.  Both models are timed
alternately in the same run (best of ``--repeats``), and further rows show the
cost of each term switched on alone.

    python benchmarks/bench_qsma.py [--quick]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geoalign.models.qsma import QSMA  # noqa: E402

PLAIN = dict(use_alignment=False, use_barycentric=False, use_kl=False, n_samples=0)


def _throughput(X_a, X_b, size: dict, extra: dict, epochs: int) -> float:
    model = QSMA(**size, **extra, max_epochs=epochs, batch_size=256, random_state=0,
                 use_labels=False, trainer_options={"progress": False})
    t = time.perf_counter()
    model.fit(X_a, X_b)
    return X_a.shape[0] * epochs / (time.perf_counter() - t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small size")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        n, d, size, epochs = 1024, 128, dict(dim=32, hidden=256, n_layers=2), 2
    else:
        n, d, size, epochs = 4096, 512, dict(dim=64, hidden=1024, n_layers=2), 2
    rng = np.random.default_rng(0)
    S = rng.normal(size=(n, 16))
    X_a = (S @ rng.normal(size=(16, d)) + 0.5 * rng.normal(size=(n, d))).astype(np.float32)
    X_b = (S @ rng.normal(size=(16, d)) + 0.5 * rng.normal(size=(n, d))).astype(np.float32)
    variants = {
        "plain InfoNCE (anchor)": PLAIN,
        "QSMA all terms (sliced)": {},
        "QSMA all terms (sinkhorn divergence)": dict(alignment="sinkhorn"),
        "+ Sobol samples K=8 only": {**PLAIN, "n_samples": 8},
        "+ sliced W only": {**PLAIN, "use_alignment": True},
        "+ barycentric only": {**PLAIN, "use_barycentric": True},
    }
    best = {k: 0.0 for k in variants}
    _throughput(X_a[:512], X_b[:512], size, PLAIN, 1)  # warm-up (allocator, kernels)
    for _ in range(args.repeats):  # alternate so machine load hits every variant alike
        for name, extra in variants.items():
            best[name] = max(best[name], _throughput(X_a, X_b, size, extra, epochs))
    anchor = best["plain InfoNCE (anchor)"]
    print(f"n={n}, d_a=d_b={d}, {size}, batch 256, {epochs} epochs, best of {args.repeats} "
          f"interleaved repeats, {torch.get_num_threads()} torch thread(s)")
    for name, sps in best.items():
        print(f"{name:40s} {sps:10.0f} samples/s   time ratio vs anchor {anchor / sps:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
