"""Time geoalign's retrieval metrics and CCA against their scikit-learn anchors.

Anchors, measured in the same run:
- mAP@all: a loop of ``sklearn.metrics.average_precision_score`` over queries;
- CCA: ``sklearn.cross_decomposition.CCA`` (iterative NIPALS) with the same number of components.
Prints the ratio anchor_time / geoalign_time (> 1 means geoalign is faster) and checks the
numbers agree.  ``--quick`` uses a small size.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def _time(fn, repeat=3):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small size")
    args = parser.parse_args(argv)
    from sklearn.cross_decomposition import CCA as SkCCA
    from sklearn.metrics import average_precision_score

    from geoalign.evaluation import retrieval_scores
    from geoalign.models.linear import CCA

    rng = np.random.default_rng(0)
    n, d, n_classes = (500, 32, 10) if args.quick else (4000, 128, 50)
    labels = rng.integers(0, n_classes, size=n)
    centers = rng.normal(size=(n_classes, d))
    a = centers[labels] + rng.normal(scale=2.0, size=(n, d))
    b = centers[labels] + rng.normal(scale=2.0, size=(n, d))

    t_ours, res = _time(lambda: retrieval_scores(a, b, labels, labels).a_to_b.map_all)

    def anchor():
        an = a / np.linalg.norm(a, axis=1, keepdims=True)
        bn = b / np.linalg.norm(b, axis=1, keepdims=True)
        sim = an @ bn.T
        return float(np.mean([average_precision_score(labels == labels[i], sim[i]) for i in range(n)]))

    t_anchor, ref = _time(anchor, repeat=1)
    print(f"mAP@all a->b, n={n}, d={d}: geoalign {t_ours:.3f}s (both directions + R@K + MedR), "
          f"sklearn loop {t_anchor:.3f}s (one direction); ratio {t_anchor / t_ours:.1f}x; "
          f"|diff| {abs(res - ref):.1e}")

    k = 8
    t_cca, ours = _time(lambda: CCA(dim=k, reg=0.0).fit(a, b).correlations_)

    def sk():
        xs, ys = SkCCA(n_components=k, max_iter=2000, tol=1e-10).fit_transform(a, b)
        return np.array([np.corrcoef(xs[:, j], ys[:, j])[0, 1] for j in range(k)])

    t_sk, theirs = _time(sk, repeat=1)
    print(f"CCA {k} components, n={n}, d={d}: geoalign {t_cca:.3f}s, sklearn {t_sk:.3f}s; "
          f"ratio {t_sk / t_cca:.1f}x; max |corr diff| {np.max(np.abs(ours - theirs)):.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
