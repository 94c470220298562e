"""UniCode / TOC / CLUB: TOC against a direct O(L^2 D) computation, quantiser EMA, CLUB, model."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from geoalign.models.codebook import CLUBEstimator, UniCode, VectorQuantizer, toc_select


def direct_toc(E, k, w_sim=0.7, w_var=0.3):
    L, D = E.shape
    sim = np.zeros(D)
    for d in range(D):
        total = 0.0
        for i in range(L):
            for j in range(L):
                if i != j:
                    total += E[i, d] * E[j, d]
        sim[d] = total / (L * (L - 1))
    var = np.array([np.sum((E[:, d] - E[:, d].mean()) ** 2) / (L - 1) for d in range(D)])
    J = -w_sim * sim + w_var * var
    order = sorted(range(D), key=lambda d: (-J[d], d))[:k]
    return np.array(order), J, sim, var


@given(E=arrays(np.float64, st.tuples(st.integers(2, 7), st.integers(1, 6)),
                elements=st.floats(-3, 3, allow_nan=False, width=32)),
       data=st.data())
def test_toc_matches_direct_computation(E, data):
    k = data.draw(st.integers(1, E.shape[1]))
    idx, J, sim, var = direct_toc(E, k)
    res = toc_select(E, k)
    np.testing.assert_allclose(res.similarity, sim, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(res.variance, var, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(res.scores, J, rtol=1e-9, atol=1e-9)
    # the selected set is optimal: every kept score >= every dropped score (up to rounding)
    kept = res.scores[res.indices]
    dropped = np.delete(res.scores, res.indices)
    assert len(set(res.indices.tolist())) == k
    if dropped.size:
        assert kept.min() >= dropped.max() - 1e-9


def test_toc_prefers_spread_out_dimensions_and_ties(rng):
    E = np.zeros((10, 4))
    E[:, 0] = 5.0                       # identical codes along 0: high similarity, zero variance
    E[:, 1] = rng.normal(size=10) * 3   # spread out
    E[:, 2] = 0.0                       # constant zero
    E[:, 3] = 0.0                       # tie with 2 -> lower index first
    res = toc_select(E, 3, w_sim=0.7, w_var=0.3)
    assert res.indices.tolist() == [1, 2, 3]
    idx, *_ = direct_toc(E, 3)
    assert res.indices.tolist() == idx.tolist()


def test_toc_torch_and_bad_input():
    E = torch.randn(12, 5, dtype=torch.float64)
    res = toc_select(E, 2)
    assert isinstance(res.indices, torch.Tensor) and res.indices.dtype == torch.int64
    np.testing.assert_array_equal(res.indices.numpy(), toc_select(E.numpy(), 2).indices)
    with pytest.raises(ValueError, match="k"):
        toc_select(E, 6)
    with pytest.raises(ValueError, match="at least 2 codes"):
        toc_select(E[:1], 1)
    with pytest.raises(ValueError, match="codebook"):
        toc_select(np.array([[1.0, np.nan], [0.0, 1.0]]), 1)


def test_quantizer_nearest_code_ema_and_dead_reset():
    torch.manual_seed(0)
    vq = VectorQuantizer(n_codes=4, dim=2, decay=0.9, commitment=0.25, dead_code_fraction=0.95)
    vq.embed.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [50.0, 50.0]]))
    vq.embed_avg.copy_(vq.embed)
    h = torch.tensor([[1.0, 0.0], [9.0, 1.0], [0.0, 11.0], [0.5, 0.5]], requires_grad=True)
    q, idx, commit = vq.quantize(h)
    assert idx.tolist() == [0, 1, 2, 0]
    assert torch.allclose(q, vq.embed[idx])
    assert torch.allclose(commit, 0.25 * ((h - vq.embed[idx]) ** 2).mean())
    q.sum().backward()                                  # straight-through: identity gradient
    assert torch.allclose(h.grad, torch.ones_like(h))
    size0, avg0 = vq.cluster_size.clone(), vq.embed_avg.clone()
    vq.ema_update(h, idx)
    counts = torch.tensor([2.0, 1.0, 1.0, 0.0])
    expected_size = 0.9 * size0 + 0.1 * counts
    assert torch.allclose(vq.cluster_size[:3], expected_size[:3])
    onehot = torch.nn.functional.one_hot(idx, 4).float()
    expected_avg = 0.9 * avg0 + 0.1 * onehot.T @ h.detach()
    n = expected_size.sum()
    smoothed = (expected_size + 1e-5) / (n + 4e-5) * n
    assert torch.allclose(vq.embed[:3], (expected_avg / smoothed[:, None])[:3], atol=1e-5)
    # shares: 1.1/4, 1/4, 1/4, 0.9/4; only code 3 is below 0.95/4 -> reset to an input
    assert any(torch.allclose(vq.embed[3], row) for row in h.detach())
    assert torch.isclose(vq.cluster_size[3], n / 4)


def test_club_bound_matches_pairwise_formula_and_detects_dependence(rng):
    torch.manual_seed(0)
    club = CLUBEstimator(3, 2, hidden=16).double()
    g, s = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, 2, dtype=torch.float64)
    mu, logvar = club.mu(g), club.logvar(g)
    pos = (-(mu - s) ** 2 / 2 / logvar.exp()).sum(1)
    neg = (-(mu[:, None, :] - s[None, :, :]) ** 2 / 2 / logvar.exp()[:, None, :]).sum(2).mean(1)
    assert torch.allclose(club.mi_upper(g, s), (pos - neg).mean())

    def trained_bound(dependent):
        torch.manual_seed(1)
        est = CLUBEstimator(2, 2, hidden=32).double()
        opt = torch.optim.Adam(est.parameters(), lr=1e-2)
        g = torch.randn(512, 2, dtype=torch.float64)
        s = g + 0.3 * torch.randn(512, 2, dtype=torch.float64) if dependent else \
            torch.randn(512, 2, dtype=torch.float64)
        for _ in range(200):
            opt.zero_grad()
            (-est.log_likelihood(g, s)).backward()
            opt.step()
        return est.mi_upper(g, s).item()

    assert trained_bound(True) > 2.0 > 0.3 > abs(trained_bound(False))


def _planted(rng, n=300, d=10, n_classes=5):
    y = rng.integers(0, n_classes, n)
    centres = rng.normal(size=(n_classes, 4)) * 3
    xa = np.hstack([centres[y], rng.normal(size=(n, d - 4))]) + 0.3 * rng.normal(size=(n, d))
    xb = np.hstack([centres[y] @ rng.normal(size=(4, 4)), rng.normal(size=(n, d - 4))])
    return xa.astype(np.float32), xb.astype(np.float32), y


def test_unicode_trains_alternately_and_roundtrips(rng, tmp_path):
    from geoalign.evaluation import retrieval_scores

    xa, xb, y = _planted(rng)
    model = UniCode(dim=8, n_codes=16, specific_dim=4, hidden=32, club_hidden=16, toc_k=6,
                    max_epochs=12, batch_size=64, lr=3e-3, random_state=0,
                    trainer_options={"progress": False})
    model.fit(xa, xb)
    m = model.module_
    # CLUB networks are trained only by their own inner Adam (frozen for the main optimizer)
    assert all(not p.requires_grad for p in m.club_a.parameters())
    assert int(m.club_opt_a.step_count) == 5 * 12 * 5            # 5 inner steps x 5 batches x 12
    rec = model.history_.records
    assert rec[-1]["train_loss"] < rec[0]["train_loss"]
    assert rec[-1]["train_code_agreement"] > rec[0]["train_code_agreement"]
    za, zb = model.transform_a(xa), model.transform_b(xb)
    assert za.shape == (300, 6)
    np.testing.assert_array_equal(m.toc_index.numpy(),
                                  toc_select(m.quantizer.embed, 6).indices.numpy())
    assert retrieval_scores(za, zb, y, y).mean.map_all > 0.7
    again = UniCode.load(model.save(tmp_path / "unicode.pt"))
    np.testing.assert_allclose(again.transform_b(xb), zb, atol=1e-6)
    assert int(again.module_.club_opt_a.step_count) == int(m.club_opt_a.step_count)


def test_unicode_exact_resume(rng, tmp_path):
    """Interrupted training resumed from last.pt equals an uninterrupted run (CLUB Adam state included)."""
    xa, xb, _ = _planted(rng, n=64)
    opts = dict(dim=4, n_codes=8, specific_dim=2, hidden=8, club_hidden=8, batch_size=32,
                lr=1e-2, random_state=3, max_epochs=4)
    full = UniCode(trainer_options={"progress": False}, **opts).fit(xa, xb)

    def stop_after_two(trainer, epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt

    ck = tmp_path / "ck"
    with pytest.raises(KeyboardInterrupt):
        UniCode(trainer_options={"progress": False, "checkpoint_dir": ck,
                                 "callbacks": [stop_after_two]}, **opts).fit(xa, xb)
    state = torch.load(ck / "last.pt", weights_only=True)
    assert any(k.startswith("club_opt_a.exp_avg") for k in state["model"])
    resumed = UniCode(trainer_options={"progress": False, "checkpoint_dir": ck, "resume": True},
                      **opts).fit(xa, xb)
    assert resumed.history_.resumed_from_epoch == 2
    for k, v in full.module_.state_dict().items():
        torch.testing.assert_close(resumed.module_.state_dict()[k], v, rtol=0, atol=0)


def test_unicode_bad_input(rng):
    xa, xb, y = _planted(rng, n=20)
    model = UniCode(dim=4, n_codes=4, specific_dim=2, hidden=None, max_epochs=1,
                    trainer_options={"progress": False})
    with pytest.raises(ValueError, match="same"):
        model.fit(xa[:-1], xb)
    with pytest.raises(ValueError, match="one label per pair"):
        model.fit(xa, xb, y[:3])
    bad = xb.copy()
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match="X_b"):
        model.fit(xa, bad)
    with pytest.raises(ValueError, match="toc_k"):
        UniCode(dim=4, toc_k=5, max_epochs=1, trainer_options={"progress": False}).fit(xa, xb)
    with pytest.raises(ValueError, match="embed"):
        UniCode(dim=4, embed="codes", max_epochs=1, trainer_options={"progress": False}).fit(xa, xb)
