"""QSMA: sampling, loss terms, estimator API, encoders, zero-shot, persistence, bad input."""
import json

import numpy as np
import pytest
import torch

from geoalign.data.planted import PlantedAlignment
from geoalign.manifolds import Sphere
from geoalign.models.base import AlignmentEstimator, get_model_class
from geoalign.data.digits import digits_training_source
from geoalign.models.qsma import (QSMA, ConvEncoder, HierarchicalAttentionEncoder,
                                  digitally_shifted_normal, kl_to_standard_normal,
                                  scrambled_sobol_bits, sobol_normal)

# dropout off and labels on (the defaults before issue 15): these tests check the mechanics of
# every term, the labelled positives included, on a deterministic forward pass
FAST = dict(dim=8, hidden=32, n_layers=1, max_epochs=3, batch_size=64, random_state=0,
            dropout=0.0, use_labels=True, trainer_options={"progress": False})


@pytest.fixture(scope="module")
def planted():
    gen = PlantedAlignment(dim=16, shared_rank=3, private_ranks=(2, 2), snr=20, n_classes=4,
                           between_class_fraction=0.9,
                           random_state=0)
    return gen.sample(160)


# ---------------------------------------------------------------- sampling and KL
def test_sobol_normal_is_a_shifted_net_per_item():
    eps = sobol_normal(5, 8, 3, seed=7, dtype=torch.float64)
    assert eps.shape == (5, 8, 3)
    u = torch.special.ndtr(eps)
    # each item's 8 points form a (t, 3, 3)-net: every coordinate hits each 1/8 stratum once,
    # and Sobol's first two coordinates form a (0, 3, 2)-net: each of the 1/2 x 1/4, 1/4 x 1/2,
    # ... elementary boxes of area 1/8 holds exactly one point
    for i in range(5):
        for j in range(3):
            assert sorted(torch.floor(u[i, :, j] * 8).long().tolist()) == list(range(8))
        for k in range(4):
            boxes = torch.floor(u[i, :, 0] * 2 ** k).long() * 2 ** (3 - k) + \
                torch.floor(u[i, :, 1] * 2 ** (3 - k)).long()
            assert sorted(boxes.tolist()) == list(range(8))
    # items are shifted differently (not one point set repeated), reproducibly per seed
    assert not torch.allclose(eps[0], eps[1])
    assert torch.equal(eps, sobol_normal(5, 8, 3, seed=7, dtype=torch.float64))
    assert not torch.equal(eps, sobol_normal(5, 8, 3, seed=8, dtype=torch.float64))


def test_digital_shift_gives_uniform_points_and_exact_quantiles():
    bits = scrambled_sobol_bits(16, 2, seed=3)
    gen = torch.Generator().manual_seed(0)
    shifts = torch.randint(0, 2 ** 30, (4000, 2), generator=gen)
    eps = digitally_shifted_normal(bits, shifts, torch.float64)
    assert eps.shape == (16, 4000, 2) and torch.isfinite(eps).all()
    # the quantile map is Phi^{-1} of the shifted point (cell centre at 23 bits)
    u = (((bits[:, None] ^ shifts[None]) >> 7).double() + 0.5) / 2 ** 23
    assert torch.allclose(eps, torch.special.ndtri(u), atol=1e-10)
    # randomisation: each point, over random shifts, is uniform on (0, 1) (KS test)
    from scipy import stats

    for k in (0, 5):
        assert stats.kstest(u[k, :, 0].numpy(), "uniform").pvalue > 1e-3
    # float32 path: finite (never Phi^{-1}(0) or Phi^{-1}(1)) and close to float64
    e32 = digitally_shifted_normal(bits, shifts, torch.float32)
    assert e32.dtype == torch.float32 and torch.allclose(e32.double(), eps, atol=1e-4)


def test_info_nce_of_k_problems_matches_cross_entropy_and_gradient(rng):
    import torch.nn.functional as F

    from geoalign.models.losses import batched_symmetric_info_nce, symmetric_info_nce

    L = torch.tensor(3 * rng.normal(size=(4, 10, 10)), requires_grad=True)
    y = torch.as_tensor(rng.integers(0, 3, size=10))

    def reference(Lk, lab):  # autograd through log_softmax, one problem
        T = torch.eye(10, dtype=Lk.dtype) if lab is None else (lab[:, None] == lab[None, :]).to(Lk.dtype)
        T = T / T.sum(1, keepdim=True)
        return -0.5 * ((T * F.log_softmax(Lk, 1)).sum(1).mean() + (T * F.log_softmax(Lk.T, 1)).sum(1).mean())

    for lab in (None, y):
        got = symmetric_info_nce(L, lab)
        (g_got,) = torch.autograd.grad(got, L)
        ref = torch.stack([reference(L[k], lab) for k in range(4)]).mean()
        (g_ref,) = torch.autograd.grad(ref, L)
        assert torch.allclose(got, ref, atol=1e-12) and torch.allclose(g_got, g_ref, atol=1e-12)
        # one problem: [B, B] is [1, B, B]
        assert torch.equal(symmetric_info_nce(L[0], lab), symmetric_info_nce(L[:1], lab))
    assert torch.autograd.gradcheck(lambda t: symmetric_info_nce(t, y), (L,))
    assert torch.autograd.gradcheck(lambda t: symmetric_info_nce(t[0]), (L,))
    # a positive far below its row maximum: finite in float32 (no log of an underflowed softmax)
    far = torch.zeros(1, 4, 4)
    far[0, 0, 0] = -150.0
    assert torch.isfinite(symmetric_info_nce(far))
    with pytest.raises(ValueError, match=r"shape \[B, B\] or \[K, B, B\]"):
        symmetric_info_nce(torch.zeros(3, 4))
    with pytest.warns(FutureWarning, match="batched_symmetric_info_nce is deprecated"):
        assert torch.equal(batched_symmetric_info_nce(L, y), symmetric_info_nce(L, y))


def test_kl_matches_torch_distributions(rng):
    mu = torch.as_tensor(rng.normal(size=(6, 4)))
    lv = torch.as_tensor(rng.normal(size=(6, 4)))
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, (0.5 * lv).exp()), torch.distributions.Normal(0.0, 1.0))
    assert torch.allclose(kl_to_standard_normal(mu, lv), ref.sum(-1).mean())


# ---------------------------------------------------------------- loss terms
def _module(X_a, X_b, y=None, **kw):
    est = QSMA(**{**FAST, **kw})
    est._check_params()
    ta, tb = torch.as_tensor(X_a, dtype=torch.float64), torch.as_tensor(X_b, dtype=torch.float64)
    torch.manual_seed(0)
    return est._build_module(ta.shape[1], tb.shape[1], ta, tb, None).double(), ta, tb


@pytest.mark.parametrize("alignment", ["sliced", "sinkhorn"])
def test_every_term_has_a_switch_and_finite_gradients(planted, alignment):
    mod, ta, tb = _module(planted.U, planted.V, alignment=alignment, private_dim=2)
    y = torch.as_tensor(planted.labels)
    mod.train()
    terms = mod.loss_terms((ta[:48], tb[:48], y[:48]))
    assert set(terms) == {"contrastive", "alignment", "barycentric", "kl", "orthogonality",
                          "reconstruction", "total"}
    terms["total"].backward()
    grads = [p.grad for p in mod.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    for switch, name in [("use_contrastive", "contrastive"), ("use_alignment", "alignment"),
                         ("use_barycentric", "barycentric"), ("use_kl", "kl")]:
        mod_off, _, _ = _module(planted.U, planted.V, alignment=alignment, **{switch: False})
        assert name not in mod_off.loss_terms((ta[:48], tb[:48]))
    # weights scale their term in the total
    m1, _, _ = _module(planted.U, planted.V, use_contrastive=False, use_barycentric=False,
                       use_kl=False, lambda_alignment=1.0, alignment=alignment)
    m2, _, _ = _module(planted.U, planted.V, use_contrastive=False, use_barycentric=False,
                       use_kl=False, lambda_alignment=3.0, alignment=alignment)
    torch.manual_seed(3)  # same Sobol scramble for both
    t1 = m1.loss_terms((ta[:48], tb[:48]))
    torch.manual_seed(3)
    t2 = m2.loss_terms((ta[:48], tb[:48]))
    assert torch.allclose(t2["total"], 3 * t1["total"], rtol=1e-6)


def test_contrastive_equals_info_nce_without_sampling(planted):
    from geoalign.models.contrastive import symmetric_info_nce

    mod, ta, tb = _module(planted.U, planted.V, n_samples=0)
    y = torch.as_tensor(planted.labels[:40])
    za, zb = mod.embed_a(ta[:40]), mod.embed_b(tb[:40])
    logits = mod.logit_scale() * za @ zb.T
    for lab in (None, y):
        got = mod.loss_terms((ta[:40], tb[:40]) + (() if lab is None else (lab,)))["contrastive"]
        assert torch.allclose(got, symmetric_info_nce(logits, lab))


def test_temperature_is_clamped(planted):
    mod, _, _ = _module(planted.U, planted.V, min_temperature=0.05, max_temperature=0.5)
    with torch.no_grad():
        mod.log_logit_scale.fill_(10.0)
    assert abs(float(mod.logit_scale().detach()) - 20.0) < 1e-9
    with torch.no_grad():
        mod.log_logit_scale.fill_(-10.0)
    assert abs(float(mod.logit_scale().detach()) - 2.0) < 1e-9


def test_barycentric_midpoints_match_sphere_geodesic(rng):
    sphere = Sphere(dim=4)
    a = torch.as_tensor(sphere.random(30, seed=1))
    perm = torch.as_tensor(rng.permutation(30))
    mod, _, _ = _module(rng.normal(size=(10, 4)), rng.normal(size=(10, 4)), dim=5,
                        ot_reg=1e-3, sinkhorn_iters=500)
    # b is a permutation of a: the OT plan is the matching, images are the points themselves
    mid_a, mid_b, plan = mod.barycentric_midpoints(a, a[perm])
    assert torch.allclose(plan.sum(), torch.tensor(1.0, dtype=plan.dtype), atol=1e-6)
    assert torch.allclose(mid_a, a, atol=1e-4) and torch.allclose(mid_b, a[perm], atol=1e-4)
    # general clouds: midpoint is equidistant from the point and its barycentric image
    b = torch.as_tensor(sphere.random(30, seed=2))
    mid_a, _, plan = mod.barycentric_midpoints(a, b)
    img = sphere.projx((plan @ b) / plan.sum(1, keepdim=True))
    assert torch.allclose(sphere.dist(a, mid_a), sphere.dist(mid_a, img), atol=1e-6)
    assert torch.allclose(2 * sphere.dist(a, mid_a), sphere.dist(a, img), atol=1e-6)


def test_sliced_term_is_mean_1d_w2_over_its_directions(rng):
    import ot

    mod, _, _ = _module(rng.normal(size=(10, 4)), rng.normal(size=(10, 4)), dim=5)
    sphere = Sphere(dim=4)
    a = torch.as_tensor(sphere.random(40, seed=3))
    b = torch.as_tensor(sphere.random(40, seed=4))
    torch.manual_seed(5)
    got = mod._alignment(a, b)
    torch.manual_seed(5)
    theta = mod.sliced_directions()
    assert theta.shape == (64, 5) and torch.allclose(theta.norm(dim=1), torch.ones(64, dtype=theta.dtype))
    ref = np.mean([ot.wasserstein_1d((a @ t).numpy(), (b @ t).numpy(), p=2) for t in theta])
    assert abs(float(got) - ref) < 1e-10
    # a fresh digital shift every step: different directions, same cached net
    assert not torch.allclose(theta, mod.sliced_directions())


@pytest.mark.parametrize("reg", [0.05, 0.2])
def test_scaling_sinkhorn_plan_matches_log_domain(reg):
    from geoalign.ot import sinkhorn

    sphere = Sphere(dim=5)
    a = torch.as_tensor(sphere.random(30, seed=1))
    b = torch.as_tensor(sphere.random(25, seed=2))
    mod, _, _ = _module(np.zeros((10, 4)) + np.arange(4), np.ones((10, 4)) * np.arange(4), dim=6,
                        ot_reg=reg, sinkhorn_iters=40)
    _, _, plan = mod.barycentric_midpoints(a, b)
    ref = sinkhorn(None, None, 1.0 - a @ b.T, reg=reg, max_iter=40, tol=0.0, warn=False).plan
    assert torch.allclose(plan, ref, atol=1e-9, rtol=1e-6)


# ---------------------------------------------------------------- estimator API
def test_fit_transform_kinds_and_save_load(planted, tmp_path):
    est = QSMA(**FAST).fit(planted.U, planted.V, planted.labels)
    Z = est.transform_a(planted.U)
    assert isinstance(Z, np.ndarray) and Z.shape == (160, 8)
    assert np.allclose(np.linalg.norm(Z, axis=1), 1, atol=1e-5)
    Zt = est.transform_b(torch.as_tensor(planted.V))
    assert isinstance(Zt, torch.Tensor) and Zt.shape == (160, 8)
    path = est.save(tmp_path / "q.pt")
    back = AlignmentEstimator.load(path)
    assert isinstance(back, QSMA) and get_model_class("qsma") is QSMA
    assert np.allclose(back.transform_a(planted.U), Z, atol=1e-6)
    assert set(est.history_.records[-1]) >= {"train_contrastive", "train_alignment",
                                             "train_barycentric", "train_kl"}


def test_training_reduces_loss_and_is_reproducible(planted):
    kw = {**FAST, "max_epochs": 8}
    a = QSMA(**kw).fit(planted.U, planted.V)
    b = QSMA(**kw).fit(planted.U, planted.V)
    losses = [r["train_loss"] for r in a.history_.records]
    assert losses[-1] < losses[0]
    assert np.array_equal(a.transform_a(planted.U), b.transform_a(planted.U))


class CountingConsistency(torch.nn.Module):
    """A consistency hook with a parameter: must be called and trained with the model."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(1.0))
        self.calls = 0

    def loss(self, z_a, z_b):
        self.calls += 1
        return self.w * (z_a - z_b).pow(2).sum(-1).mean()


def test_consistency_hook_is_used_and_not_saved(planted, tmp_path):
    hook = CountingConsistency()
    est = QSMA(**{**FAST, "consistency": hook}).fit(planted.U, planted.V)
    assert hook.calls >= 3 and float(hook.w.detach()) != 1.0  # trained with the model
    assert "train_consistency" in est.history_.records[-1]
    back = QSMA.load(est.save(tmp_path / "c.pt"))
    assert back.consistency is None and est.consistency is hook
    assert np.allclose(back.transform_a(planted.U), est.transform_a(planted.U), atol=1e-6)
    with pytest.raises(TypeError, match="loss"):
        QSMA(**{**FAST, "consistency": object()}).fit(planted.U, planted.V)


def test_poincare_latent(planted):
    est = QSMA(**{**FAST, "latent": "poincare"}).fit(planted.U, planted.V)
    Z = est.transform_a(planted.U)
    assert np.all(np.linalg.norm(Z, axis=1) < 1)
    s = est.zsl_scores(planted.U[:5], planted.V[:7])
    assert s.shape == (5, 7) and np.all(s <= 0)


def test_attention_encoder_on_ring_coefficients():
    from geoalign.data.digits import load_digits_two_view

    d = load_digits_two_view(val_fraction=0.0)
    left, right = d.polynomials("train")
    sel = slice(0, 200)
    est = QSMA(**{**FAST, "encoder_a": "attention", "encoder_b": "attention", "group_size": 4,
                  "vocab_size_a": 17, "vocab_size_b": 17, "embed_dim": 16})
    est.fit(left[sel], right[sel], d.y_train[sel])
    assert isinstance(est.module_.encoder_a, HierarchicalAttentionEncoder)
    assert est.module_.encoder_a.n_groups == 8
    Z = est.transform_a(left[:10])
    assert Z.shape == (10, 8) and np.all(np.isfinite(Z))
    bad = left[:10].copy()
    bad[0, 0] = 17
    with pytest.raises(ValueError, match=r"\[0, 17\)"):
        est.transform_a(bad)
    with pytest.raises(ValueError, match="multiple of group_size"):
        HierarchicalAttentionEncoder(30, 8, group_size=4)


def test_patch_attention_encoder_continuous(planted):
    est = QSMA(**{**FAST, "encoder_a": "attention", "group_size": 2, "token_features": 2})
    est.fit(planted.U, planted.V)
    assert est.module_.encoder_a.n_groups == 4 and est.transform_a(planted.U).shape == (160, 8)


def test_conv_encoder_on_digit_halves(tmp_path):
    from geoalign.data.digits import load_digits_two_view

    d = load_digits_two_view()
    sel = slice(0, 200)
    est = QSMA(**{**FAST, "encoder_a": "conv", "encoder_b": "conv", "input_shape_a": (8, 4),
                  "input_shape_b": (1, 8, 4), "conv_channels": (4, 8)})
    est.fit(d.X_a_train[sel], d.X_b_train[sel])
    enc = est.module_.encoder_a
    assert isinstance(enc, ConvEncoder) and enc.input_shape == (1, 8, 4)
    # one global mean and scale (a pixel means the same everywhere), fitted on the data
    assert torch.allclose(enc.standardize.mean, torch.full((32,), float(d.X_a_train[sel].mean())))
    Z = est.transform_a(d.X_a_train[:10])
    assert Z.shape == (10, 8) and np.allclose(np.linalg.norm(Z, axis=1), 1, atol=1e-5)
    back = QSMA.load(est.save(tmp_path / "conv.pt"))
    assert np.allclose(back.transform_b(d.X_b_train[:10]), est.transform_b(d.X_b_train[:10]), atol=1e-6)


def test_conv_encoder_is_translation_equivariant_before_pooling():
    torch.manual_seed(0)
    enc = ConvEncoder(8 * 8, 16, (8, 8), channels=(3,))
    img = torch.zeros(1, 64)
    img[0, 2 * 8 + 2] = 1.0  # one pixel at (2, 2), and the same pixel at (3, 4)
    moved = torch.zeros(1, 64)
    moved[0, 3 * 8 + 4] = 1.0
    f = enc.features[:2]  # convolution + GELU
    a = f(enc.standardize(img).reshape(1, 1, 8, 8))
    b = f(enc.standardize(moved).reshape(1, 1, 8, 8))
    assert torch.allclose(torch.roll(a, (1, 2), dims=(2, 3))[..., 2:, 2:], b[..., 2:, 2:], atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(encoder_a="conv"), "input_shape_a is required"),
    (dict(encoder_a="conv", input_shape_a=(8, 0)), "positive ints"),
    (dict(encoder_a="conv", input_shape_a=(8,)), "positive ints"),
    (dict(input_shape_b=(8, 2)), "only used with encoder_b='conv'"),
    (dict(encoder_b="conv", input_shape_b=(8, 2), conv_channels=()), "conv_channels"),
    (dict(encoder_b="conv", input_shape_b=(5, 3)), "holds 15 values"),
])
def test_conv_encoder_bad_options(planted, kwargs, match):
    with pytest.raises(ValueError, match=match):
        QSMA(**{**FAST, **kwargs}).fit(planted.U, planted.V)


# ---------------------------------------------------------------- zero-shot
def test_predict_zsl_and_gzsl(planted):
    est = QSMA(**{**FAST, "max_epochs": 10}).fit(planted.U, planted.V, planted.labels)
    pred = est.predict_zsl(planted.U, planted.V, class_labels=planted.labels)
    assert pred.shape == (160,) and set(np.unique(pred)) <= set(range(4))
    assert np.mean(pred == planted.labels) > 0.8
    P, classes = est.class_prototypes(planted.V, planted.labels)
    assert P.shape == (4, 8) and np.allclose(np.linalg.norm(P, axis=1), 1, atol=1e-5)
    assert np.array_equal(est.predict_zsl(planted.U, P, kind="prototypes"), pred)
    val, test = slice(0, 80), slice(80, 160)
    res = est.evaluate_gzsl(planted.U[val], planted.labels[val], planted.U[test],
                            planted.labels[test], planted.V, seen_classes=[0, 1],
                            class_labels=planted.labels)
    assert 0 <= res.harmonic <= 1 and np.isfinite(res.gamma)


# ---------------------------------------------------------------- bad input
def test_bad_input(planted):
    U, V, y = planted.U, planted.V, planted.labels
    with pytest.raises(ValueError, match="same number|same length|rows"):
        QSMA(**FAST).fit(U, V[:-1])
    with pytest.raises(ValueError, match="one label per pair"):
        QSMA(**FAST).fit(U, V, y[:-1])
    bad = U.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="X_a"):
        QSMA(**FAST).fit(bad, V)
    for kw, msg in [({"alignment": "mmd"}, "alignment"), ({"latent": "torus"}, "latent"),
                    ({"temperature": 2.0}, "temperature"), ({"lambda_kl": -1.0}, "lambda_kl"),
                    ({"encoder_a": "attention"}, "group_size"),
                    ({"vocab_size_a": 17}, "encoder_a='attention'")]:
        with pytest.raises(ValueError, match=msg):
            QSMA(**{**FAST, **kw}).fit(U, V)
    est = QSMA(**FAST).fit(U, V, y)
    with pytest.raises(ValueError, match=r"class_semantics must be view-b inputs of shape \(n, 16\)"):
        est.predict_zsl(U, np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"shape \(C, 8\)"):
        est.predict_zsl(U, np.zeros((3, 5)), kind="prototypes")
    with pytest.raises(ValueError, match="one label per row"):
        est.predict_zsl(U, V, class_labels=y[:-2])
    with pytest.raises(ValueError, match=r"X_a must have shape \(n, 16\)"):
        est.transform_a(U[:, :3])


# ---------------------------------------------------------------- CLI
def test_cli_train_digits(tmp_path):
    from geoalign.cli import main

    cfg = {"model": {"name": "qsma", "dim": 8, "hidden": 32, "n_layers": 1},
           "data": {"source": "digits", "split": "train",
                    "val": {"source": "digits", "split": "val"}},
           "trainer": {"max_epochs": 2, "batch_size": 256, "seed": 0}}
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    assert main(["train", str(path), "--no-progress", "--output", str(tmp_path / "out")]) == 0
    est = AlignmentEstimator.load(tmp_path / "out" / "model.pt")
    assert isinstance(est, QSMA) and est.history_.epochs_run == 2
    data = digits_training_source({"split": "test", "representation": "polynomials"})
    assert data["X_a"].dtype == np.int64 and set(np.unique(data["y"])) == {7, 8, 9}
    with pytest.raises(ValueError, match="unknown key"):
        digits_training_source({"split": "train", "bogus": 1})
