"""Figures of the approximate-fiber-product section (design.md §2.2, statements 1–3)."""
from __future__ import annotations

import numpy as np

from .registry import FigureContext, FigureOutput, figure

__all__ = ["fiber_curves_figure", "robustness_figure", "dimension_figure"]


def _planted(ctx: FigureContext, n: int, snr: float = 5.0, seed_offset: int = 0):
    from ..data.planted import PlantedAlignment

    gen = PlantedAlignment(dim=64, shared_rank=8, private_ranks=(4, 4), snr=snr, n_classes=10,
                           private_scale=0.5, random_state=ctx.seed + seed_offset)
    return gen.sample(n)


@figure("fiber_curves", description="N(eps), rho(eps) for true vs random pairs; precision/recall of F_eps")
def fiber_curves_figure(ctx: FigureContext) -> FigureOutput:
    """ρ(ε) of all pairs (exact and sampled with CI) and of true pairs; precision and recall of
    F_ε and of the shared-subspace join F^s_ε against the planted true pairs."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from ..fiber import estimate_density, fiber_counts, pair_distances

    n = ctx.pick(3000, 600)
    s = _planted(ctx, n)
    U, V = s.U, s.V
    true_d = pair_distances(U, V)
    grid = np.linspace(0.0, float(np.quantile(pair_distances(U, V[::-1].copy()), 0.99)), 64)
    counts = fiber_counts(U, V, grid)
    est = estimate_density(U, V, grid, n_samples=ctx.pick(20000, 4000), seed=ctx.seed)
    B = s.basis_shared
    true_s = pair_distances(U, V, shared_projector=B)
    counts_s = fiber_counts(U, V, grid, shared_projector=B)
    tp = np.array([(true_d <= e).sum() for e in grid])
    tp_s = np.array([(true_s <= e).sum() for e in grid])
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(counts.counts > 0, tp / counts.counts, np.nan)
        prec_s = np.where(counts_s.counts > 0, tp_s / counts_s.counts, np.nan)
    rec, rec_s = tp / n, tp_s / n
    table = pd.DataFrame({"eps": grid, "N": counts.counts, "rho": counts.rho,
                          "rho_sampled": est.rho, "rho_lower": est.lower, "rho_upper": est.upper,
                          "rho_true_pairs": rec, "precision": prec, "recall": rec,
                          "N_shared": counts_s.counts, "precision_shared": prec_s,
                          "recall_shared": rec_s})

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    ax.plot(grid, counts.rho, label=r"all pairs $\rho(\varepsilon)=N(\varepsilon)/n^2$ (exact)")
    ax.fill_between(grid, est.lower, est.upper, alpha=0.3, color="tab:blue",
                    label=f"sampled estimate, 95% CI ({est.n_samples} pairs)")
    ax.plot(grid, rec, label="true pairs (fraction within ε)", color="tab:orange")
    ax.set_yscale("log")
    ax.set_ylim(max(0.5 / n**2, 1e-7), 1.5)
    ax.set_xlabel("ε")
    ax.set_ylabel("fraction of pairs within ε")
    ax.set_title(f"planted model, n = {n}, d = 64")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.plot(grid, prec, color="tab:green", label=r"precision of $F_\varepsilon$")
    ax.plot(grid, rec, color="tab:orange", label=r"recall of $F_\varepsilon$")
    ax.plot(grid, prec_s, "--", color="tab:green", label=r"precision of $F^s_\varepsilon$ (shared only)")
    ax.plot(grid, rec_s, "--", color="tab:orange", label=r"recall of $F^s_\varepsilon$")
    ax.set_xlabel("ε")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("recovering the true pairs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    best = int(np.nanargmax(2 * prec * rec / (prec + rec + 1e-300)))
    return FigureOutput(fig, table=table, params={"n": n, "dim": 64, "shared_rank": 8,
                                                  "private_ranks": [4, 4], "snr": 5.0,
                                                  "best_eps": float(grid[best]),
                                                  "precision_at_best": float(prec[best]),
                                                  "recall_at_best": float(rec[best])},
                        caption="N(eps) and rho(eps) curves with precision/recall")


@figure("robustness", description="observed tolerance after perturbation vs the bound eps + delta_f + delta_g")
def robustness_figure(ctx: FigureContext) -> FigureOutput:
    """Statement 2: for perturbed encoders f', g' with sup-norm δ_f, δ_g, the smallest ε' with
    F_ε(f,g) ⊆ F_ε'(f',g') never exceeds ε + δ_f + δ_g, and nearly attains it for adversarial
    perturbations (each point moved along its pair's difference)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from ..fiber import fiber_product, pair_distances

    rng = np.random.default_rng(ctx.seed)
    n = ctx.pick(1500, 400)
    s = _planted(ctx, n, seed_offset=1)
    U, V = s.U, s.V
    true_d = pair_distances(U, V)
    eps_grid = np.quantile(true_d, ctx.pick([0.05, 0.2, 0.4, 0.6, 0.8, 0.95], [0.2, 0.6, 0.95]))
    deltas = ctx.pick([(0.25, 0.25), (0.5, 0.25), (1.0, 1.0)], [(0.25, 0.25), (1.0, 1.0)])
    rows = []
    for df_, dg_ in deltas:
        # random perturbations of exactly sup-norm delta (random directions)
        dirs_u = rng.normal(size=U.shape)
        dirs_v = rng.normal(size=V.shape)
        Up = U + df_ * dirs_u / np.linalg.norm(dirs_u, axis=1, keepdims=True)
        Vp = V + dg_ * dirs_v / np.linalg.norm(dirs_v, axis=1, keepdims=True)
        # adversarial perturbation for the true pairs: push each point away from its partner
        diff = U - V
        unit = diff / np.maximum(np.linalg.norm(diff, axis=1, keepdims=True), 1e-12)
        Ua, Va = U + df_ * unit, V - dg_ * unit
        for eps in eps_grid:
            F = fiber_product(U, V, float(eps))
            i, j = F.pairs[:, 0], F.pairs[:, 1]
            obs = float(pair_distances(Up[i], Vp[j]).max()) if F.count else np.nan
            diag = i == j
            adv = float(pair_distances(Ua[i[diag]], Va[j[diag]]).max()) if diag.any() else np.nan
            rows.append({"delta_f": df_, "delta_g": dg_, "eps": float(eps), "pairs": F.count,
                         "observed_random": obs, "observed_adversarial": adv,
                         "bound": float(eps) + df_ + dg_})
    table = pd.DataFrame(rows)
    assert (table.observed_random <= table.bound + 1e-9).all()  # statement 2 holds
    assert (table.observed_adversarial.dropna() <= table.bound[table.observed_adversarial.notna()] + 1e-9).all()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for k, ((df_, dg_), g) in enumerate(table.groupby(["delta_f", "delta_g"])):
        c = f"C{k}"
        ax.plot(g.eps, g.bound, "-", color=c, label=fr"bound $\varepsilon+{df_}+{dg_}$")
        ax.plot(g.eps, g.observed_adversarial, "o", color=c, label="observed (adversarial)")
        ax.plot(g.eps, g.observed_random, "x", color=c, label="observed (random directions)")
    ax.plot(eps_grid, eps_grid, "k:", lw=0.8, label="ε (unperturbed)")
    ax.set_xlabel("ε")
    ax.set_ylabel(r"smallest $\varepsilon'$ with $F_\varepsilon(f,g)\subseteq F_{\varepsilon'}(f',g')$")
    ax.set_title("robustness of the approximate fiber product")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return FigureOutput(fig, table=table, params={"n": n, "deltas": deltas,
                                                  "eps_grid": [float(e) for e in eps_grid]},
                        caption="observed tolerance vs the perturbation bound")


@figure("dimension", description="sqrt(d) scaling of true-pair distances, recall transition, JL projections")
def dimension_figure(ctx: FigureContext) -> FigureOutput:
    """Statement 3: (a) true-pair distances ≈ σ√(2d); (b) recall vs ε/√d sharpens with d;
    (c) a Gaussian random projection to k dimensions preserves F_ε (Jaccard index and the
    sandwich F_{ε/√(1+η)} ⊆ F^R_ε ⊆ F_{ε/√(1−η)})."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from ..fiber import fiber_product, pair_distances

    rng = np.random.default_rng(ctx.seed)
    sigma = 0.5
    dims = ctx.pick([4, 8, 16, 32, 64, 128, 256, 512, 1024], [4, 16, 64, 256])
    n = ctx.pick(2000, 400)
    rows = []
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for d in dims:
        S = rng.normal(size=(n, d))
        F = S + sigma * rng.normal(size=(n, d))
        G = S + sigma * rng.normal(size=(n, d))
        r = pair_distances(F, G)
        rows.append({"part": "concentration", "d": d, "mean": r.mean(), "sd": r.std(),
                     "predicted_mean": sigma * np.sqrt(2 * d)})
        x = np.sort(r) / np.sqrt(d)
        axes[1].plot(x, np.arange(1, n + 1) / n, label=f"d = {d}")
    conc = pd.DataFrame([r for r in rows if r["part"] == "concentration"])
    ax = axes[0]
    ax.errorbar(conc.d, conc["mean"], yerr=conc.sd, fmt="o", label="true-pair distance (mean ± sd)")
    dd = np.geomspace(min(dims), max(dims), 100)
    ax.plot(dd, sigma * np.sqrt(2 * dd), "k--", label=r"$\sigma\sqrt{2d}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("dimension d")
    ax.set_ylabel("distance")
    ax.set_title(f"(a) concentration, σ = {sigma}")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.axvline(sigma * np.sqrt(2), color="k", ls=":", lw=0.8)
    ax.set_xlabel(r"$\varepsilon/\sqrt{d}$")
    ax.set_ylabel("recall of true pairs")
    ax.set_title(r"(b) phase transition at $\varepsilon/\sqrt{d}=\sigma\sqrt{2}$")
    ax.legend(fontsize=7)

    # (c) Johnson–Lindenstrauss: project d = 512 embeddings to k dimensions
    d, m = 512, ctx.pick(600, 200)
    S = rng.normal(size=(m, d))
    F = S + sigma * rng.normal(size=(m, d))
    G = S + sigma * rng.normal(size=(m, d))
    eps = float(np.quantile(pair_distances(F, G), 0.5))
    base = fiber_product(F, G, eps)
    base_set = set(map(tuple, base.pairs.tolist()))
    ks = ctx.pick([8, 16, 32, 64, 128, 256, 512], [16, 64, 256])
    eta = 0.25
    k_jl = int(np.ceil(4 * np.log(m * m) / (eta**2 / 2 - eta**3 / 3)))
    jl_rows = []
    for k in ks:
        R = rng.normal(size=(d, k)) / np.sqrt(k)
        proj = fiber_product(F @ R, G @ R, eps)
        ps = set(map(tuple, proj.pairs.tolist()))
        inner = set(map(tuple, fiber_product(F, G, eps / np.sqrt(1 + eta)).pairs.tolist()))
        outer = set(map(tuple, fiber_product(F, G, eps / np.sqrt(1 - eta)).pairs.tolist()))
        jl_rows.append({"part": "jl", "k": k, "jaccard": len(ps & base_set) / max(len(ps | base_set), 1),
                        "sandwich_holds": bool(inner <= ps <= outer), "pairs": len(ps)})
    jl = pd.DataFrame(jl_rows)
    ax = axes[2]
    ax.plot(jl.k, jl.jaccard, "o-", label=r"Jaccard($F_\varepsilon$, $F^R_\varepsilon$)")
    held = jl[jl.sandwich_holds]
    ax.plot(held.k, held.jaccard, "s", mfc="none", ms=10, color="tab:green",
            label=fr"sandwich holds (η = {eta})")
    ax.axvline(k_jl, color="grey", ls="--", lw=0.8, label=f"JL bound k = {k_jl}")
    ax.set_xscale("log")
    ax.set_xlabel("projected dimension k")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"(c) random projections, d = {d}, n = {m}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    table = pd.concat([conc, jl], ignore_index=True)
    return FigureOutput(fig, table=table, params={"sigma": sigma, "dims": dims, "n": n,
                                                  "jl_d": d, "jl_n": m, "eta": eta, "k_jl": k_jl},
                        caption="dimension sensitivity")
