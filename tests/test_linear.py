import itertools

import numpy as np
import pytest
import torch
from scipy import linalg
from sklearn.cross_decomposition import CCA as SkCCA

from geoalign.data.digits import load_digits_two_view
from geoalign.evaluation import retrieval_scores, zsl_accuracy
from geoalign.models.linear import CCA, ESZSL, load_linear_model


def planted_cca(rng, n, rhos, d_a=7, d_b=5):
    """Views whose population canonical correlations are exactly ``rhos``."""
    k = len(rhos)
    z = rng.normal(size=(n, k))
    v = z * rhos + rng.normal(size=(n, k)) * np.sqrt(1 - np.asarray(rhos) ** 2)
    ua = np.hstack([z, rng.normal(size=(n, d_a - k))])
    ub = np.hstack([v, rng.normal(size=(n, d_b - k))])
    return ua @ rng.normal(size=(d_a, d_a)) + 3.0, ub @ rng.normal(size=(d_b, d_b)) - 1.0


def geneig_correlations(A, B):
    """Canonical correlations from [[0, Cab], [Cba, 0]] w = rho [[Caa, 0], [0, Cbb]] w."""
    A, B = A - A.mean(0), B - B.mean(0)
    da = A.shape[1]
    C = np.cov(np.hstack([A, B]).T)
    lhs = np.zeros_like(C)
    lhs[:da, da:], lhs[da:, :da] = C[:da, da:], C[da:, :da]
    rhs = np.zeros_like(C)
    rhs[:da, :da], rhs[da:, da:] = C[:da, :da], C[da:, da:]
    return np.sort(linalg.eigh(lhs, rhs, eigvals_only=True))[::-1]


def test_cca_recovers_planted_correlations(rng):
    rhos = [0.95, 0.7, 0.4]
    A, B = planted_cca(rng, 20000, rhos)
    m = CCA(dim=3, reg=0.0).fit(A, B)
    np.testing.assert_allclose(m.correlations_, rhos, atol=0.02)
    za, zb = m.transform_a(A), m.transform_b(B)
    np.testing.assert_allclose(np.cov(za.T), np.eye(3), atol=1e-8)  # whitened
    np.testing.assert_allclose(np.cov(zb.T), np.eye(3), atol=1e-8)
    np.testing.assert_allclose(np.diag(np.cov(za.T, zb.T)[:3, 3:]), m.correlations_, atol=1e-8)


def test_cca_matches_generalized_eigenproblem_and_sklearn(rng):
    A, B = planted_cca(rng, 400, [0.9, 0.6])
    ours = CCA(dim=4, reg=0.0).fit(A, B).correlations_
    np.testing.assert_allclose(ours, geneig_correlations(A, B)[:4], atol=1e-9)
    sk = SkCCA(n_components=2, max_iter=5000, tol=1e-12).fit(A, B)
    xs, ys = sk.transform(A, B)
    sk_corr = [np.corrcoef(xs[:, j], ys[:, j])[0, 1] for j in range(2)]
    np.testing.assert_allclose(ours[:2], sk_corr, atol=1e-4)
    # regularisation shrinks the correlations
    assert np.all(CCA(dim=2, reg=0.5).fit(A, B).correlations_ < ours[:2])


def test_cca_torch_in_torch_out_and_save_load(rng, tmp_path):
    A, B = planted_cca(rng, 300, [0.9])
    m = CCA(dim=2).fit(torch.as_tensor(A), B)  # tensors accepted in fit
    ta = m.transform_a(torch.as_tensor(A, dtype=torch.float32))
    assert isinstance(ta, torch.Tensor) and ta.dtype == torch.float32 and ta.shape == (300, 2)
    np.testing.assert_allclose(ta.numpy(), m.transform_a(A), rtol=1e-4, atol=1e-4)
    assert m.transform_b(B.astype(np.float32)).dtype == np.float32
    path = m.save(tmp_path / "cca.npz")
    back = CCA.load(path)
    assert back.get_params() == {"dim": 2, "reg": 1e-3}
    np.testing.assert_array_equal(back.transform_b(B), m.transform_b(B))
    assert isinstance(load_linear_model(path), CCA)
    with pytest.raises(TypeError, match="holds a CCA, not a ESZSL"):
        ESZSL.load(path)
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="not a geoalign linear model"):
        load_linear_model(tmp_path / "other.npz")
    with pytest.raises(ValueError, match=".npz"):
        m.save(tmp_path / "cca.bin")


def test_cca_errors(rng):
    A, B = planted_cca(rng, 50, [0.9])
    with pytest.raises(ValueError, match="same number of rows.*50 and 49"):
        CCA().fit(A, B[:49])
    with pytest.raises(ValueError, match="dim must be <= min"):
        CCA(dim=6).fit(A, B)
    with pytest.raises(ValueError, match="reg must be >= 0"):
        CCA(reg=-1).fit(A, B)
    bad = A.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="X_a contains 1 NaN"):
        CCA().fit(bad, B)
    with pytest.raises(ValueError, match="singular"):
        CCA(reg=0.0).fit(np.hstack([A, A[:, :1]]), B)
    with pytest.raises(RuntimeError, match="not fitted"):
        CCA().transform_a(A)
    m = CCA().fit(A, B)
    with pytest.raises(ValueError, match="7 features"):
        m.transform_a(B)


def planted_zsl(rng, n_per_class=30, n_classes=16, n_attr=8, d=30, noise=0.5):
    """Classes = distinct binary attribute combinations (half of the attributes on, as in
    AwA-style data); features are a random linear image of the class attributes plus noise,
    so unseen classes are new combinations of attributes learned on seen classes."""
    combos = np.array(list(itertools.combinations(range(n_attr), n_attr // 2)))
    S = np.zeros((n_classes, n_attr))
    for row, on in zip(S, combos[rng.choice(len(combos), n_classes, replace=False)]):
        row[on] = 1.0
    W = rng.normal(size=(n_attr, d))
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = S[y] @ W + noise * rng.normal(size=(y.size, d))
    return X, y, S


def test_eszsl_solves_planted_zero_shot_problem(rng):
    X, y, S = planted_zsl(rng)
    seen, unseen = np.arange(12), np.arange(12, 16)
    tr, te = y < 12, y >= 12
    m = ESZSL(alpha=1.0, gamma=1.0).fit(X[tr], S[seen], y[tr])
    pred = m.predict_zsl(X[te], S[unseen])
    acc = np.mean(unseen[pred] == y[te])
    assert acc > 0.95  # chance is 0.25
    scores = np.zeros((te.sum(), 16))
    scores[:, unseen] = m.class_scores(X[te], S[unseen])
    assert zsl_accuracy(scores, y[te], unseen) == pytest.approx(
        np.mean([np.mean(pred[y[te] == c] == c - 12) for c in unseen]))
    tpred = m.predict_zsl(torch.as_tensor(X[te]), torch.as_tensor(S[unseen]))
    assert isinstance(tpred, torch.Tensor)
    np.testing.assert_array_equal(tpred.numpy(), pred)


def test_eszsl_closed_form_is_the_stationary_point(rng):
    """V minimises ||X V S^T - Y||^2 + a||V S^T||^2 + g||X V||^2 + a g ||V||^2 (autograd check)."""
    X, y, S = planted_zsl(rng, n_per_class=5, n_classes=4, d=6, n_attr=4)
    alpha, gamma = 0.7, 2.0
    m = ESZSL(alpha=alpha, gamma=gamma).fit(X, S, y)
    V = torch.tensor(m.V_, requires_grad=True)
    Xt, St = torch.as_tensor(X), torch.as_tensor(S)
    Y = -torch.ones(len(y), 4, dtype=torch.float64)
    Y[torch.arange(len(y)), torch.as_tensor(y)] = 1.0
    loss = ((Xt @ V @ St.T - Y) ** 2).sum() + alpha * ((V @ St.T) ** 2).sum() \
        + gamma * ((Xt @ V) ** 2).sum() + alpha * gamma * (V ** 2).sum()
    loss.backward()
    assert V.grad.abs().max() < 1e-8 * max(1.0, float(loss.detach()))
    # same V as the paper's notation (samples as columns)
    Xc, Sc = X.T, S.T
    Yp = Y.numpy()
    ref = np.linalg.inv(Xc @ Xc.T + alpha * np.eye(6)) @ Xc @ Yp @ Sc.T @ np.linalg.inv(Sc @ Sc.T + gamma * np.eye(4))
    np.testing.assert_allclose(m.V_, ref, rtol=1e-8, atol=1e-10)


def test_eszsl_errors_and_roundtrip(rng, tmp_path):
    X, y, S = planted_zsl(rng, n_per_class=5, n_classes=4, d=6, n_attr=4)
    with pytest.raises(ValueError, match="y .* is required"):
        ESZSL().fit(X, S)
    with pytest.raises(ValueError, match="y must have length 20"):
        ESZSL().fit(X, S, y[:-1])
    with pytest.raises(ValueError, match="class id 3 but X_b .* only 3 rows"):
        ESZSL().fit(X, S[:3], y)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        ESZSL(alpha=-1).fit(X, S, y)
    m = ESZSL().fit(X, S, y)
    with pytest.raises(ValueError, match="class_semantics must have 4 columns"):
        m.predict_zsl(X, S[:, :2])
    with pytest.raises(ValueError, match="6 features"):
        m.predict_zsl(X[:, :5], S)
    with pytest.raises(ValueError, match="NaN"):
        m.predict_zsl(np.full((1, 6), np.nan), S)
    back = ESZSL.load(m.save(tmp_path / "e.npz"))
    np.testing.assert_array_equal(back.predict_zsl(X, S), m.predict_zsl(X, S))
    assert back.get_params() == {"alpha": 1.0, "gamma": 1.0}


def test_cca_on_digits_unseen_classes_retrieval():
    """Left<->right halves, CCA fitted on seen digits 0-6, retrieval among unseen 7-9."""
    d = load_digits_two_view()
    maps = {}
    for dim in (2, 8):
        m = CCA(dim=dim, reg=1e-2).fit(d.X_a_train, d.X_b_train)
        res = retrieval_scores(m.transform_a(d.X_a_test), m.transform_b(d.X_b_test), d.y_test, d.y_test)
        maps[dim] = res.map_all
    print("digits CCA unseen mAP@all:", maps)
    # chance (random ranking) is ~ the class frequency, about 1/3 here
    chance = np.mean([np.mean(d.y_test == c) for c in d.y_test])
    assert chance < 0.34
    assert maps[2] > 0.5 and maps[8] > 0.45
