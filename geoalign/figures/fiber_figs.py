"""Figures of the approximate-fiber-product section (Statements 1–3 of :doc:`/design/mathematics`)."""
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
    best_s = int(np.nanargmax(2 * prec_s * rec_s / (prec_s + rec_s + 1e-300)))
    return FigureOutput(fig, table=table, params={"n": n, "dim": 64, "shared_rank": 8,
                                                  "private_ranks": [4, 4], "snr": 5.0,
                                                  "best_eps": float(grid[best]),
                                                  "precision_at_best": float(prec[best]),
                                                  "recall_at_best": float(rec[best])},
                        numbers={"n": n, "bestEps": float(grid[best]), "precisionAtBest": float(prec[best]),
                                 "recallAtBest": float(rec[best]), "sharedBestEps": float(grid[best_s]),
                                 "sharedPrecisionAtBest": float(prec_s[best_s]),
                                 "sharedRecallAtBest": float(rec_s[best_s]),
                                 "sampledPairs": est.n_samples, "gridPoints": len(grid),
                                 "coveredPoints": int(((counts.rho >= est.lower) & (counts.rho <= est.upper)).sum())},
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
    ratio_adv = (table.observed_adversarial / table.bound).dropna()
    ratio_rand = table.observed_random / table.bound
    numbers = {"n": n, "cases": len(table), "maxRatioRandom": float(ratio_rand.max()),
               "minRatioRandom": float(ratio_rand.min()), "minRatioAdversarial": f"{ratio_adv.min():.4f}",
               "maxRatioAdversarial": f"{ratio_adv.max():.6f}"}
    return FigureOutput(fig, table=table, params={"n": n, "deltas": deltas,
                                                  "eps_grid": [float(e) for e in eps_grid]},
                        numbers=numbers, caption="observed tolerance vs the perturbation bound")


def _jl_dimension(n_pairs: int, eta: float) -> int:
    """Smallest k of Statement 3(b): k >= 4 ln N / (eta^2/2 - eta^3/3), N = n_pairs."""
    return int(np.ceil(4 * np.log(n_pairs) / (eta**2 / 2 - eta**3 / 3)))


def _jl_experiment(ctx: FigureContext, rng: np.random.Generator):
    """Random projections of d-dimensional pairs to k dimensions, below, at and beyond k_JL.

    Impostor distances are made comparable to true-pair distances (signal scale tau with
    tau^2 = ((1+eta)/(1-eta) - 1) sigma^2), and eps is set so that the lower edge
    eps/sqrt(1+eta) of the band is the median true-pair distance: half the true pairs must be
    kept, and the impostors straddle the upper edge eps/sqrt(1-eta), so half of them lie inside
    the band and the other half just beyond it, where they must be dropped.
    """
    from scipy.spatial.distance import cdist

    from ..fiber import fiber_product

    eta, sigma = 0.25, 1.0
    d, m = ctx.pick(4096, 2048), ctx.pick(400, 100)
    n_pairs = m * m
    k_jl = _jl_dimension(n_pairs, eta)
    ks = sorted({*ctx.pick([16, 64, 256, 512, 1024], [16, 256]), k_jl, *ctx.pick([2 * k_jl], [])})
    reps = ctx.pick(5, 2)
    tau = sigma * np.sqrt((1 + eta) / (1 - eta) - 1)
    S = tau * rng.normal(size=(m, d))
    F = S + sigma * rng.normal(size=(m, d))
    G = S + sigma * rng.normal(size=(m, d))
    D = cdist(F, G)
    true_d = np.diag(D)
    impostor = ~np.eye(m, dtype=bool)
    eps = float(np.median(true_d) * np.sqrt(1 + eta))
    lo, hi = eps / np.sqrt(1 + eta), eps / np.sqrt(1 - eta)
    inner, outer = D <= lo, D <= hi
    band = outer & ~inner
    exact = fiber_product(F, G, eps)
    base = np.zeros((m, m), dtype=bool)
    base[exact.pairs[:, 0], exact.pairs[:, 1]] = True
    rows = []
    for k in ks:
        for rep in range(reps):
            R = rng.normal(size=(d, k)) / np.sqrt(k)
            FR, GR = F @ R, G @ R
            proj_pairs = fiber_product(FR, GR, eps).pairs
            proj = np.zeros((m, m), dtype=bool)
            proj[proj_pairs[:, 0], proj_pairs[:, 1]] = True
            distortion = float(np.abs(cdist(FR, GR) ** 2 / D**2 - 1).max())
            lost = int((inner & ~proj).sum())      # must be kept, dropped
            admitted = int((proj & ~outer).sum())  # must be dropped, kept
            rows.append({"part": "jl", "k": k, "rep": rep, "max_distortion": distortion,
                         "lost_inner": lost, "admitted_outer": admitted,
                         "sandwich_holds": lost == 0 and admitted == 0,
                         "jaccard": float((proj & base).sum() / max((proj | base).sum(), 1)),
                         "pairs": int(proj.sum())})
    counts = {"true_below": int((true_d <= lo).sum()), "true_in_band": int(band.diagonal().sum()),
              "impostors_in_band": int((band & impostor).sum()),
              "impostors_beyond": int((~outer & impostor).sum()),
              "impostors_near_edge": int(((D > hi) & (D <= hi * 1.02) & impostor).sum())}
    setup = {"eta": eta, "sigma": sigma, "tau": float(tau), "d": d, "n": m, "n_pairs": n_pairs,
             "k_jl": k_jl, "ks": ks, "reps": reps, "eps": eps, "lower_edge": float(lo),
             "upper_edge": float(hi), **counts}
    return setup, D, true_d, impostor, rows


@figure("dimension", description="sqrt(d) scaling of true-pair distances, recall transition, JL projections")
def dimension_figure(ctx: FigureContext) -> FigureOutput:
    """Statement 3: (a) true-pair distances ≈ σ√(2d); (b) recall vs ε/√d sharpens with d;
    (c, d) Gaussian random projections to k dimensions below, at and beyond the
    Johnson–Lindenstrauss dimension k_JL = ⌈4 ln N/(η²/2 − η³/3)⌉, N = n², with a tolerance ε
    chosen so that the sandwich F_{ε/√(1+η)} ⊆ F^R_ε ⊆ F_{ε/√(1−η)} is a real test: true
    pairs at the lower edge of the band and impostors at its upper edge."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from ..fiber import pair_distances

    rng = np.random.default_rng(ctx.seed)
    sigma = 0.5
    dims = ctx.pick([4, 8, 16, 32, 64, 128, 256, 512, 1024], [4, 16, 64, 256])
    n = ctx.pick(2000, 400)
    rows = []
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    axes = axes.ravel()
    for d in dims:
        S = rng.normal(size=(n, d))
        F = S + sigma * rng.normal(size=(n, d))
        G = S + sigma * rng.normal(size=(n, d))
        r = pair_distances(F, G)
        rows.append({"part": "concentration", "d": d, "mean": r.mean(), "sd": r.std(),
                     "predicted_mean": sigma * np.sqrt(2 * d)})
        x = np.sort(r) / np.sqrt(d)
        axes[1].plot(x, np.arange(1, n + 1) / n, label=f"d = {d}")
    conc = pd.DataFrame(rows)
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

    setup, D, true_d, impostor, jl_rows = _jl_experiment(ctx, rng)
    eta, k_jl = setup["eta"], setup["k_jl"]
    ax = axes[2]
    bins = np.linspace(float(D.min()), float(D.max()), 80)
    ax.hist(D[impostor], bins=bins, density=True, alpha=0.6, label="impostors (i ≠ j)")
    ax.hist(true_d, bins=bins, density=True, alpha=0.6, label="true pairs (i = j)")
    ax.axvspan(setup["lower_edge"], setup["upper_edge"], color="grey", alpha=0.2,
               label=r"band $(\varepsilon/\sqrt{1+\eta},\ \varepsilon/\sqrt{1-\eta}]$")
    ax.axvline(setup["eps"], color="k", ls="--", lw=0.8, label="ε")
    ax.set_xlabel(f"distance in R^{setup['d']}")
    ax.set_ylabel("density")
    ax.set_title(f"(c) the band is a real test: n = {setup['n']}, η = {eta}")
    ax.legend(fontsize=7)
    jl = pd.DataFrame(jl_rows)
    by_k = jl.groupby("k").agg(distortion_max=("max_distortion", "max"),
                               distortion_min=("max_distortion", "min"),
                               held=("sandwich_holds", "sum"), draws=("sandwich_holds", "size"),
                               violations=("lost_inner", "mean"), admitted=("admitted_outer", "mean"),
                               jaccard=("jaccard", "mean")).reset_index()
    by_k["violations"] = by_k["violations"] + by_k.pop("admitted")
    ax = axes[3]
    ax.fill_between(by_k.k, by_k.distortion_min, by_k.distortion_max, alpha=0.3,
                    label=f"max over the N = n² pairs of |‖Rv‖²/‖v‖² − 1| ({setup['reps']} draws)")
    ax.plot(by_k.k, by_k.distortion_max, "o-")
    ax.axhline(eta, color="tab:red", ls=":", label=f"η = {eta}")
    ax.axvline(k_jl, color="grey", ls="--", lw=0.8, label=f"k_JL = {k_jl}")
    for _, r in by_k.iterrows():
        ax.annotate(f"{int(r.held)}/{int(r.draws)}", (r.k, r.distortion_max), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("projected dimension k")
    ax.set_ylabel("largest distortion")
    ax.set_title("(d) JL: draws where the sandwich holds (labels)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    table = pd.concat([conc, jl], ignore_index=True)
    at = by_k[by_k.k == k_jl].iloc[0]
    below = by_k[by_k.k < k_jl]
    beyond = by_k[by_k.k > k_jl]
    numbers = {
        "jlEta": f"{eta:g}", "jlDim": setup["d"], "jlN": setup["n"], "jlPairs": setup["n_pairs"],
        "kJl": k_jl, "jlDraws": setup["reps"], "jlTau": setup["tau"],
        "jlTrueBelow": setup["true_below"], "jlTrueInBand": setup["true_in_band"],
        "jlImpostorsInBand": setup["impostors_in_band"],
        "jlImpostorsBeyond": setup["impostors_beyond"],
        "jlImpostorsNearEdge": setup["impostors_near_edge"],
        "jlHeldAtKJl": int(at.held), "jlDistortionAtKJl": float(at.distortion_max),
        "jlJaccardAtKJl": f"{at.jaccard:.3f}",
        "jlHeldBeyond": int(beyond.held.sum()), "jlDrawsBeyond": int(beyond.draws.sum()),
        "jlDistortionBeyond": float(beyond.distortion_max.max()) if len(beyond) else float(at.distortion_max),
        "jlHeldBelow": int(below.held.sum()), "jlDrawsBelow": int(below.draws.sum()),
        "jlLargestKBelow": int(below.k.max()),
        "jlDistortionLargestKBelow": float(below.distortion_max.iloc[-1]),
        "jlViolationsLargestKBelow": f"{below.violations.iloc[-1]:.1f}",
        "jlSmallestKAllHeld": int(by_k[by_k.held == by_k.draws].k.min()) if (by_k.held == by_k.draws).any() else 0,
        "jlLargestKNoneHeld": int(by_k[by_k.held == 0].k.max()) if (by_k.held == 0).any() else 0,
        "jlSmallestK": int(below.k.min()),
        "jlViolationsSmallestK": f"{below.violations.iloc[0]:.0f}",
        "jlJaccardSmallestK": float(below.jaccard.iloc[0]),
    }
    return FigureOutput(fig, table=table,
                        params={"sigma": sigma, "dims": dims, "n": n,
                                **{f"jl_{k}": v for k, v in setup.items()}},
                        caption="dimension sensitivity and random projections", numbers=numbers)
