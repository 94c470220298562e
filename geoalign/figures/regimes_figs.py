r"""Figures of the semi-paired and transductive regimes (studies ``semi_paired``, ``transductive``).

Each figure runs its study (:mod:`geoalign.studies`) through
:func:`geoalign.studies.run_study` with the cell cache ``.sweep_cache/<study>``
(so cells computed by ``benchmarks/regimes.py`` are reused) and plots, per data
set, the unseen-class cross-view mAP@all of the three arms — QSMA with every
term (one curve per alignment weight), QSMA contrastive-only, CCA — as mean
:math:`\pm` 95 % confidence interval over seeds (Student t,
:math:`\bar x \pm t_{0.975, n-1}\, s/\sqrt n`).  The gain of the transport terms
is the per-seed paired difference QSMA(all terms, best weight) - QSMA
(contrastive-only), with its own 95 % CI; the figure title says whether the
issue's target (transductive: >= 0.05 with a CI above 0; semi-paired at <= 5 %
pairs: >= 0.03) is met.  Transductive results are labelled as such and never
drawn with inductive ones except the inductive references, marked "inductive".
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .registry import FigureContext, FigureOutput, figure

__all__ = ["semi_paired_figure", "transductive_figure", "summarize_regime", "regime_numbers",
           "quick_grid", "mean_ci", "TARGETS"]

#: the issue's targets for the gain of the transport terms (mAP@all)
TARGETS = {"semi_paired": 0.03, "transductive": 0.05}
_SETTING = {"semi_paired": "paired_fraction", "transductive": "variant"}


def mean_ci(values) -> tuple[float, float]:
    r"""Mean and half-width of the 95 % Student-t interval, :math:`t_{0.975,n-1}\, s/\sqrt n`
    (half-width NaN for fewer than 2 values)."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return float(v.mean()) if v.size else float("nan"), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))


def quick_grid(name: str):
    """A small grid of study ``name`` for tests and previews (2 seeds, 20 steps per cell).

    It keeps the data sets and settings whose numbers the paper quotes, so that the paper
    also builds from quick figures.
    """
    from ..sweep import Grid

    if name == "semi_paired":
        return Grid(product={"dataset": ["digits", "planted"], "paired_fraction": [0.01, 0.05, 1.0]},
                    zipped={"arm": ["cca", "contrastive_only", "qsma"], "lambda_alignment": [0.0, 0.0, 3.0],
                            "max_steps": [20, 20, 20]}, seeds=[0, 1])
    if name == "transductive":
        return Grid(product={"dataset": ["digits", "digits_tb", "planted"]},
                    zipped={"variant": ["none", "none", "disjoint", "full"],
                            "arm": ["cca", "contrastive_only", "qsma", "qsma"],
                            "lambda_alignment": [0.0, 0.0, 3.0, 3.0], "max_steps": [20] * 4},
                    seeds=[0, 1])
    raise ValueError(f"unknown regime study {name!r}; expected 'semi_paired' or 'transductive'")


def summarize_regime(name: str, frame) -> dict:
    """Per data set and setting: each arm's mean/CI, the best weight and the paired gain.

    Parameters
    ----------
    name : {"semi_paired", "transductive"}
    frame : pandas.DataFrame
        :meth:`geoalign.sweep.SweepResult.wide` of the study.

    Returns
    -------
    dict
        ``{dataset: {setting: {"arms": {label: {score: [mean, ci]}}, "best_lambda",
        "gain": [mean, ci, n], "target", "target_met"}}}``; the setting is the paired
        fraction (semi-paired) or the unpaired variant (transductive; the inductive
        references are the ``"none"`` rows, copied into every variant).
    """
    setting = _SETTING[name]
    out: dict = {}
    for dataset, dframe in frame.groupby("dataset"):
        out[dataset] = {}
        base = dframe[dframe["arm"] != "qsma"]
        settings = sorted(set(dframe[setting]) - ({"none"} if name == "transductive" else set()))
        for s in settings:
            sub = dframe[dframe[setting] == s]
            if name == "transductive":
                sub = sub[sub["arm"] == "qsma"]
                ref = base
            else:
                ref = sub[sub["arm"] != "qsma"]
                sub = sub[sub["arm"] == "qsma"]
            arms = {}
            for arm, g in ref.groupby("arm"):
                arms[arm] = {m: mean_ci(g[m]) for m in ("map_all", "R@1", "R@10")}
            for lam, g in sub.groupby("lambda_alignment"):
                arms[f"qsma lambda_alignment={lam:g}"] = {m: mean_ci(g[m]) for m in ("map_all", "R@1", "R@10")}
            entry = {"arms": arms}
            if len(sub) and "contrastive_only" in set(ref["arm"]):
                best = max(sub["lambda_alignment"].unique(),
                           key=lambda lam: sub[sub["lambda_alignment"] == lam]["map_all"].mean())
                q = sub[sub["lambda_alignment"] == best].set_index("seed")["map_all"]
                c = ref[ref["arm"] == "contrastive_only"].set_index("seed")["map_all"]
                seeds = sorted(set(q.index) & set(c.index))
                diff = np.array([q[k] - c[k] for k in seeds])
                m, ci = mean_ci(diff)
                target = TARGETS[name]
                applies = name == "transductive" or float(s) <= 0.05
                entry.update({"best_lambda": float(best), "gain": [m, ci, int(diff.size)],
                              "target": target if applies else None,
                              "target_met": (bool(m >= target and m - ci > 0) if applies
                                             and np.isfinite(ci) else None)})
            out[dataset][str(s)] = entry
    return out


def _run(name: str, ctx: FigureContext, width: float):
    """Run (or load) the study; its frame, summary and one empty panel per data set."""
    import matplotlib.pyplot as plt

    from ..studies import get_study, run_study

    grid = quick_grid(name) if ctx.quick else get_study(name).default_grid
    cache = None if ctx.quick else Path(".sweep_cache") / name
    frame = run_study(name, grid, cache_dir=cache, progress=not ctx.quick, verbose=False).wide()
    datasets = sorted(frame["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(width * len(datasets), 4.2), squeeze=False)
    return grid, frame, summarize_regime(name, frame), fig, list(zip(axes[0], datasets))


_PERCENT_WORDS = {0.01: "One", 0.02: "Two", 0.05: "Five", 0.1: "Ten", 0.25: "TwentyFive", 1.0: "Hundred"}


def _camel(text: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z]+", text) if w)


def regime_numbers(name: str, summary: dict) -> dict:
    """Numbers of a regime figure for ``numbers.tex``: per data set and setting, the paired
    gain of the transport terms (mean, 95 % CI half-width) at the best alignment weight, and
    that weight; plus the target and how many of the settings it applies to meet it.

    Keys read ``<dataset><setting>Gain``, ``...GainCi``, ``...BestLambda`` (the setting is
    ``PctFive`` for 5 % pairs, or the transductive variant), ``targetsMet``, ``targetsTotal``.
    """
    numbers: dict = {"target": TARGETS[name]}
    met = total = 0
    for dataset, per in summary.items():
        for setting, entry in per.items():
            if "gain" not in entry:
                continue
            if name == "semi_paired":
                word = _PERCENT_WORDS.get(float(setting))
                if word is None:
                    continue
                tag = _camel(dataset) + "Pct" + word
            else:
                tag = _camel(dataset) + _camel(setting)
            tag = tag[0].lower() + tag[1:]
            numbers[tag + "Gain"], numbers[tag + "GainCi"] = entry["gain"][0], entry["gain"][1]
            numbers[tag + "BestLambda"] = entry["best_lambda"]
            if entry.get("target") is not None:
                total += 1
                met += bool(entry["target_met"])
    numbers.update(targetsMet=met, targetsTotal=total)
    return numbers


def _verdict(name: str, summary: dict) -> str:
    met = [(d, s, e) for d, per in summary.items() for s, e in per.items() if e.get("target") is not None]
    if not met:
        return "target not evaluated"
    ok = [f"{d}/{s}" for d, s, e in met if e["target_met"]]
    return (f"target (+{TARGETS[name]:.2f} mAP, CI > 0) met in {len(ok)}/{len(met)} settings"
            + (f": {', '.join(ok)}" if ok else ": not met"))


@figure("semi_paired", description="Semi-paired training: unseen-class mAP vs the fraction of pairs")
def semi_paired_figure(ctx: FigureContext) -> FigureOutput:
    """Unseen-class mAP@all against the paired fraction (log scale), per data set: QSMA with
    every term at each alignment weight, contrastive-only, CCA; mean ± 95 % CI over seeds."""
    grid, frame, summary, fig, panels = _run("semi_paired", ctx, 5.5)
    for ax, dataset in panels:
        d = frame[frame["dataset"] == dataset]
        curves = [("cca", None, "k", ":"), ("contrastive_only", None, "tab:grey", "--")]
        curves += [("qsma", lam, c, "-") for lam, c in
                   zip(sorted(d[d.arm == "qsma"]["lambda_alignment"].unique()),
                       ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"])]
        for arm, lam, color, ls in curves:
            sel = d[(d.arm == arm) & ((d.lambda_alignment == lam) if lam is not None else True)]
            fr = sorted(sel["paired_fraction"].unique())
            stats = [mean_ci(sel[sel.paired_fraction == f]["map_all"]) for f in fr]
            mu = np.array([s[0] for s in stats])
            ci = np.nan_to_num(np.array([s[1] for s in stats]))
            label = ({"cca": "CCA", "contrastive_only": "QSMA contrastive-only"}[arm] if lam is None
                     else f"QSMA all terms, λ_W={lam:g}")
            ax.plot(np.array(fr) * 100, mu, ls, color=color, marker="o", ms=3, label=label)
            ax.fill_between(np.array(fr) * 100, mu - ci, mu + ci, color=color, alpha=0.15)
        ax.set_xscale("log")
        ax.set_xlabel("paired fraction of the seen-class training data (%)")
        ax.set_ylabel("unseen classes: mAP@all (mean ± 95% CI)")
        ax.set_title(f"{dataset} (semi-paired, inductive)")
        ax.legend(fontsize=7)
    fig.suptitle("semi-paired: " + _verdict("semi_paired", summary), fontsize=9)
    return FigureOutput(figure=fig, table=frame, params={"grid": grid.to_dict(), "summary": summary},
                        caption="Semi-paired QSMA vs contrastive-only vs CCA (unseen-class mAP@all)",
                        numbers=regime_numbers("semi_paired", summary))


@figure("transductive", description="Transductive zero-shot: unseen inputs as unpaired data")
def transductive_figure(ctx: FigureContext) -> FigureOutput:
    """Unseen-class mAP@all of QSMA trained with the unseen inputs as unpaired data
    (disjoint halves / full sets) at each alignment weight, against the inductive
    contrastive-only QSMA and CCA; mean ± 95 % CI over seeds."""
    grid, frame, summary, fig, panels = _run("transductive", ctx, 5.0)
    for ax, dataset in panels:
        d = frame[frame["dataset"] == dataset]
        labels, stats, colors = [], [], []
        for arm, label, color in (("cca", "CCA (inductive)", "tab:grey"),
                                  ("contrastive_only", "contrastive-only (inductive)", "tab:grey")):
            labels.append(label)
            stats.append(mean_ci(d[d.arm == arm]["map_all"]))
            colors.append(color)
        for variant, color in (("disjoint", "tab:blue"), ("full", "tab:green")):
            q = d[(d.arm == "qsma") & (d.variant == variant)]
            for lam in sorted(q["lambda_alignment"].unique()):
                labels.append(f"QSMA {variant}, λ_W={lam:g} (transductive)")
                stats.append(mean_ci(q[q.lambda_alignment == lam]["map_all"]))
                colors.append(color)
        mu = np.array([s[0] for s in stats])
        ci = np.nan_to_num(np.array([s[1] for s in stats]))
        y = np.arange(len(labels))[::-1]
        ax.barh(y, mu, xerr=ci, color=colors, alpha=0.8)
        ax.set_yticks(y, labels, fontsize=7)
        ax.set_xlabel("unseen classes: mAP@all (mean ± 95% CI)")
        ax.set_xlim(max(0.0, float(np.nanmin(mu - ci)) - 0.05), min(1.0, float(np.nanmax(mu + ci)) + 0.05))
        ax.set_title(dataset)
    fig.suptitle("transductive: " + _verdict("transductive", summary), fontsize=9)
    fig.tight_layout()
    return FigureOutput(figure=fig, table=frame, params={"grid": grid.to_dict(), "summary": summary},
                        caption="Transductive QSMA (unseen inputs unpaired) vs inductive references",
                        numbers=regime_numbers("transductive", summary))
