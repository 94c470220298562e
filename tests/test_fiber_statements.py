"""The four statements of docs/design/mathematics.md checked numerically, and the density estimator's CI."""
import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from geoalign.fiber import estimate_density, fiber_counts, fiber_product


def as_set(fp):
    return {tuple(p) for p in np.asarray(fp.pairs).tolist()}


# (1) monotonicity, intersection = F_0, full product beyond the diameter -----------------
def test_statement1_monotone_and_limits(rng):
    Y = rng.normal(size=(40, 8))
    X = np.vstack([Y[:5], rng.normal(size=(30, 8))])  # planted exact matches: F_0 = 5 pairs
    D = cdist(X, Y)
    grid = np.linspace(0, D.max() * 1.01, 50)
    counts = fiber_counts(X, Y, grid).counts
    assert (np.diff(counts) >= 0).all()
    sets = [as_set(fiber_product(X, Y, e)) for e in grid[::10]]
    assert all(a <= b for a, b in zip(sets, sets[1:]))
    f0 = as_set(fiber_product(X, Y, 0.0))
    assert f0 == {(i, i) for i in range(5)}
    # below the smallest positive distance F_eps already equals F_0
    tiny = D[D > 0].min() / 2
    assert as_set(fiber_product(X, Y, tiny)) == f0
    diam = D.max()
    full = fiber_product(X, Y, diam)
    assert full.count == X.shape[0] * Y.shape[0] and full.rho == 1.0
    assert counts[-1] == D.size


# (2) robustness to sup-norm perturbations ------------------------------------------------
@pytest.mark.parametrize("metric", ["euclidean"])
def test_statement2_perturbation_bound(rng, metric):
    X, Y = rng.normal(size=(60, 10)), rng.normal(size=(50, 10))
    df, dg = 0.3, 0.2
    # perturbations with sup_i ||delta_i|| exactly df (resp. dg)
    PX = rng.normal(size=X.shape)
    PX *= df / np.linalg.norm(PX, axis=1, keepdims=True)
    PY = rng.normal(size=Y.shape)
    PY *= dg * rng.uniform(0, 1, size=(len(Y), 1)) / np.linalg.norm(PY, axis=1, keepdims=True)
    X2, Y2 = X + PX, Y + PY
    grid = np.quantile(cdist(X, Y), [0.01, 0.1, 0.4])
    for eps in grid:
        a = as_set(fiber_product(X, Y, eps))
        b = as_set(fiber_product(X2, Y2, eps + df + dg + 1e-12))
        assert a <= b and len(a) > 0
        a2 = as_set(fiber_product(X2, Y2, eps))
        b2 = as_set(fiber_product(X, Y, eps + df + dg + 1e-12))
        assert a2 <= b2
    # the slack is needed: without it the inclusion fails
    strict = [as_set(fiber_product(X, Y, e)) <= as_set(fiber_product(X2, Y2, e)) for e in grid]
    assert not all(strict)


def test_statement2_lipschitz_encoder(rng):
    # f = W p with ||W||_2 = L: input perturbation eta gives delta_f <= L eta
    P, Q = rng.normal(size=(40, 6)), rng.normal(size=(30, 6))
    W = rng.normal(size=(6, 12))
    L = np.linalg.norm(W, 2)
    eta = 0.05
    dP = rng.normal(size=P.shape)
    dP *= eta / np.linalg.norm(dP, axis=1, keepdims=True)
    F = as_set(fiber_product(P @ W, Q @ W, 3.0))
    F2 = as_set(fiber_product((P + dP) @ W, Q @ W, 3.0 + L * eta + 1e-12))
    assert F <= F2


# (3) dimension: concentration at sigma sqrt(2d), phase transition, JL projection -----------
def test_statement3_concentration_and_phase_transition(rng):
    n, d, sigma = 200, 400, 0.5
    S = rng.normal(size=(n, d)) * 3
    X = S + sigma * rng.normal(size=(n, d))
    Y = S + sigma * rng.normal(size=(n, d))
    true_d = np.linalg.norm(X - Y, axis=1)
    scale = sigma * math.sqrt(2 * d)
    assert abs(true_d.mean() / scale - 1) < 0.02 and true_d.std() / scale < 0.05
    truth = np.stack([np.arange(n), np.arange(n)], 1)
    low = fiber_product(X, Y, 0.9 * scale).precision_recall(truth)
    high = fiber_product(X, Y, 1.1 * scale).precision_recall(truth)
    assert low.recall < 0.05 and high.recall > 0.95 and high.precision > 0.95


def test_statement3_random_projection_preserves_fiber_product(rng):
    n, d, eta = 40, 1200, 0.5
    X, Y = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    k = int(math.ceil(8 * math.log(n * n) / eta ** 2))
    R = rng.normal(size=(d, k)) / math.sqrt(k)
    ratio = cdist(X @ R, Y @ R) / cdist(X, Y)
    assert ((1 - eta) <= ratio).all() and (ratio <= 1 + eta).all()  # JL held for this draw
    D = cdist(X, Y)
    for eps in np.quantile(D, [0.05, 0.3, 0.7]):
        F = as_set(fiber_product(X, Y, eps))
        assert F <= as_set(fiber_product(X @ R, Y @ R, (1 + eta) * eps))
        assert as_set(fiber_product(X @ R, Y @ R, (1 - eta) * eps)) <= F


# (4) decomposition Z = Z_s + Z_I + Z_T ----------------------------------------------------
def _planted_decomposition(rng, n=60, d=20, ks=4, ki=3, kt=2, noise_free=True):
    Q, _ = np.linalg.qr(rng.normal(size=(d, ks + ki + kt)))
    A, BI, BT = Q[:, :ks], Q[:, ks:ks + ki], Q[:, ks + ki:]
    s = rng.normal(size=(n, ks))
    F = s @ A.T + 0.3 * rng.normal(size=(n, ki)) @ BI.T
    G = (s + 0.2 * rng.normal(size=(n, ks))) @ A.T + 0.3 * rng.normal(size=(n, kt)) @ BT.T
    return F, G, A, BI, BT


def test_statement4_decomposition_identity_and_inclusion(rng):
    F, G, A, BI, BT = _planted_decomposition(rng)
    diff = F[:, None, :] - G[None, :, :]
    lhs = (diff ** 2).sum(-1)
    shared = ((diff @ A) ** 2).sum(-1)
    priv = ((F @ BI) ** 2).sum(-1)[:, None] + ((G @ BT) ** 2).sum(-1)[None, :]
    np.testing.assert_allclose(lhs, shared + priv, rtol=1e-10)
    for eps in np.quantile(np.sqrt(lhs), [0.02, 0.2]):
        full = as_set(fiber_product(F, G, eps))
        sh_basis = fiber_product(F, G, eps, shared_projector=A)
        sh_proj = fiber_product(F, G, eps, shared_projector=A @ A.T)
        assert full <= as_set(sh_basis) and len(full) < sh_basis.count
        assert as_set(sh_basis) == as_set(sh_proj)
        np.testing.assert_allclose(sh_basis.distances, sh_proj.distances, rtol=1e-12)
        # brute force on the projected features
        want = {tuple(p) for p in np.argwhere(np.sqrt(shared) <= eps).tolist()}
        assert as_set(sh_basis) == want
        # private energy shrinks each pair's effective tolerance
        eff = {tuple(p) for p in np.argwhere(shared <= eps ** 2 - priv).tolist()}
        assert full == eff


# density estimator -------------------------------------------------------------------------
@pytest.mark.parametrize("method,lo,hi", [("wilson", 0.91, 0.985), ("clopper-pearson", 0.935, 1.0)])
def test_density_interval_coverage_by_simulation(rng, method, lo, hi):
    X, Y = rng.normal(size=(50, 3)), rng.normal(size=(40, 3))
    grid = np.array([0.8, 1.5, 2.5])
    rho = fiber_counts(X, Y, grid).rho
    reps, S = 400, 150
    covered = np.zeros(3)
    means = np.zeros(3)
    for r in range(reps):
        est = estimate_density(X, Y, grid, S, method=method, seed=1000 + r)
        covered += (est.lower <= rho) & (rho <= est.upper)
        means += est.rho
    coverage = covered / reps
    assert ((lo <= coverage) & (coverage <= hi)).all(), coverage
    # unbiased: the mean estimate is within 4 standard errors of the truth
    se = np.sqrt(rho * (1 - rho) / (S * reps))
    assert (np.abs(means / reps - rho) <= 4 * se).all()


def test_density_estimate_fields(rng):
    X, Y = rng.normal(size=(30, 4)), rng.normal(size=(20, 4))
    est = estimate_density(X, Y, 2.0, 500, seed=0)
    assert est.eps.shape == (1,) and est.n_samples == 500 and est.method == "wilson"
    assert 0 <= est.lower[0] <= est.rho[0] <= est.upper[0] <= 1
    assert est.hits[0] == round(est.rho[0] * 500)
    again = estimate_density(X, Y, 2.0, 500, seed=0)
    assert again.hits[0] == est.hits[0]
    zero = estimate_density(X, Y, 0.0, 100, seed=1)
    assert zero.hits[0] == 0 and zero.lower[0] == 0 and 0 < zero.upper[0] < 0.05
