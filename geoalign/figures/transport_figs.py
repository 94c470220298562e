"""Figure of the transport section: Wasserstein barycentres of two modality distributions."""
from __future__ import annotations

import numpy as np

from .registry import FigureContext, FigureOutput, figure

__all__ = ["wasserstein_barycenter_figure"]


def _ellipse(mean, cov, n=100):
    vals, vecs = np.linalg.eigh(cov)
    t = np.linspace(0, 2 * np.pi, n)
    circle = np.stack([np.cos(t), np.sin(t)])
    return (mean[:, None] + vecs @ (2 * np.sqrt(vals)[:, None] * circle)).T  # 2-sigma contour


@figure("wasserstein_barycenter", description="W2 barycentres / displacement interpolation between two modalities")
def wasserstein_barycenter_figure(ctx: FigureContext) -> FigureOutput:
    """(a) free-support W2 barycentres between an 'image' ring and a 'text' blob for weights
    (1−t, t); (b) fixed-support entropic barycentres of two 1-D histograms versus their mixture;
    (c) Gaussian (Bures) barycentres of the two modalities' Gaussian fits."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from ..ot import barycenter, free_support_barycenter, gaussian_barycenter

    rng = np.random.default_rng(ctx.seed)
    n = ctx.pick(300, 80)
    angle = rng.uniform(0, 2 * np.pi, n)
    image = np.c_[np.cos(angle), np.sin(angle)] * (1 + 0.08 * rng.normal(size=(n, 1))) + [-2.5, 0]
    text = rng.normal(size=(n, 2)) @ np.array([[0.25, 0.0], [0.15, 0.6]]) + [2.5, 0.5]
    ts = [0.25, 0.5, 0.75]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax = axes[0]
    ax.scatter(*image.T, s=5, color="tab:blue", label="image embeddings (t = 0)")
    ax.scatter(*text.T, s=5, color="tab:orange", label="text embeddings (t = 1)")
    rows = []
    for k, t in enumerate(ts):
        res = free_support_barycenter([image, text], weights=np.array([1 - t, t]),
                                      support_size=n, reg=None, max_iter=ctx.pick(50, 15), seed=ctx.seed)
        sup = np.asarray(res.support)
        ax.scatter(*sup.T, s=5, color=plt.cm.viridis(0.2 + 0.3 * k), label=f"W2 barycentre, t = {t}")
        rows.append({"panel": "free_support", "t": t, "objective": float(res.value),
                     "n_iter": int(res.n_iter), "mean_x": float(sup[:, 0].mean())})
    ax.set_aspect("equal")
    ax.set_title("(a) free-support barycentres (exact OT)")
    ax.legend(fontsize=7, loc="lower left")

    # (b) 1-D histograms on a grid: displacement interpolation moves mass, mixtures fade it
    grid = np.linspace(0, 1, ctx.pick(200, 80))
    def bump(c, w):
        h = np.exp(-0.5 * ((grid - c) / w) ** 2)
        return h / h.sum()
    a = 0.6 * bump(0.15, 0.04) + 0.4 * bump(0.35, 0.03)
    b = bump(0.75, 0.06)
    C = (grid[:, None] - grid[None, :]) ** 2
    ax = axes[1]
    ax.plot(grid, a, color="tab:blue", label="modality A")
    ax.plot(grid, b, color="tab:orange", label="modality B")
    for k, t in enumerate(ts):
        res = barycenter(np.stack([a, b]), C, reg=ctx.pick(2e-4, 1e-3), weights=np.array([1 - t, t]),
                         tol=1e-5, max_iter=5000)
        q = np.asarray(res.barycenter)
        ax.plot(grid, q, color=plt.cm.viridis(0.2 + 0.3 * k), label=f"entropic W2 barycentre, t = {t}")
        mix = (1 - t) * a + t * b
        ax.plot(grid, mix, ":", color=plt.cm.viridis(0.2 + 0.3 * k), lw=0.8)
        rows.append({"panel": "fixed_support", "t": t, "objective": float(np.asarray(res.value)),
                     "n_iter": int(res.n_iter), "mean_x": float((grid * q).sum())})
    ax.set_title("(b) fixed support (dotted: L2 mixtures)")
    ax.set_xlabel("x")
    ax.legend(fontsize=7)

    # (c) Bures barycentres of the Gaussian fits
    means = np.stack([image.mean(0), text.mean(0)])
    covs = np.stack([np.cov(image.T), np.cov(text.T)])
    ax = axes[2]
    for m, S, col in zip(means, covs, ("tab:blue", "tab:orange")):
        ax.plot(*_ellipse(m, S).T, color=col)
    for k, t in enumerate(np.linspace(0.1, 0.9, 9)):
        res = gaussian_barycenter(means, covs, weights=np.array([1 - t, t]))
        ax.plot(*_ellipse(np.asarray(res.mean), np.asarray(res.cov)).T,
                color=plt.cm.viridis(t), lw=0.9)
        rows.append({"panel": "gaussian", "t": float(t), "objective": float(res.value),
                     "n_iter": int(res.n_iter), "mean_x": float(np.asarray(res.mean)[0])})
    ax.set_aspect("equal")
    ax.set_title("(c) Gaussian (Bures) barycentres, 2σ contours")
    fig.tight_layout()
    table = pd.DataFrame(rows)
    # the mean of a W2 barycentre is the weighted mean of the means: a check of the free-support solver
    free = table[table.panel == "free_support"].set_index("t").mean_x
    predicted = {t: (1 - t) * image[:, 0].mean() + t * text[:, 0].mean() for t in ts}
    numbers = {"n": n, "freeMeanXHalf": float(free.loc[0.5]), "predictedMeanXHalf": float(predicted[0.5]),
               "freeMeanXMaxError": float(max(abs(free.loc[t] - predicted[t]) for t in ts))}
    return FigureOutput(fig, table=table, params={"n": n, "ts": ts}, numbers=numbers,
                        caption="Wasserstein barycentres of two modality distributions")
