"""The comparison table entry: numbers from the selected comparison, read from the stored cells."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from geoalign.figures import load_all
from geoalign.figures.comparison_figs import comparison_numbers
from geoalign.figures.registry import FIGURES, FigureContext, _key

ROOT = Path(__file__).resolve().parents[1]


def _row(dataset, regime, method, m, r1, r10, md=None, r1d=None, oracle=None, uses=True, params=None,
         default_params=None):
    row = {"dataset": dataset, "regime": regime, "method": method, "map_all": m, "map_all_std": 0.01,
           "R@1": r1, "R@1_std": 0.0, "R@10": r10, "R@10_std": 0.0, "uses_unpaired": uses,
           "params": params or {"a": 1}, "default_params": default_params or {"a": 1}}
    if regime == "inductive":
        row.update({"map_all_defaults": md, "map_all_defaults_std": 0.02, "R@1_defaults": r1d,
                    "R@1_defaults_std": 0.0, "R@10_defaults": r10, "R@10_defaults_std": 0.0,
                    "oracle_map_all": oracle})
    return row


def test_comparison_numbers_rank_targets_and_differences():
    rows = [
        _row("digits", "inductive", "QSMA", 0.60, 0.02, 0.10, md=0.58, r1d=0.02),
        _row("digits", "inductive", "LinearContrastive", 0.62, 0.01, 0.08, md=0.50, r1d=0.01, params={"a": 2}),
        _row("digits", "inductive", "CCA", 0.50, 0.01, 0.03, md=0.50, r1d=0.01, oracle=0.52),
        _row("digits", "semi-paired 5%", "QSMA", 0.45, 0.01, 0.05),
        _row("digits", "semi-paired 5%", "LinearContrastive", 0.40, 0.01, 0.04),
        _row("digits", "semi-paired 5%", "CCA", 0.47, 0.01, 0.04),
        _row("digits", "transductive", "QSMA", 0.61, 0.02, 0.10),
        _row("digits", "transductive", "LinearContrastive", 0.62, 0.01, 0.08, uses=False),
        _row("digits", "transductive", "CCA", 0.50, 0.01, 0.03, uses=False),
    ]
    n = comparison_numbers(pd.DataFrame(rows))
    assert n["DigitsQsmaRank"] == 2 and n["DigitsMethods"] == 3 and n["DigitsBest"] == "LinearContrastive"
    assert n["DigitsBestOther"] == "LinearContrastive" and n["DigitsBestOtherMap"] == pytest.approx(0.62)
    assert n["DigitsQsmaMinusClipMap"] == r"\ensuremath{-}0.020" and n["DigitsQsmaMinusClipRone"] == "+0.010"
    assert n["DigitsQsmaDefaultsMinusOracleCca"] == "+0.060" and n["OracleTargetMet"] == 1
    assert n["ClipTargetMet"] == 1  # defaults: 0.58 >= 0.50 and R@1 0.02 >= 0.01
    assert n["DigitsKeptDefaults"] == 2  # LinearContrastive's choice differs from its defaults
    assert n["DigitsSelectedBetter"] == 2 and n["DigitsSelectedWorse"] == 0
    assert n["DigitsQsmaSemiRank"] == 2 and n["DigitsSemiBest"] == "CCA"
    assert n["DigitsQsmaTransGain"] == "+0.010" and n["Datasets"] == 1
    assert n["DigitsMaxRone"] == pytest.approx(0.02) and n["Pairs"] == 3 and n["SelectedBetterTotal"] == 2
    assert all(k.isalpha() for k in n)  # LaTeX macro names


def test_force_reaches_the_figure_but_not_the_cache_key():
    load_all()
    entry = FIGURES["comparison"]
    assert _key(entry, FigureContext(force=True)) == _key(entry, FigureContext())
    assert _key(entry, FigureContext(quick=True)) != _key(entry, FigureContext())


def test_full_table_reads_the_stored_cells_without_training(monkeypatch):
    """The paper's table comes from figures/data/comparison: no model is trained to build it."""
    from geoalign.comparison import STORED_CELLS, TwoViewESZSL
    from geoalign.figures.comparison_figs import comparison_table
    from geoalign.models.base import AlignmentEstimator
    from geoalign.models.codebook import UniCode
    from geoalign.models.linear import CCA
    from geoalign.models.qsma import QSMA

    if not any(STORED_CELLS.glob("*/*.json")):
        pytest.fail(f"no stored cells in {STORED_CELLS}: run python -m geoalign.comparison --selected")

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{type(self).__name__}.fit called: a stored cell is missing")

    for cls in (AlignmentEstimator, QSMA, UniCode, CCA, TwoViewESZSL):
        monkeypatch.setattr(cls, "fit", refuse)
    out = comparison_table(FigureContext())
    assert len(out.table) == 21 and out.numbers["Seeds"] == 5
    committed = pd.read_csv(ROOT / "figures" / "comparison.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(out.table.astype(str), committed)
