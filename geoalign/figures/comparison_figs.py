r"""The paper's comparison table: every method selected by the same class-disjoint search.

The ``comparison`` entry of ``geoalign figures`` builds its table from the stored cells
of :func:`geoalign.comparison.select_and_compare` in
:data:`geoalign.comparison.STORED_CELLS` (``figures/data/comparison/``, one JSON file
per data set and method, kept in the repository): the search's choice, and every
trained model's scores with the library version and settings that produced them.
Only cells that are missing (or whose settings changed) are computed, so a code
change elsewhere that makes the entry stale costs a re-read of the stored cells, not
the hour of training behind them.  ``geoalign figures --only comparison --force``
recomputes every cell.  The stored cells are *not* invalidated by edits of the models'
code: after a change that alters what a model learns, rerun with ``--force``.

The quick setting (tests) runs the methods of :data:`QUICK_METHODS` with one candidate
each, one seed and a tenth of the epochs, in memory, without touching the stored cells.

Table (one row per data set and method, mean :math:`\pm` sample std over the seeds):
class-level mAP@all and instance-level R@1/R@10 of the true partner on the unseen
classes (inductive, selected setting), mAP@all of the library defaults, and mAP@all in
the semi-paired (5 % of the seen pairs) and transductive (unseen inputs as unpaired
data) regimes.  Methods that cannot use unpaired data show "--" in the transductive
column (their models are the inductive ones).
"""
from __future__ import annotations

import numpy as np

from .registry import FigureContext, FigureOutput, figure

__all__ = ["comparison_table", "comparison_numbers", "DATASET_LABELS", "QUICK_METHODS"]

#: methods of the quick setting (the ones whose numbers the paper quotes, and the closed-form ones)
QUICK_METHODS = ("QSMA", "LinearContrastive", "CCA", "ESZSL")
#: issue 15's target: QSMA's defaults at least this much above CCA tuned on the test classes
ORACLE_TARGET = 0.05
#: a choice "scored higher/lower than the defaults" on the test classes by more than this mAP@all
SELECTED_MARGIN = 0.005
#: table labels of the data sets
DATASET_LABELS = {"digits": "digits L-R", "digits_tb": "digits T-B", "planted": "planted"}
#: the part of a macro name that names a method; ``Clip`` and ``Unicode`` are the macro names
#: of earlier versions, kept so that the paper's macros stay defined (letters only)
_METHOD_KEYS = {"QSMA": "Qsma", "SSPC": "Sspc", "CFSA": "Cfsa", "UniCode": "Unicode",
                "LinearContrastive": "Clip", "CCA": "Cca", "ESZSL": "Eszsl"}


def _pm(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}"


def _signed(x: float) -> str:
    """``+0.012`` / ``\\ensuremath{-}0.012``: a difference with its sign, 3 decimals."""
    x = round(float(x), 3)
    if x == 0:
        return "0.000"
    return f"+{x:.3f}" if x > 0 else f"\\ensuremath{{-}}{-x:.3f}"


def _dataset_key(name: str) -> str:
    return "".join(w.title() for w in name.split("_"))


def comparison_numbers(selected) -> dict:
    """Named numbers of the table for ``numbers.tex`` (keys are letters only).

    Per data set ``D`` (``Digits``, ``DigitsTb``, ``Planted``), inductive regime:
    ``DQsmaRank``/``DMethods`` (QSMA's rank by mAP@all), ``DBest``/``DBestMap`` (the
    best method), ``DBestOther``/``DBestOtherMap`` (best method other than QSMA),
    ``D<Method>Map``/``MapSd``/``Rone``/``Rten`` for QSMA and LinearContrastive (``Clip``),
    ``DQsmaDefaultsMap``/``Sd``, ``DOracleCcaMap`` (CCA tuned on the test classes),
    ``DQsmaDefaultsMinusOracleCca``, ``DQsmaMinusClipMap``/``Rone``/``Rten``;
    ``DKeptDefaults`` (methods whose search kept the library defaults),
    ``DSelectedBetter``/``DSelectedWorse`` (methods whose choice scored higher/lower
    than the defaults on the test classes, by more than ``SelectedMargin`` = 0.005); semi-paired and
    transductive: ``DQsmaSemiMap``, ``DQsmaSemiRank`` (QSMA's rank among all methods
    trained on 5 % of the pairs), ``DSemiBest``, ``DQsmaTransMap`` and
    ``DQsmaTransGain`` (transductive minus inductive QSMA).  Also ``Seeds`` and
    ``Candidates`` (per method), ``Datasets``, ``DMaxRone`` (the highest R@1 of any method),
    ``KeptDefaultsTotal``/``SelectedBetterTotal``/``SelectedWorseTotal`` over the ``Pairs``
    (data set, method); the targets: ``OracleTarget`` (0.05) and
    ``OracleTargetMet`` (data sets where QSMA's defaults beat the oracle CCA by that much),
    ``ClipTargetMet`` (data sets where QSMA's defaults match or beat LinearContrastive's on both
    mAP@all and R@1), with ``D<Qsma|Clip>DefaultsRone``/``Rten`` and ``DClipDefaultsMap``.
    """
    out: dict = {"OracleTarget": f"{ORACLE_TARGET:.2f}", "Datasets": int(selected.dataset.nunique()),
                 "SelectedMargin": f"{SELECTED_MARGIN:.3f}"}
    oracle_met = clip_met = 0
    totals = {"KeptDefaults": 0, "SelectedBetter": 0, "SelectedWorse": 0, "Pairs": 0}
    for dname, g in selected.groupby("dataset", sort=False):
        key = _dataset_key(str(dname))
        ind = g[g.regime == "inductive"].set_index("method")
        order = ind.sort_values("map_all", ascending=False)
        out[f"{key}Methods"] = len(order)
        out[f"{key}Best"] = str(order.index[0])
        out[f"{key}BestMap"] = float(order.map_all.iloc[0])
        others = order[order.index != "QSMA"]
        out[f"{key}BestOther"] = str(others.index[0])
        out[f"{key}BestOtherMap"] = float(others.map_all.iloc[0])
        out[f"{key}QsmaRank"] = int(list(order.index).index("QSMA")) + 1
        for method in ("QSMA", "LinearContrastive"):
            r, mk = ind.loc[method], _METHOD_KEYS[method]
            out[f"{key}{mk}Map"] = float(r.map_all)
            out[f"{key}{mk}MapSd"] = float(r.map_all_std)
            out[f"{key}{mk}Rone"] = float(r["R@1"])
            out[f"{key}{mk}Rten"] = float(r["R@10"])
        q, c = ind.loc["QSMA"], ind.loc["LinearContrastive"]
        out[f"{key}QsmaMinusClipMap"] = _signed(q.map_all - c.map_all)
        out[f"{key}QsmaMinusClipRone"] = _signed(q["R@1"] - c["R@1"])
        out[f"{key}QsmaMinusClipRten"] = _signed(q["R@10"] - c["R@10"])
        out[f"{key}QsmaDefaultsMap"] = float(q.map_all_defaults)
        out[f"{key}QsmaDefaultsMapSd"] = float(q.map_all_defaults_std)
        out[f"{key}OracleCcaMap"] = float(ind.loc["CCA"].oracle_map_all)
        out[f"{key}SelectedCcaMap"] = float(ind.loc["CCA"].map_all)
        out[f"{key}QsmaDefaultsMinusOracleCca"] = _signed(q.map_all_defaults - ind.loc["CCA"].oracle_map_all)
        oracle_met += bool(q.map_all_defaults - ind.loc["CCA"].oracle_map_all >= ORACLE_TARGET)
        for method in ("QSMA", "LinearContrastive"):
            mk = _METHOD_KEYS[method]
            out[f"{key}{mk}DefaultsRone"] = float(ind.loc[method]["R@1_defaults"])
            out[f"{key}{mk}DefaultsRten"] = float(ind.loc[method]["R@10_defaults"])
        out[f"{key}ClipDefaultsMap"] = float(c.map_all_defaults)
        clip_met += bool(q.map_all_defaults >= c.map_all_defaults and q["R@1_defaults"] >= c["R@1_defaults"])
        kept = [m for m, r in ind.iterrows() if r.params == r.default_params]
        diff = ind.map_all - ind.map_all_defaults
        out[f"{key}KeptDefaults"] = len(kept)
        out[f"{key}SelectedBetter"] = int((diff > SELECTED_MARGIN).sum())
        out[f"{key}SelectedWorse"] = int((diff < -SELECTED_MARGIN).sum())
        for name in ("KeptDefaults", "SelectedBetter", "SelectedWorse"):
            totals[name] += out[f"{key}{name}"]
        totals["Pairs"] += len(ind)
        out[f"{key}MaxRone"] = float(ind["R@1"].max())
        semi = g[g.regime == "semi-paired 5%"].set_index("method")
        if len(semi):
            semi_order = semi.sort_values("map_all", ascending=False)
            out[f"{key}QsmaSemiMap"] = float(semi.loc["QSMA"].map_all)
            out[f"{key}QsmaSemiRank"] = int(list(semi_order.index).index("QSMA")) + 1
            out[f"{key}SemiBest"] = str(semi_order.index[0])
        trans = g[g.regime == "transductive"].set_index("method")
        if len(trans):
            out[f"{key}QsmaTransMap"] = float(trans.loc["QSMA"].map_all)
            out[f"{key}QsmaTransGain"] = _signed(trans.loc["QSMA"].map_all - q.map_all)
    out["OracleTargetMet"] = oracle_met
    out.update({f"{name}Total" if name != "Pairs" else name: v for name, v in totals.items()})
    out["ClipTargetMet"] = clip_met
    return out


def _table(selected):
    import pandas as pd

    rows = []
    for (dname, method), g in selected.groupby(["dataset", "method"], sort=False):
        by = g.set_index("regime")
        ind = by.loc["inductive"]
        row = {"data set": DATASET_LABELS.get(dname, dname), "method": method,
               "mAP@all": _pm(ind.map_all, ind.map_all_std),
               "R@1": _pm(ind["R@1"], ind["R@1_std"]), "R@10": _pm(ind["R@10"], ind["R@10_std"]),
               "mAP@all defaults": _pm(ind.map_all_defaults, ind.map_all_defaults_std)}
        if "semi-paired 5%" in by.index:
            s = by.loc["semi-paired 5%"]
            row["semi-paired 5%: mAP@all"] = _pm(s.map_all, s.map_all_std)
        if "transductive" in by.index:
            t = by.loc["transductive"]
            row["transductive: mAP@all"] = _pm(t.map_all, t.map_all_std) if t.uses_unpaired else "--"
        rows.append(row)
    return pd.DataFrame(rows)


@figure("comparison", kind="table",
        description="zero-shot retrieval of every method, selected by the same class-disjoint search")
def comparison_table(ctx: FigureContext) -> FigureOutput:
    """Table of :func:`geoalign.comparison.select_and_compare`, read from its stored cells.

    Full setting: 3 data sets x 7 methods, 5 seeds (``ctx.seed`` + 0..4), cells in
    :data:`geoalign.comparison.STORED_CELLS`, only missing ones computed
    (``ctx.force``: all).  Quick setting: :data:`QUICK_METHODS`, 1 candidate each, 1 seed,
    in memory.
    """
    import torch

    from ..comparison import COMPARISON_DATASETS, SEARCH_GRIDS, STORED_CELLS, select_and_compare

    seeds = tuple(ctx.seed + i for i in range(1 if ctx.quick else 5))
    methods = list(QUICK_METHODS if ctx.quick else SEARCH_GRIDS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        selected = select_and_compare(COMPARISON_DATASETS, methods, seeds=seeds, quick=ctx.quick,
                                      store=None if ctx.quick else STORED_CELLS, force=ctx.force,
                                      progress=not ctx.quick)
    finally:
        torch.set_num_threads(threads)
    candidates = {int(np.prod([len(v) for v in SEARCH_GRIDS[m].values()])) for m in methods}
    numbers = {"Seeds": len(seeds), "Candidates": 1 if ctx.quick else candidates.pop()}
    numbers.update(comparison_numbers(selected))
    params = {"datasets": list(COMPARISON_DATASETS), "methods": methods, "seeds": list(seeds),
              "grids": SEARCH_GRIDS, "stored_cells": None if ctx.quick else "figures/data/comparison",
              "selection": {f"{r.dataset}/{r.method}": r.params
                            for r in selected[selected.regime == "inductive"].itertuples()},
              "train_s": float(selected.fit_s.sum()), "search_s": float(
                  selected[selected.regime == "inductive"].search_s.sum())}
    return FigureOutput(table=_table(selected), params=params, numbers=numbers,
                        caption="zero-shot cross-view retrieval on the unseen classes, every method selected "
                                "by the same class-disjoint search (mean ± std over seeds)")
