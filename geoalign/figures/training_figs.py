"""Figures of the training section: QSMA training curves and loss-term ablation.

The method comparison is :mod:`geoalign.figures.comparison_figs`.
"""
from __future__ import annotations

import numpy as np

from .registry import FigureContext, FigureOutput, figure

__all__ = ["qsma_training_figure", "summarize_ablation", "ABLATION_VARIANTS"]


def _digits_split(seed: int):
    from ..data.digits import load_digits_two_view

    return load_digits_two_view(scale="unit", val_fraction=0.2, seed=seed)


#: Loss-term variants of the ablation: label -> switches passed to QSMA.
ABLATION_VARIANTS: dict[str, dict] = {
    "all terms": {},
    "without contrastive": {"use_contrastive": False},
    "without sliced alignment": {"use_alignment": False},
    "without barycentric": {"use_barycentric": False},
    "without KL": {"use_kl": False},
    "without all three transport terms": {"use_alignment": False, "use_barycentric": False,
                                          "use_kl": False},
}
_VARIANT_KEYS = {"all terms": "All", "without contrastive": "NoContrastive",
                 "without sliced alignment": "NoSliced", "without barycentric": "NoBarycentric",
                 "without KL": "NoKl", "without all three transport terms": "NoTransport"}


def _t_interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval of the mean of ``x``."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    if x.size < 2:
        return float(x.mean()), float("nan")
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return float(x.mean()), float(half)


def _ablation_data(name: str, seed: int):
    """(train a, train b, train y, test a, test b, test y) of a data set of the ablation."""
    if name == "digits":
        d = _digits_split(seed)
        return d.X_a_train, d.X_b_train, d.y_train, d.X_a_test, d.X_b_test, d.y_test
    from ..comparison import load_comparison_data

    z = load_comparison_data(name, seed=seed)
    return z.X_a_train, z.X_b_train, z.y_train, z.X_a_test, z.X_b_test, z.y_test


def summarize_ablation(runs, level: float = 0.95):
    """Per data set and variant: mean mAP@all with a t confidence interval over seeds, and the
    paired difference to ``"all terms"`` (same seed) with its interval.

    Parameters
    ----------
    runs : pandas.DataFrame
        Columns ``dataset``, ``variant``, ``seed``, ``map_all``; every variant run on the same
        seeds as ``"all terms"``.

    Returns
    -------
    pandas.DataFrame
        Columns ``dataset, variant, seeds, map_mean, map_ci, diff_mean, diff_ci`` where ``*_ci`` is
        the half-width of the ``level`` interval.
    """
    import pandas as pd

    rows = []
    for dataset, g in runs.groupby("dataset", sort=False):
        ref = g[g.variant == "all terms"].set_index("seed").map_all
        for variant, v in g.groupby("variant", sort=False):
            v = v.set_index("seed").map_all
            if set(v.index) != set(ref.index):
                raise ValueError(f"variant {variant!r} of {dataset!r} ran on seeds {sorted(v.index)}, "
                                 f"'all terms' on {sorted(ref.index)}: the differences must be paired")
            m, h = _t_interval(v.to_numpy(), level)
            dm, dh = _t_interval((v - ref.loc[v.index]).to_numpy(), level)
            rows.append({"dataset": dataset, "variant": variant, "seeds": len(v), "map_mean": m,
                         "map_ci": h, "diff_mean": dm, "diff_ci": dh})
    return pd.DataFrame(rows)


@figure("qsma_training", description="QSMA training curves on digits and a multi-seed ablation of each loss term")
def qsma_training_figure(ctx: FigureContext) -> FigureOutput:
    """Per-epoch loss terms of QSMA on the digits two-view task (seen classes 0–6), and the
    multi-seed ablation of its loss terms on both data sets of the comparison (digits: unseen
    classes 7–9; planted: 3 held-out classes): unseen-class mAP@all of each variant with a 95%
    Student-t interval over training seeds, and the paired difference to the full loss.  The data
    split is fixed (``ctx.seed``); the seeds vary the initialisation, the batches and the Sobol
    scrambling.  CCA (deterministic) is the reference line."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import torch

    from ..comparison import QSMA_PAPER_PARAMS
    from ..evaluation import retrieval_scores
    from ..models.linear import CCA
    from ..models.qsma import QSMA

    epochs = ctx.pick(30, 4)
    seeds = [ctx.seed + i for i in range(ctx.pick(5, 2))]
    datasets = ("digits", "planted")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small MLPs: one thread is fastest and deterministic
    runs, cca_map, history = [], {}, None
    try:
        for dataset in datasets:
            Xa, Xb, y, Ta, Tb, ty = _ablation_data(dataset, ctx.seed)
            cca = CCA(dim=4, reg=1e-2).fit(Xa, Xb)
            cca_map[dataset] = retrieval_scores(cca.transform_a(Ta), cca.transform_b(Tb), ty, ty).map_all
            for variant, switches in ABLATION_VARIANTS.items():
                for seed in seeds:
                    model = QSMA(**QSMA_PAPER_PARAMS, **switches, max_epochs=epochs, random_state=seed,
                                 device=ctx.device, trainer_options={"progress": False})
                    model.fit(Xa, Xb, y)
                    res = retrieval_scores(model.transform_a(Ta), model.transform_b(Tb), ty, ty)
                    runs.append({"dataset": dataset, "variant": variant, "seed": seed,
                                 "map_all": res.map_all})
                    if dataset == "digits" and not switches and seed == ctx.seed:
                        history = pd.DataFrame(model.history_.records)
    finally:
        torch.set_num_threads(threads)
    runs = pd.DataFrame(runs)
    summary = summarize_ablation(runs)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), gridspec_kw={"width_ratios": [1.1, 1, 0.8]},
                             layout="constrained")
    ax = axes[0]
    terms = ("contrastive", "alignment", "barycentric", "kl", "orthogonality", "consistency")
    for col in [f"train_{t}" for t in terms if f"train_{t}" in history]:
        ax.plot(history.epoch, history[col], label=col.removeprefix("train_") + " (unweighted)")
    ax.plot(history.epoch, history.train_loss, "k-", lw=2, label="total (train)")
    if "val_loss" in history:
        ax.plot(history.epoch, history.val_loss, "k--", lw=2, label="total (validation)")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(f"(a) QSMA on digits, seed {ctx.seed}")
    ax.legend(fontsize=7, ncol=2)
    variants = list(ABLATION_VARIANTS)[::-1]
    ypos = {v: i for i, v in enumerate(variants)}
    offsets = dict(zip(datasets, (0.15, -0.15)))
    colors = dict(zip(datasets, ("tab:blue", "tab:orange")))
    ax = axes[1]
    for dataset in datasets:
        g = summary[summary.dataset == dataset]
        r = runs[runs.dataset == dataset]
        y = np.array([ypos[v] for v in g.variant]) + offsets[dataset]
        ax.errorbar(g.map_mean, y, xerr=g.map_ci, fmt="o", color=colors[dataset], capsize=3,
                    label=f"{dataset}: mean, 95% t-interval")
        ax.scatter(r.map_all, np.array([ypos[v] for v in r.variant]) + 2 * offsets[dataset], s=6,
                   color=colors[dataset], alpha=0.5)
        ax.axvline(cca_map[dataset], color=colors[dataset], ls="--", lw=0.8, label=f"{dataset}: CCA (dim 4)")
    ax.set_yticks(range(len(variants)), variants)
    ax.set_xlabel("unseen-class mAP@all (small dots: single seeds)")
    ax.set_title(f"(b) ablation, {len(seeds)} seeds per variant")
    ax.legend(fontsize=7, loc="lower left")
    ax = axes[2]
    for dataset in datasets:
        g = summary[(summary.dataset == dataset) & (summary.variant != "all terms")]
        y = np.array([ypos[v] for v in g.variant]) + offsets[dataset]
        sd = runs[(runs.dataset == dataset) & (runs.variant == "all terms")].map_all.std(ddof=1)
        ax.axvspan(-sd, sd, color=colors[dataset], alpha=0.12, label=f"{dataset}: ±1 seed sd of all terms")
        ax.errorbar(g.diff_mean, y, xerr=g.diff_ci, fmt="o", color=colors[dataset], capsize=3,
                    label=f"{dataset}: paired Δ, 95% t-interval")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_yticks(range(len(variants)), [""] * len(variants))
    ax.set_ylim(axes[1].get_ylim())
    ax.set_xlabel("Δ mAP@all vs all terms, same seed (symlog)")
    ax.set_title("(c) paired differences")
    ax.margins(x=0.1)
    ax.legend(fontsize=7, loc="upper left")

    defaults = QSMA().get_params()
    numbers = {"ablationSeeds": len(seeds), "ablationEpochs": epochs,
               "lambdaAlignment": f"{defaults['lambda_alignment']:g}",
               "lambdaBarycentric": f"{defaults['lambda_barycentric']:g}",
               "lambdaKl": f"{defaults['lambda_kl']:g}", "latentDim": QSMA_PAPER_PARAMS["dim"]}
    for _, row in summary.iterrows():
        key = row.dataset + _VARIANT_KEYS[row.variant]
        numbers.update({f"{key}Map": f"{row.map_mean:.3f}", f"{key}MapCi": f"{row.map_ci:.3f}"})
        if row.variant != "all terms":
            numbers.update({f"{key}Diff": _signed(row.diff_mean), f"{key}DiffCi": f"{row.diff_ci:.4f}"})
    for dataset in datasets:
        numbers[f"{dataset}Cca"] = f"{cca_map[dataset]:.3f}"
        s = summary[(summary.dataset == dataset) & (summary.variant != "all terms")]
        transport = s[s.variant.isin(["without sliced alignment", "without barycentric", "without KL",
                                      "without all three transport terms"])]
        numbers[f"{dataset}TransportMaxAbsDiff"] = f"{transport.diff_mean.abs().max():.4f}"
        sd = runs[(runs.dataset == dataset) & (runs.variant == "all terms")].map_all.std(ddof=1)
        numbers[f"{dataset}SeedSd"] = f"{sd:.3f}"
    table = pd.concat([history.assign(part="history"), runs.assign(part="ablation_runs"),
                       summary.assign(part="ablation_summary")], ignore_index=True)
    return FigureOutput(fig, table=table,
                        params={**QSMA_PAPER_PARAMS, "epochs": epochs, "seeds": seeds,
                                "datasets": list(datasets), "variants": list(ABLATION_VARIANTS),
                                "cca_map_all": cca_map},
                        caption="QSMA training curves and multi-seed loss-term ablation", numbers=numbers)


def _signed(x: float, decimals: int = 4) -> str:
    """``+0.0012`` / ``\\ensuremath{-}0.0012`` / ``0.0000``: a difference with its sign."""
    x = round(float(x), decimals)
    if x == 0:
        return f"{0:.{decimals}f}"
    return f"+{x:.{decimals}f}" if x > 0 else f"\\ensuremath{{-}}{-x:.{decimals}f}"
