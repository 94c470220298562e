"""Built-in studies: registry, tiny grids through the sweep engine, sane values, cache and CLI."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from geoalign import studies
from geoalign.data.planted import PlantedAlignment
from geoalign.cli.sweep import configure_parser, run_cli
from geoalign.studies import get_study, list_studies, run_study
from geoalign.sweep import Grid, run_sweep

QUIET = {"executor": "serial", "progress": False, "verbose": False}
BUILTIN = ("epsilon", "dimension", "perturbation", "decomposition", "training")


def _wide(name, grid):
    result = run_study(name, Grid.from_dict(grid), **QUIET)
    assert result.summary.failed == 0, result.summary
    return result.wide()


def test_builtin_studies_are_registered():
    names = list_studies()
    for name in (*BUILTIN, "concentration"):
        assert name in names
    expected = studies.qsma_training_study if studies.qsma_available() else studies.contrastive_training_study
    assert get_study("training").func is expected
    for name in BUILTIN:
        assert len(get_study(name).default_grid) > 0


def test_epsilon_recall_monotone_and_matches_brute_force():
    eps = [0.25, 0.5, 1.0, 2.0]
    wide = _wide("epsilon", {"product": {"eps": eps, "distance": ["euclidean", "cosine"]},
                             "zipped": {"dim": [16], "n": [200]}, "seeds": [0, 1]})
    for col in ("eps_abs", "count", "rho", "precision", "recall", "f1", "true_positives", "impostors",
                "true_median_distance", "impostor_median_distance"):
        assert col in wide.columns
    assert len(wide) == len(eps) * 2 * 2
    for _, part in wide.groupby(["distance", "seed"]):
        part = part.sort_values("eps")
        assert np.all(np.diff(part["recall"]) >= 0)
        assert np.all(np.diff(part["count"]) >= 0)
        assert np.all(np.diff(part["eps_abs"]) > 0)
        # eps in units of the median true-pair distance: recall 1/2 at eps = 1 (n even, no ties)
        assert part.loc[part["eps"] == 1.0, "recall"].item() == pytest.approx(0.5)
    assert wide["precision"].dropna().between(0, 1).all() and wide["recall"].between(0, 1).all()
    assert wide.loc[wide["count"] == 0, "precision"].isna().all()  # empty F: undefined, not 0
    np.testing.assert_allclose(wide["rho"], wide["count"] / 200**2)

    # brute force: the same planted draw joined with scipy
    row = wide[(wide["distance"] == "euclidean") & (wide["eps"] == 0.5) & (wide["seed"] == 1)].iloc[0]
    data = PlantedAlignment(dim=16, shared_rank=4, private_ranks=(3, 3), snr=10.0,
                            random_state=1).sample(200)
    D = cdist(data.U, data.V)
    inside = D <= row["eps_abs"]
    assert row["count"] == inside.sum()
    assert row["true_positives"] == np.trace(inside)
    assert row["true_median_distance"] == pytest.approx(np.median(np.diag(D)), rel=1e-12)


def test_epsilon_absolute_units_and_errors():
    out = studies.epsilon_study(eps=1e9, dim=12, n=50, eps_units="absolute", seed=3)
    assert out["eps_abs"] == 1e9 and out["scale"] == 1.0
    assert out["count"] == 50 * 50 and out["recall"] == 1.0 and out["rho"] == 1.0
    with pytest.raises(ValueError, match="distance"):
        studies.epsilon_study(eps=1.0, distance="manhattan")
    with pytest.raises(ValueError, match="eps_units"):
        studies.epsilon_study(eps=1.0, eps_units="sqrt_d")
    with pytest.raises(ValueError, match="eps"):
        studies.epsilon_study(eps=-1.0)


def test_dimension_sandwich_and_sqrt_d_scaling():
    wide = _wide("dimension", {"product": {"d": [16, 256], "k": [16, 128]},
                               "zipped": {"n": [120]}, "seeds": [0]})
    assert len(wide) == 4
    # the sandwich with the empirical distortion is a theorem: it must hold in every cell
    assert (wide["sandwich_holds"] == 1.0).all()
    assert wide["eta_empirical"].gt(0).all()
    for col in ("preserved", "spurious", "jaccard", "recall", "recall_projected"):
        assert wide[col].dropna().between(0, 1).all()
    # true-pair distances concentrate at sigma * sqrt(2d), with relative spread ~ 1/sqrt(2d)
    np.testing.assert_allclose(wide["true_ratio"], 1.0, atol=0.05)
    np.testing.assert_allclose(wide["impostor_ratio"], 1.0, atol=0.05)
    np.testing.assert_allclose(wide["sqrt_2d_sigma"], 0.5 * np.sqrt(2 * wide["d"]))
    by_d = wide.groupby("d")["true_relative_std"].mean()
    assert by_d[256] < by_d[16] / 2
    # more projection dimensions, less distortion (eta ~ 1/sqrt(k))
    for _, part in wide.groupby("d"):
        part = part.set_index("k")
        assert part.loc[128, "eta_empirical"] < part.loc[16, "eta_empirical"]
        assert part.loc[128, "eta_jl"] < part.loc[16, "eta_jl"]


def test_perturbation_observed_within_bound_and_adversarial_attains_it():
    wide = _wide("perturbation", {"product": {"eps": [0.5, 1.0], "direction": ["random", "adversarial"]},
                                  "zipped": {"delta_f": [0.0, 0.1, 0.3], "delta_g": [0.0, 0.2, 0.1]},
                                  "seeds": [0]})
    assert len(wide) == 12
    assert (wide["holds"] == 1.0).all()
    assert (wide["observed"] <= wide["bound"] * (1 + 1e-9)).all()
    reverse = wide.dropna(subset=["observed_reverse"])  # NaN: the perturbed join is empty
    assert (reverse["observed_reverse"] <= reverse["bound"] * (1 + 1e-9)).all()
    assert (wide.loc[wide["observed_reverse"].isna(), "count_perturbed"] == 0).all()
    assert (wide["contained_at_bound"] == 1.0).all()
    np.testing.assert_allclose(wide["sup_f"], wide["delta_f_abs"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(wide["sup_g"], wide["delta_g_abs"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(wide["bound"], wide["eps_abs"] + wide["delta_f_abs"] + wide["delta_g_abs"])
    moved = wide[wide["delta_f"] > 0]
    adversarial = moved[moved["direction"] == "adversarial"]
    random = moved[moved["direction"] == "random"]
    # the farthest pair of F_eps moves apart by exactly delta_f + delta_g
    np.testing.assert_allclose(adversarial["tightness"], 1.0, atol=1e-9)
    assert (random["tightness"] < 0.95).all()
    key = ["eps", "delta_f"]
    pair = adversarial.merge(random, on=key, suffixes=("_adv", "_rnd"))
    assert len(pair) == 4
    assert (pair["preserved_at_eps_adv"] <= pair["preserved_at_eps_rnd"]).all()
    still = wide[wide["delta_f"] == 0]
    assert (still["preserved_at_eps"] == 1.0).all() and still["tightness"].isna().all()


def test_perturbation_errors():
    with pytest.raises(ValueError, match="direction"):
        studies.perturbation_study(direction="worst")
    with pytest.raises(ValueError, match="delta_f"):
        studies.perturbation_study(delta_f=-0.1)


def test_decomposition_angles_shrink_with_snr_and_samples():
    wide = _wide("decomposition", {"product": {"snr": [0.1, 10.0], "n": [150, 2000]}, "seeds": [0]})
    for col in ("shared_max_angle", "private_a_max_angle", "private_b_max_angle",
                "shared_rank_chosen", "private_rank_a_chosen", "ranks_correct", "shared_rank_error"):
        assert col in wide.columns
    w = wide.set_index(["snr", "n"])
    for col in ("shared_max_angle", "private_a_max_angle", "private_b_max_angle"):
        assert w[col].between(0, 90).all()
        for n in (150, 2000):
            assert w.loc[(10.0, n), col] < w.loc[(0.1, n), col]
        for snr in (0.1, 10.0):
            assert w.loc[(snr, 2000), col] < w.loc[(snr, 150), col]
    assert w.loc[(10.0, 2000), "shared_max_angle"] < 2.0
    assert w.loc[(10.0, 2000), "ranks_correct"] == 1.0
    assert w.loc[(10.0, 2000), "shared_rank_chosen"] == 3


def test_contrastive_training_study_learns_an_alignment():
    out = studies.contrastive_training_study(n=256, max_epochs=4, seed=0)
    for key in ("R@1_a2b", "R@1_b2a", "R@5_a2b", "map_instance", "map_class"):
        assert 0 <= out[key] <= 1
    assert out["n_train"] == 256 and out["n_test"] == 128
    # far better than chance (1/128) on held-out pairs, and true pairs closer than impostors
    assert out["R@5_a2b"] > 0.2
    assert out["true_pair_angle"] < out["impostor_angle"]
    assert np.isfinite(out["final_train_loss"])


def test_qsma_training_study():
    pytest.importorskip("geoalign.models.qsma")
    out = studies.qsma_training_study(lambda_alignment=0.5, lambda_barycentric=0.1, lambda_kl=0.0,
                                      n=256, max_epochs=3, seed=0)
    for key in ("R@1_a2b", "map_instance", "map_class"):
        assert 0 <= out[key] <= 1
    assert out["true_pair_angle"] < out["impostor_angle"]
    assert np.isfinite(out["final_train_loss"])


def test_second_run_is_fully_cached(tmp_path):
    grid = Grid(product={"eps": [0.5, 1.0, 2.0]}, zipped={"dim": [12], "n": [80]}, seeds=[0, 1])
    first = run_study("epsilon", grid, out=tmp_path, **QUIET)
    assert first.summary.done == 6 and first.summary.cached == 0
    second = run_study("epsilon", grid, out=tmp_path, **QUIET)
    assert second.summary.cached == 6 and second.summary.done == 0 and second.summary.failed == 0
    assert second.frame["cached"].all()
    a, b = first.wide(), second.wide()
    np.testing.assert_array_equal(a["recall"].to_numpy(), b["recall"].to_numpy())
    # keys depend on the function, not the study name: the engine on the plain function reuses them
    third = run_sweep(studies.epsilon_study, grid, cache_dir=tmp_path / "cache", **QUIET)
    assert third.summary.cached == 6


def _cli(argv):
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return run_cli(parser.parse_args(argv))


def test_cli_lists_and_runs_a_builtin_study(tmp_path, capsys):
    assert _cli(["--list"]) == 0
    listing = capsys.readouterr().out
    for name in BUILTIN:
        assert name in listing
    argv = ["perturbation", "--param", "eps=1.0", "--param", "direction=adversarial",
            "--zip", "delta_f=0.1", "--zip", "delta_g=0.1", "--zip", "n=100", "--seeds", "0",
            "--executor", "serial", "--no-progress", "--out", str(tmp_path)]
    assert _cli(argv) == 0
    assert "1 done" in capsys.readouterr().out
    assert (tmp_path / "sweep.json").is_file()
    assert _cli(argv) == 0
    assert "1 cached" in capsys.readouterr().out
    assert _cli(["epsilon", "--param", "distance=taxicab", "--param", "eps=1", "--zip", "n=20",
                 "--executor", "serial", "--no-progress", "--out", str(tmp_path / "bad")]) == 1
    assert "distance" in capsys.readouterr().out


@settings(max_examples=12)
@given(eps=st.floats(0.1, 3.0), delta_f=st.floats(0.0, 1.0), delta_g=st.floats(0.0, 1.0),
       direction=st.sampled_from(["random", "adversarial"]), seed=st.integers(0, 2**16))
def test_perturbation_bound_is_a_theorem(eps, delta_f, delta_g, direction, seed):
    out = studies.perturbation_study(eps=eps, delta_f=delta_f, delta_g=delta_g, direction=direction,
                                     dim=12, n=60, seed=seed)
    assert out["holds"] == 1.0
    assert out["contained_at_bound"] == 1.0 or (out["count"] == 0 and np.isnan(out["contained_at_bound"]))
    if out["count"] and delta_f + delta_g > 0 and direction == "adversarial":
        assert out["tightness"] == pytest.approx(1.0, abs=1e-9)
