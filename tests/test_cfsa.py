"""CFSA: WGAN-GP penalty vs finite differences, planted class-conditional generation, API, errors."""
import numpy as np
import ot
import pytest
import torch

from geoalign.data.planted import PlantedAlignment
from geoalign.evaluation import retrieval_scores, zsl_accuracy
from geoalign.models.cfsa import CFSA, digit_glyph_semantics, gradient_penalty


class TinyCritic(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.l1 = torch.nn.Linear(3 + 2, 4).double()
        self.l2 = torch.nn.Linear(4, 1).double()

    def forward(self, x, c):
        return self.l2(torch.tanh(self.l1(torch.cat([x, c], 1)))).squeeze(1)


def test_gradient_penalty_matches_finite_differences():
    critic = TinyCritic()
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g,
                                                                                    dtype=torch.float64)
    c = torch.randn(5, 2, generator=g, dtype=torch.float64)
    alpha = torch.rand(5, 1, generator=g, dtype=torch.float64)
    gp = gradient_penalty(critic, real, fake, c, weight=10.0, alpha=alpha)
    # input gradient by central differences
    x_hat = (alpha * real + (1 - alpha) * fake).detach()
    h = 1e-6
    grad = torch.zeros_like(x_hat)
    with torch.no_grad():
        for i in range(5):
            for j in range(3):
                e = torch.zeros_like(x_hat)
                e[i, j] = h
                grad[i, j] = (critic(x_hat + e, c)[i] - critic(x_hat - e, c)[i]) / (2 * h)
    expected = 10.0 * ((grad.norm(dim=1) - 1) ** 2).mean()
    assert torch.allclose(gp, expected, rtol=1e-7, atol=1e-9)
    # gradient of the penalty w.r.t. the critic's weights (double backprop) by finite differences
    gp.backward()
    w = critic.l1.weight
    for (i, j) in [(0, 0), (2, 4), (3, 1)]:
        with torch.no_grad():
            w[i, j] += h
            up = gradient_penalty(critic, real, fake, c, 10.0, alpha).item()
            w[i, j] -= 2 * h
            down = gradient_penalty(critic, real, fake, c, 10.0, alpha).item()
            w[i, j] += h
        assert abs(w.grad[i, j].item() - (up - down) / (2 * h)) < 1e-5 * max(1.0, abs(up))


def test_gradient_penalty_zero_for_unit_slope_critic():
    def critic(x, c):
        return x @ torch.tensor([0.6, 0.8], dtype=x.dtype)
    gp = gradient_penalty(critic, torch.randn(4, 2), torch.randn(4, 2), torch.zeros(4, 1))
    assert gp.item() < 1e-10
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(critic, torch.randn(4, 2), torch.randn(3, 2), torch.zeros(4, 1))


SEM = np.random.default_rng(0).normal(size=(4, 3))
A = np.random.default_rng(1).normal(size=(3, 5)) * 2
B = np.random.default_rng(2).normal(size=(3, 4)) * 2


def planted(rng, n, classes):
    y = rng.choice(classes, n)
    xa = SEM[y] @ A + 0.3 * rng.normal(size=(n, 5))
    xb = SEM[y] @ B + 0.3 * rng.normal(size=(n, 4))
    return xa.astype(np.float32), xb.astype(np.float32), y


def sinkhorn_divergence(x, z, reg=0.5):
    def w(u, v):
        return ot.sinkhorn2(ot.unif(len(u)), ot.unif(len(v)), ot.dist(u, v), reg)
    x, z = np.asarray(x, np.float64), np.asarray(z, np.float64)
    return w(x, z) - 0.5 * w(x, x) - 0.5 * w(z, z)


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    xa, xb, y = planted(rng, 600, [0, 1, 2])
    opts = dict(dim=8, hidden=64, batch_size=100, lr=1e-3, critic_lr=1e-3, n_synthetic=32,
                random_state=0, trainer_options={"progress": False})
    # baseline: a randomly initialised generator (no ridge-initialised semantic pathway, which
    # would already place the class means before any adversarial training)
    untrained = CFSA(SEM, max_epochs=1, semantic_pathway="none",
                     **{**opts, "lr": 1e-12, "critic_lr": 1e-12}).fit(xa, xb, y)
    model = CFSA(SEM, max_epochs=40, **opts).fit(xa, xb, y)
    return model, untrained, planted(np.random.default_rng(1), 1200, [0, 1, 2, 3])


def test_generators_learn_planted_class_conditionals(trained):
    model, untrained, (ta, tb, ty) = trained
    for c in (0, 1, 2):
        ga, gb = model.sample(np.full(200, c))
        ua, ub = untrained.sample(np.full(200, c))
        for gen, base, X in ((ga, ua, ta), (gb, ub, tb)):
            real = X[ty == c][:200]
            d = sinkhorn_divergence(gen, real)
            # stated bound (reg 0.5): synthetic-to-real below 2.5, where distinct classes lie
            # 3 to 60 apart and two real samples of one class about 0.05
            assert d < 2.5, (c, d)
            assert d < sinkhorn_divergence(base, real)
            for other in {0, 1, 2} - {c}:
                far = X[ty == other][:200]
                if sinkhorn_divergence(real, far) > 10:   # well-separated classes
                    assert sinkhorn_divergence(gen, far) > 5 * d
    assert model.sample([0, 1])[0].shape == (2, 5)


def test_zero_shot_through_synthesised_unseen_features(trained, tmp_path):
    model, _, (ta, tb, ty) = trained
    unseen = ty == 3
    assert model.module_.seen_mask.tolist() == [True, True, True, False]
    # prototypes of synthesised features classify the seen classes (class 2 is far from 0 and 1)
    seen = ~unseen
    pred = model.predict_zsl(tb[seen], which="b", classes=[0, 1, 2])
    assert np.mean((pred == 2) == (ty[seen] == 2)) > 0.9
    # default candidate set: the classes never seen in training (only class 3 here)
    assert np.all(model.predict_zsl(tb[unseen], which="b") == 3)
    again = CFSA.load(model.save(tmp_path / "cfsa.pt"))
    np.testing.assert_allclose(again.transform_a(ta), model.transform_a(ta), atol=1e-6)
    assert again.module_.seen_mask.tolist() == [True, True, True, False]


def test_digit_glyph_semantics():
    sem = digit_glyph_semantics()
    assert sem.shape == (10, 64)
    np.testing.assert_allclose(np.linalg.norm(sem, axis=1), 1.0)
    assert np.all(sem >= 0)
    gram = sem @ sem.T
    assert np.all(gram[~np.eye(10, dtype=bool)] < 0.99)   # ten distinct (if similar at 8x8) rows
    one = sem[1].reshape(8, 8)
    assert one[:, 3:5].sum() > one[:, [0, 7]].sum()      # a "1" is inked in the middle columns
    np.testing.assert_array_equal(sem, digit_glyph_semantics())


def test_cfsa_bad_input(rng):
    xa, xb, y = planted(rng, 30, [0, 1])
    opts = dict(max_epochs=1, trainer_options={"progress": False})
    with pytest.raises(ValueError, match="class_semantics"):
        CFSA(**opts).fit(xa, xb, y)
    with pytest.raises(ValueError, match="class labels"):
        CFSA(SEM, **opts).fit(xa, xb)
    with pytest.raises(ValueError, match="one label per pair"):
        CFSA(SEM, **opts).fit(xa, xb, y[:-1])
    with pytest.raises(ValueError, match="index rows of class_semantics"):
        CFSA(SEM[:1], **opts).fit(xa, xb, y)
    with pytest.raises(ValueError, match="class_semantics"):
        CFSA(SEM[0], **opts).fit(xa, xb, y)
    bad = SEM.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="class_semantics"):
        CFSA(bad, **opts).fit(xa, xb, y)
    with pytest.raises(ValueError, match="same"):
        CFSA(SEM, **opts).fit(xa, xb[:-1], y)
    with pytest.raises(ValueError, match="synthesize"):
        CFSA(SEM, synthesize="none", **opts).fit(xa, xb, y)
    with pytest.raises(ValueError, match="semantic_pathway"):
        CFSA(SEM, semantic_pathway="quadratic", **opts).fit(xa, xb, y)
    with pytest.raises(ValueError, match="semantic_ridge"):
        CFSA(SEM, semantic_ridge=0.0, **opts).fit(xa, xb, y)
    with pytest.raises(ValueError, match="classifier_weight"):
        CFSA(SEM, classifier_weight=-1.0, **opts).fit(xa, xb, y)


# --- zero-shot transfer on planted data with a predictable semantic map ----------------------
# Class semantics = a known linear map of the class centres of the shared latent, so unseen-class
# feature means are a linear function of their semantics (learnable from the 5 seen classes).
ZS_MAP = np.random.default_rng(5).normal(size=(4, 6))


@pytest.fixture(scope="module")
def zero_shot():
    torch.set_num_threads(1)
    gen = PlantedAlignment(dim=16, shared_rank=4, private_ranks=(2, 2), snr=5.0, n_classes=8,
                           between_class_fraction=0.9, random_state=0)
    data = gen.sample(1600)
    sem = data.class_centers @ ZS_MAP              # built from the generator, no test sample used
    split = data.zero_shot_split(3, random_state=0)
    tr = split.seen
    model = CFSA(sem, dim=8, hidden=64, batch_size=100, lr=1e-3, critic_lr=1e-3, n_synthetic=32,
                 max_epochs=30, random_state=0, trainer_options={"progress": False})
    model.fit(tr.U.astype(np.float32), tr.V.astype(np.float32), tr.labels)
    return model, split, sem


def test_semantic_pathway_is_ridge_regression_on_seen_classes(zero_shot):
    model, split, sem = zero_shot
    m, tr = model.module_, split.seen
    seen = split.seen_classes
    cc = sem[seen] - sem[seen].mean(0)
    gram = cc.T @ cc
    assert model.semantic_ridge == 1.0                     # the default (benchmarks/select_defaults.py)
    alpha = 1.0 * np.trace(gram) / gram.shape[0]
    for X, enc, layer in ((tr.U, m.encoder_a, m.semantic_a), (tr.V, m.encoder_b, m.semantic_b)):
        xs = (X - enc.mean.double().numpy()) / enc.scale.double().numpy()
        means = np.stack([xs[tr.labels == k].mean(0) for k in seen])
        w = np.linalg.solve(gram + alpha * np.eye(6), cc.T @ (means - means.mean(0)))
        # frozen by default (semantic_trainable=False): still the closed form after training
        np.testing.assert_allclose(layer.weight.detach().double().numpy(), w.T, rtol=1e-3, atol=1e-4)
        # a semantic direction orthogonal to every centred seen semantic vector maps to zero
        null = np.linalg.svd(cc)[2][-1]
        assert np.abs(w.T @ null).max() < 1e-4 * np.abs(w).max()


def test_zero_shot_unseen_classes_planted(zero_shot):
    model, split, sem = zero_shot
    te, unseen = split.unseen, split.unseen_classes
    assert unseen.size == 3                                   # chance: ZSL accuracy 1/3
    # the generators extrapolate: every synthesised unseen-class mean lies nearest the real
    # mean of its own class (features, never seen in training)
    ga, gb = model.sample(np.repeat(unseen, 300), seed=1)
    for gen, X in ((ga, te.U), (gb, te.V)):
        gmu = gen.reshape(3, 300, -1).mean(1)
        real = np.stack([X[te.labels == k].mean(0) for k in unseen])
        dist = np.linalg.norm(gmu[:, None] - real[None], axis=-1)
        np.testing.assert_array_equal(dist.argmin(1), np.arange(3))
    # ZSL accuracy among the unseen classes (scores against synthesised prototypes of all classes)
    for which, X in (("a", te.U), ("b", te.V)):
        z = model.transform_a(X) if which == "a" else model.transform_b(X)
        scores = z @ model.class_prototypes(which).T
        acc = zsl_accuracy(scores, te.labels, classes=unseen)
        assert acc >= 0.6, (which, acc)                       # stated bound; chance 0.33
        pred = model.predict_zsl(X, which=which)
        assert np.mean(pred == te.labels) >= 0.6
    # cross-view retrieval of unseen classes, mAP@all over both directions; chance is about the
    # class frequency (~0.35 here)
    za, zb = model.transform_a(te.U), model.transform_b(te.V)
    freq = np.bincount(te.labels)[unseen] / te.labels.size
    result = retrieval_scores(za, zb, te.labels, te.labels)
    assert result.map_all >= 0.6 > float(np.sum(freq ** 2)) + 0.1, result.map_all
