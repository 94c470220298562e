"""Figures of the geometry sections: shared/private decomposition and Riemannian barycentres."""
from __future__ import annotations

import numpy as np

from .registry import FigureContext, FigureOutput, figure

__all__ = ["decomposition_figure", "barycenters_figure"]


@figure("decomposition", description="principal angles of the recovered subspaces vs SNR and n")
def decomposition_figure(ctx: FigureContext) -> FigureOutput:
    """Largest principal angle between recovered and planted Z_s, Z_I, Z_T (and AJIVE's joint space)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from ..data.planted import PlantedAlignment
    from ..subspace import SharedPrivateDecomposition, ajive, principal_angles

    dim, ranks = 64, (4, (3, 3))
    snrs = ctx.pick([0.3, 0.5, 1, 2, 5, 10, 30, 100], [0.5, 2, 10])
    ns = ctx.pick([250, 500, 1000, 2000, 5000, 10000], [300, 1000, 3000])
    reps = ctx.pick(3, 1)
    rows = []

    def run(snr, n, rep):
        gen = PlantedAlignment(dim=dim, shared_rank=ranks[0], private_ranks=ranks[1], snr=snr,
                               random_state=ctx.seed + rep)
        s = gen.sample(n)
        est = SharedPrivateDecomposition(shared_rank=ranks[0], private_ranks=ranks[1]).fit(s.U, s.V)
        out = {
            "snr": snr, "n": n, "rep": rep,
            "shared": np.degrees(principal_angles(est.basis_shared_, s.basis_shared).max()),
            "private_a": np.degrees(principal_angles(est.basis_a_, s.basis_a).max()),
            "private_b": np.degrees(principal_angles(est.basis_b_, s.basis_b).max()),
        }
        aj = ajive(s.U, s.V, joint_rank=ranks[0], signal_ranks=(ranks[0] + ranks[1][0],
                                                                 ranks[0] + ranks[1][1]))
        out["ajive_shared"] = np.degrees(principal_angles(aj.joint_loadings_u, s.basis_shared).max())
        return out

    for rep in range(reps):
        for snr in snrs:
            rows.append({**run(snr, 5000 if not ctx.quick else 2000, rep), "sweep": "snr"})
        for n in ns:
            rows.append({**run(10.0, n, rep), "sweep": "n"})
    df = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, sweep, x, label in ((axes[0], "snr", "snr", "signal-to-noise ratio"),
                                (axes[1], "n", "n", "number of samples n")):
        g = df[df.sweep == sweep].groupby(x).mean(numeric_only=True)
        for col, style in (("shared", "o-"), ("private_a", "s--"), ("private_b", "^--"),
                           ("ajive_shared", "x:")):
            name = {"shared": "Z_s (ours)", "private_a": "Z_I (ours)", "private_b": "Z_T (ours)",
                    "ajive_shared": "joint space (AJIVE)"}[col]
            ax.plot(g.index, g[col], style, label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("largest principal angle to truth (deg)")
    axes[0].axhline(2.0, color="grey", lw=0.8)
    axes[1].axhline(2.0, color="grey", lw=0.8)
    axes[0].set_title(f"d={dim}, ranks (4,3,3), n={5000 if not ctx.quick else 2000}")
    axes[1].set_title("d=64, ranks (4,3,3), SNR=10")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    by_snr = df[df.sweep == "snr"].groupby("snr").mean(numeric_only=True)
    by_n = df[df.sweep == "n"].groupby("n").mean(numeric_only=True)
    numbers = {"dim": dim, "reps": reps, "lowSnr": f"{min(snrs):g}", "highSnr": f"{max(snrs):g}",
               "smallN": min(ns), "largeN": max(ns),
               "sharedAngleLowSnr": by_snr.shared.iloc[0], "sharedAngleHighSnr": by_snr.shared.iloc[-1],
               "ajiveAngleLowSnr": by_snr.ajive_shared.iloc[0],
               "ajiveAngleHighSnr": by_snr.ajive_shared.iloc[-1],
               "sharedAngleSmallN": by_n.shared.iloc[0], "sharedAngleLargeN": by_n.shared.iloc[-1],
               "ajiveAngleSmallN": by_n.ajive_shared.iloc[0], "ajiveAngleLargeN": by_n.ajive_shared.iloc[-1],
               "worstPrivateAngle": float(df[["private_a", "private_b"]].to_numpy().max())}
    return FigureOutput(fig, params={"dim": dim, "ranks": [4, 3, 3], "snrs": snrs, "ns": ns,
                                     "reps": reps}, table=df, numbers=numbers,
                        caption="subspace recovery vs SNR and n (planted model)")


def _sphere_to_xy(points: np.ndarray) -> np.ndarray:
    """Orthographic view of S^2 from the +z side (points assumed in the upper hemisphere)."""
    return points[..., :2]


@figure("barycenters", description="Fréchet means and geodesic interpolation on S^2 and the Poincaré disk")
def barycenters_figure(ctx: FigureContext) -> FigureOutput:
    """Two modality clouds, their Fréchet means, the geodesic between them and its midpoint."""
    import matplotlib.pyplot as plt

    from ..manifolds import Hyperbolic, Sphere, frechet_mean

    rng = np.random.default_rng(ctx.seed)
    n = ctx.pick(200, 60)
    t = np.linspace(0.0, 1.0, 41)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    params: dict = {"n_per_modality": n}

    # --- sphere S^2: image and text clouds around two centres --------------------------------
    sphere = Sphere(dim=2)
    centres = sphere.projx(np.array([[0.7, 0.1, 0.7], [-0.5, 0.5, 0.7]]))
    clouds = [sphere.exp(np.repeat(c[None], n, 0), sphere.proju(c, 0.25 * rng.normal(size=(n, 3))))
              for c in centres]
    means = [frechet_mean(c, sphere).mean for c in clouds]
    both = frechet_mean(np.concatenate(clouds), sphere).mean
    path = sphere.geodesic(means[0], means[1], t)
    mid = sphere.geodesic(means[0], means[1], 0.5)
    ax = axes[0]
    circle = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(circle), np.sin(circle), color="k", lw=0.8)
    for c, m, col, lab in zip(clouds, means, ("tab:blue", "tab:orange"), ("image", "text")):
        xy = _sphere_to_xy(c)
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.4, color=col, label=f"{lab} embeddings")
        ax.scatter(*_sphere_to_xy(m), marker="*", s=180, color=col, edgecolor="k")
    ax.plot(*_sphere_to_xy(path).T, color="k", lw=1.5, label="geodesic between means")
    ax.scatter(*_sphere_to_xy(mid), marker="D", s=60, color="tab:green", edgecolor="k",
               label="geodesic midpoint")
    ax.scatter(*_sphere_to_xy(both), marker="P", s=80, color="tab:red", edgecolor="k",
               label="Fréchet mean of both")
    ax.set_aspect("equal")
    ax.set_title("unit sphere $S^2$ (view from +z)")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_xticks([])
    ax.set_yticks([])
    params["sphere_mid_vs_joint_mean_dist"] = float(sphere.dist(mid, both))

    # --- Poincaré disk ----------------------------------------------------------------------
    ball = Hyperbolic(2, model="poincare")
    centres_h = np.array([[0.55, 0.2], [-0.45, 0.45]])
    clouds_h = [ball.exp(np.repeat(c[None], n, 0), 0.08 * rng.normal(size=(n, 2))) for c in centres_h]
    means_h = [frechet_mean(c, ball).mean for c in clouds_h]
    path_h = ball.geodesic(means_h[0], means_h[1], t)
    mid_h = ball.geodesic(means_h[0], means_h[1], 0.5)
    ax = axes[1]
    ax.plot(np.cos(circle), np.sin(circle), color="k", lw=0.8)
    for c, m, col in zip(clouds_h, means_h, ("tab:blue", "tab:orange")):
        ax.scatter(c[:, 0], c[:, 1], s=6, alpha=0.4, color=col)
        ax.scatter(*m, marker="*", s=180, color=col, edgecolor="k")
    ax.plot(path_h[:, 0], path_h[:, 1], color="k", lw=1.5)
    straight = np.outer(1 - t, means_h[0]) + np.outer(t, means_h[1])
    ax.plot(straight[:, 0], straight[:, 1], color="grey", lw=0.8, ls="--", label="Euclidean chord")
    ax.scatter(*mid_h, marker="D", s=60, color="tab:green", edgecolor="k")
    ax.set_aspect("equal")
    ax.set_title("Poincaré disk: geodesics bend towards the origin")
    ax.legend(fontsize=7, loc="lower left")
    ax.set_xticks([])
    ax.set_yticks([])

    # --- check: constant speed along both geodesics ------------------------------------------
    ax = axes[2]
    for man, (a, b), path_, lab in ((sphere, means, path, "sphere"), (ball, means_h, path_h, "Poincaré")):
        total = float(man.dist(a, b))
        along = man.dist(np.repeat(np.asarray(a)[None], len(t), 0), path_)
        ax.plot(t, along / total, label=f"{lab}: $d(\\gamma(0),\\gamma(t))/d(\\gamma(0),\\gamma(1))$")
        params[f"{lab}_max_speed_error"] = float(np.max(np.abs(along / total - t)))
    ax.plot(t, t, "k:", lw=0.8, label="$t$")
    ax.set_xlabel("t")
    ax.set_title("geodesics have constant speed")
    ax.legend(fontsize=7)
    fig.tight_layout()
    numbers = {"n": n, "sphereMidToJointMean": params["sphere_mid_vs_joint_mean_dist"],
               "sphereSpeedError": params["sphere_max_speed_error"],
               "poincareSpeedError": params["Poincaré_max_speed_error"]}
    return FigureOutput(fig, params=params, numbers=numbers,
                        caption="Riemannian barycentres and geodesic interpolation")
