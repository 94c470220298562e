"""QSMA semi-paired / transductive training: unpaired samples join the alignment and barycentric
terms of every batch (and nothing else), bad input, and the regime studies."""
import numpy as np
import pytest
import torch

from geoalign.data.planted import PlantedAlignment
from geoalign.models.qsma import QSMA

FAST = dict(dim=4, hidden=16, n_layers=1, max_epochs=2, batch_size=32, random_state=0, dropout=0.0,
            trainer_options={"progress": False})


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    s = PlantedAlignment(dim=6, shared_rank=2, private_ranks=(1, 1), n_classes=4, random_state=0).sample(120)
    return s.U[:80], s.V[:80], s.U[80:], s.V[80:]


def _module_with_unpaired(data, k):
    X_a, X_b, U_a, U_b = data
    m = QSMA(**FAST).fit(X_a, X_b)
    mod = m.module_
    mod.set_unpaired(torch.as_tensor(U_a, dtype=torch.float32), torch.as_tensor(U_b, dtype=torch.float32),
                     per_step=k)
    return m, mod


def test_unpaired_rows_are_appended_to_the_distribution_terms_only(data):
    X_a, X_b, U_a, U_b = data
    m, mod = _module_with_unpaired(data, k=16)
    seen = {}
    orig_align, orig_bary = mod._alignment, mod.barycentric_midpoints
    mod._alignment = lambda a, b: seen.setdefault("align", (a.detach(), b.detach())) and orig_align(a, b)
    mod.barycentric_midpoints = lambda a, b: seen.setdefault("bary", (a.shape, b.shape)) and orig_bary(a, b)
    batch = (torch.as_tensor(X_a[:10], dtype=torch.float32), torch.as_tensor(X_b[:10], dtype=torch.float32))
    mod.train()
    torch.manual_seed(5)
    terms_u = mod.loss_terms(batch)
    a, b = seen["align"]
    assert a.shape == (10 + 16, 4) and b.shape == (10 + 16, 4) and seen["bary"] == (a.shape, b.shape)
    with torch.no_grad():
        mod.eval()
        emb_a = mod.embed_a(torch.as_tensor(U_a, dtype=torch.float32))
        emb_b = mod.embed_b(torch.as_tensor(U_b, dtype=torch.float32))
        paired_a = mod.embed_a(batch[0])
    torch.testing.assert_close(a[:10], paired_a)
    # every appended row is the embedding of a distinct unpaired row of the right view
    for appended, emb in ((a[10:], emb_a), (b[10:], emb_b)):
        match = torch.cdist(appended, emb).argmin(1)
        torch.testing.assert_close(appended, emb[match])
        assert len(set(match.tolist())) == 16
    # the contrastive and KL terms do not see them; the distribution terms do
    mod.train()
    mod.set_unpaired(None, None)
    seen.clear()
    torch.manual_seed(5)
    terms_p = mod.loss_terms(batch)
    assert seen["align"][0].shape == (10, 4)
    for name in ("contrastive", "kl"):
        torch.testing.assert_close(terms_u[name], terms_p[name])
    assert not torch.allclose(terms_u["alignment"], terms_p["alignment"])
    # in evaluation mode the pairs alone are used
    mod.set_unpaired(torch.as_tensor(U_a, dtype=torch.float32), torch.as_tensor(U_b, dtype=torch.float32), 16)
    mod.eval()
    seen.clear()
    mod.loss_terms(batch)
    assert seen["align"][0].shape == (10, 4)


def test_draw_is_capped_by_the_smaller_pool(data):
    _, mod = _module_with_unpaired(data, k=1000)
    mod.train()
    a, b = mod._with_unpaired(torch.zeros(3, 4), torch.zeros(3, 4))
    assert a.shape == b.shape == (3 + 40, 4)


def test_fit_with_unpaired_trains_and_keeps_no_data(data, tmp_path):
    X_a, X_b, U_a, U_b = data
    m = QSMA(**FAST).fit(X_a, X_b, unpaired_a=U_a, unpaired_b=U_b[:25])
    assert "unpaired_a" not in dict(m.module_.named_buffers())
    assert m.module_.unpaired_per_step == 0
    rec = m.history_.records[-1]
    assert np.isfinite(rec["train_alignment"]) and np.isfinite(rec["train_barycentric"])
    # the standardisation is fitted on every input of the view
    both = np.concatenate([X_a, U_a])
    np.testing.assert_allclose(m.module_.encoder_a.standardize.mean.numpy(), both.mean(0), rtol=1e-5, atol=1e-6)
    # unpaired data change the model (through W and B), and saving/loading works
    plain = QSMA(**FAST).fit(X_a, X_b)
    assert not np.allclose(plain.transform_a(X_a), m.transform_a(X_a))
    path = m.save(tmp_path / "m.pt")
    np.testing.assert_allclose(QSMA.load(path).transform_a(X_a), m.transform_a(X_a), rtol=1e-5, atol=1e-6)
    # tensors work too
    QSMA(**FAST).fit(torch.as_tensor(X_a), torch.as_tensor(X_b), unpaired_a=torch.as_tensor(U_a),
                     unpaired_b=torch.as_tensor(U_b))


def test_unpaired_bad_input(data):
    X_a, X_b, U_a, U_b = data
    m = QSMA(**FAST)
    with pytest.raises(ValueError, match=r"unpaired_a must have 6 features like X_a, got shape \(40, 5\)"):
        m.fit(X_a, X_b, unpaired_a=U_a[:, :5], unpaired_b=U_b)
    with pytest.raises(ValueError, match=r"unpaired_b must have 6 features like X_b"):
        m.fit(X_a, X_b, unpaired_a=U_a, unpaired_b=np.ones((4, 7)))
    bad = U_b.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="unpaired_b contains 1 NaN"):
        m.fit(X_a, X_b, unpaired_a=U_a, unpaired_b=bad)
    with pytest.raises(ValueError, match="unpaired_a and unpaired_b must be given together; unpaired_b is missing"):
        m.fit(X_a, X_b, unpaired_a=U_a)
    with pytest.raises(ValueError, match="unpaired_a must be on the device of X_a .cpu., got meta"):
        m.fit(X_a, X_b, unpaired_a=torch.zeros(4, 6, device="meta"), unpaired_b=U_b)
    with pytest.raises(ValueError, match=r"unpaired_a must have 2 dimension\(s\), got shape \(6,\)"):
        m.fit(X_a, X_b, unpaired_a=np.ones(6), unpaired_b=U_b)
    with pytest.raises(ValueError, match="unpaired_b .*empty"):
        m.fit(X_a, X_b, unpaired_a=U_a, unpaired_b=np.ones((0, 6)))
    assert getattr(m, "_unpaired_fit", None) is None


def test_regime_studies_run_and_check_their_input():
    from geoalign.studies import semi_paired_study, transductive_study

    out = semi_paired_study(0.01, "qsma", 3.0, "planted", max_steps=3)
    assert out["n_pairs"] == round(0.01 * (out["n_pairs"] + out["n_unpaired"]))
    assert 0 < out["map_all"] <= 1 and 0 <= out["R@1"] <= out["R@10"] <= 1
    full = semi_paired_study(1.0, "cca", dataset="planted")
    assert full["n_unpaired"] == 0
    t = transductive_study("disjoint", "qsma", 1.0, "planted", max_steps=3)
    n_test = 2 * t["n_unpaired_a"]
    assert transductive_study("full", "contrastive_only", dataset="planted", max_steps=3)["n_unpaired_a"] in (
        n_test, n_test + 1)
    assert transductive_study("none", "cca", dataset="planted")["n_unpaired_a"] == 0
    with pytest.raises(ValueError, match=r"paired_fraction must be in \(0, 1\]"):
        semi_paired_study(1.5)
    with pytest.raises(ValueError, match="arm"):
        semi_paired_study(0.5, arm="ridge", dataset="planted")
    with pytest.raises(ValueError, match="dataset"):
        transductive_study(dataset="mnist")
    with pytest.raises(ValueError, match="variant"):
        transductive_study(variant="half")


def test_regime_summary_against_hand_computation():
    import pandas as pd
    from scipy import stats

    from geoalign.figures.regimes_figs import mean_ci, summarize_regime

    rows = []
    for seed, (c, q1, q3) in enumerate([(0.50, 0.52, 0.60), (0.40, 0.41, 0.47), (0.45, 0.44, 0.56)]):
        for arm, lam, v in (("cca", 0.0, 0.3), ("contrastive_only", 0.0, c), ("qsma", 1.0, q1), ("qsma", 3.0, q3)):
            rows.append({"dataset": "d", "paired_fraction": 0.05, "arm": arm, "lambda_alignment": lam,
                         "seed": seed, "map_all": v, "R@1": 0.0, "R@10": 0.1})
    s = summarize_regime("semi_paired", pd.DataFrame(rows))["d"]["0.05"]
    assert s["best_lambda"] == 3.0
    diff = np.array([0.10, 0.07, 0.11])
    half = stats.t.ppf(0.975, 2) * diff.std(ddof=1) / np.sqrt(3)
    np.testing.assert_allclose(s["gain"][:2], [diff.mean(), half])
    assert s["target_met"] is True and s["target"] == 0.03
    assert mean_ci([1.0])[0] == 1.0 and np.isnan(mean_ci([1.0])[1])


def test_default_qsma_ignores_labels_so_they_cannot_hurt(data):
    X_a, X_b, _, _ = data
    y = np.arange(X_a.shape[0]) % 4
    small = dict(dim=4, hidden=16, n_layers=1, max_epochs=2, random_state=0, trainer_options={"progress": False})
    assert QSMA().use_labels is False
    with_y = QSMA(**small).fit(X_a, X_b, y)
    without = QSMA(**small).fit(X_a, X_b)
    np.testing.assert_array_equal(with_y.transform_a(X_a), without.transform_a(X_a))
    np.testing.assert_array_equal(with_y.transform_b(X_b), without.transform_b(X_b))
