"""Ring-valued planted generator: closed-form fiber products checked against brute force."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from geoalign.data.planted_rings import PlantedRingAlignment, PlantedRingSample, RingLinearEmbedding
from geoalign.fiber import fiber_product
from geoalign.rings import PolyRing, centered_lift, decode_image, decode_tokens, encode_image


def brute_force_pairs(X, Y, eps):
    """F_eps by a full float64 distance matrix (the reference join)."""
    i, j = np.nonzero(cdist(X, Y) <= eps)
    return np.stack([i, j], axis=1)


def as_set(pairs):
    return {tuple(p) for p in np.asarray(pairs).tolist()}


def as_mask(pairs, n):
    """Pairs as an n x n boolean membership matrix (fast inclusion tests)."""
    mask = np.zeros((n, n), dtype=bool)
    mask[tuple(np.asarray(pairs).T)] = True
    return mask


def test_zero_noise_fiber_is_equal_shared_content_brute_force():
    gen = PlantedRingAlignment(image_shape=(6, 6), vocab_size=50, seq_len=8, shared_rank=2,
                               private_ranks=(0, 0), levels=6, dim=8, n_classes=5, random_state=3)
    d = gen.sample(300)
    X, Y = d.embeddings()
    F0 = d.fiber_pairs(eps=0)
    np.testing.assert_array_equal(F0, brute_force_pairs(X, Y, 0.0))
    # independent statement of the truth: equal shared content, duplicates included
    same = (d.shared[:, None, :] == d.shared[None, :, :]).all(-1)
    np.testing.assert_array_equal(F0, np.argwhere(same))
    assert as_set((i, i) for i in range(300)) <= as_set(F0)
    assert len(F0) > 2 * 300  # many duplicates of the shared content
    off_class = d.labels[F0[:, 0]] != d.labels[F0[:, 1]]
    np.testing.assert_array_equal(np.unique(d.shared[F0[:, 0]] - d.shared[F0[:, 1]]), [0])
    assert off_class.sum() < len(F0)  # most coincidences are within a class


def test_private_content_in_orthogonal_subspaces():
    gen = PlantedRingAlignment(shared_rank=3, private_ranks=(2, 3), levels=8, dim=16, n_classes=6,
                               private_zero_prob=0.5, random_state=1)
    d = gen.sample(250)
    X, Y = d.embeddings()
    # exact integer distances in closed form
    np.testing.assert_array_equal(cdist(X, Y, "sqeuclidean"), d.clean_sq_distances())
    F0 = d.fiber_pairs(eps=0)
    np.testing.assert_array_equal(F0, brute_force_pairs(X, Y, 0.0))
    expect = ((d.shared[:, None] == d.shared[None]).all(-1)
              & (d.private_a == 0).all(1)[:, None] & (d.private_b == 0).all(1)[None, :])
    np.testing.assert_array_equal(F0, np.argwhere(expect))
    assert 0 < len(F0)
    # shared-only fiber product: equal shared content, a superset of F_0 (statement 4)
    Fs = d.fiber_pairs(eps=0, shared_only=True)
    np.testing.assert_array_equal(Fs, np.argwhere((d.shared[:, None] == d.shared[None]).all(-1)))
    assert as_set(F0) < as_set(Fs)
    Ps = d.shared_projector
    np.testing.assert_array_equal(Fs, brute_force_pairs(X @ Ps, Y @ Ps, 0.0))
    # decomposition identity with exact dyadic projectors
    diff = X[:, None, :] - Y[None, :, :]
    lhs = (diff ** 2).sum(-1)
    rhs = (((diff @ Ps) ** 2).sum(-1) + ((X @ d.projector_a) ** 2).sum(-1)[:, None]
           + ((Y @ d.projector_b) ** 2).sum(-1)[None, :])
    np.testing.assert_array_equal(lhs, rhs)
    # subspaces orthogonal, projectors idempotent, bases orthonormal
    for P in (Ps, d.projector_a, d.projector_b):
        np.testing.assert_array_equal(P @ P, P)
    np.testing.assert_array_equal(Ps @ d.projector_a, 0)
    np.testing.assert_array_equal(Ps @ d.projector_b, 0)
    np.testing.assert_array_equal(d.projector_a @ d.projector_b, 0)
    B = np.concatenate([d.basis_shared, d.basis_a, d.basis_b], axis=1)
    np.testing.assert_allclose(B.T @ B, np.eye(8), atol=1e-14)


def test_closed_form_eps_join_matches_brute_force():
    d = PlantedRingAlignment(private_ranks=(1, 1), n_classes=4, random_state=5).sample(200)
    X, Y = d.embeddings()
    D = np.sqrt(np.unique(d.clean_sq_distances()).astype(float))
    # tolerances at achieved distances (closed ball) and between them
    for eps in [D[1], D[3], 0.5 * (D[5] + D[6]), D[-1], D[-1] + 1]:
        np.testing.assert_array_equal(d.fiber_pairs(eps), brute_force_pairs(X, Y, eps))
    assert len(d.fiber_pairs(D[-1])) == 200 * 200
    with pytest.raises(ValueError, match="eps must be a number >= 0"):
        d.fiber_pairs(-1.0)


def test_fiber_product_recovers_known_fiber():
    gen = PlantedRingAlignment(image_shape=(8, 8), vocab_size=300, seq_len=10, shared_rank=3,
                               private_ranks=(2, 2), levels=6, dim=32, n_classes=8,
                               private_zero_prob=0.4, random_state=11)
    d = gen.sample(400)
    X, Y = d.embeddings()
    np.testing.assert_array_equal(fiber_product(X, Y, eps=0).pairs, d.fiber_pairs(0))
    np.testing.assert_array_equal(fiber_product(X, Y, eps=0, shared_projector=d.shared_projector).pairs,
                                  d.fiber_pairs(0, shared_only=True))
    eps = 0.5 * float(np.sqrt(d.column_sq_norm * 5))  # between achievable distances
    np.testing.assert_array_equal(fiber_product(X, Y, eps=eps).pairs, d.fiber_pairs(eps))
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)
    np.testing.assert_array_equal(fiber_product(Xt, Yt, eps=0).pairs.numpy(), d.fiber_pairs(0))
    # with noise: F_0 of the clean maps (diagonal included) lies in F_{delta_f + delta_g} of the noisy ones
    noisy = PlantedRingAlignment(shared_rank=3, private_ranks=(0, 0), pixel_noise=4, token_noise=2,
                                 random_state=12).sample(300)
    Xn, Yn = noisy.embeddings()
    found = as_mask(fiber_product(Xn, Yn, eps=noisy.delta_f + noisy.delta_g).pairs, 300)
    assert np.diag(found).all()
    assert not (as_mask(noisy.fiber_pairs(0), 300) & ~found).any()


@pytest.mark.parametrize("private_ranks", [(0, 0), (2, 1)])
def test_noise_stays_within_delta_and_true_pairs_in_F_delta(private_ranks):
    gen = PlantedRingAlignment(shared_rank=3, private_ranks=private_ranks, levels=8, dim=16,
                               pixel_noise=5, token_noise=2, random_state=2)
    d = gen.sample(400)
    assert (d.delta_f, d.delta_g) == gen.delta
    Xc, Yc = d.embeddings(clean=True)
    X, Y = d.embeddings()
    assert not np.array_equal(X, Xc) and not np.array_equal(Y, Yc)
    assert np.linalg.norm(X - Xc, axis=1).max() <= d.delta_f
    assert np.linalg.norm(Y - Yc, axis=1).max() <= d.delta_g
    true_dist = np.linalg.norm(X - Y, axis=1)
    assert np.all(true_dist <= d.true_pair_radius)
    delta = d.delta_f + d.delta_g
    if private_ranks == (0, 0):
        np.testing.assert_allclose(d.true_pair_radius, delta)
        assert np.diag(as_mask(brute_force_pairs(X, Y, delta), 400)).all()
    # statement 2: F_eps(clean) is inside F_{eps + delta_f + delta_g}(noisy), both directions
    for eps in [0.0, 3.0, 10.0]:
        clean, noisy = as_mask(d.fiber_pairs(eps), 400), as_mask(brute_force_pairs(X, Y, eps + delta), 400)
        assert clean.any() and not (clean & ~noisy).any()
        noisy, clean = as_mask(brute_force_pairs(X, Y, eps), 400), as_mask(d.fiber_pairs(eps + delta), 400)
        assert not (noisy & ~clean).any()


def test_delta_is_attained_by_extreme_noise():
    gen = PlantedRingAlignment(shared_rank=2, private_ranks=(1, 0), pixel_noise=3, random_state=0)
    d = gen.sample(1)
    e = np.zeros_like(d.P_clean)
    e[:, gen.f.positions] = 3
    moved = np.linalg.norm(gen.f(d.P_clean + e) - gen.f(d.P_clean))
    np.testing.assert_allclose(moved, d.delta_f, rtol=1e-15)
    assert d.delta_g == 0.0


def test_polynomials_are_ring_elements_and_encode_the_content():
    gen = PlantedRingAlignment(image_shape=(5, 7), vocab_size=97, seq_len=9, shared_rank=3,
                               private_ranks=(1, 2), levels=10, dim=12, pixel_noise=2, token_noise=1,
                               random_state=4)
    d = gen.sample(60)
    for P in (d.P, d.P_clean):
        assert PolyRing(256).element(P).shape == (60, 35)
    for Q in (d.Q, d.Q_clean):
        assert PolyRing(97).element(Q).shape == (60, 9)
    assert d.images.dtype == np.uint8 and d.images.shape == (60, 5, 7)
    for k in (0, 17, 59):
        np.testing.assert_array_equal(d.P[k], encode_image(d.images[k]))
        np.testing.assert_array_equal(decode_image(d.P_clean[k], (5, 7)), d.clean_images[k])
    assert decode_tokens(d.Q, lengths=[9] * 60) == d.tokens.tolist()
    step = gen.pixel_step_
    lifted = centered_lift(d.P_clean, 256)[:, gen.f.positions] / step
    np.testing.assert_array_equal(lifted, np.concatenate([d.shared, d.private_a], axis=1))
    lifted = centered_lift(d.Q_clean, 97)[:, gen.g.positions]
    np.testing.assert_array_equal(lifted, np.concatenate([d.shared, d.private_b], axis=1))
    # shared content = class centre + offset within the spread
    assert np.abs(d.shared - d.class_centers[d.labels]).max() <= gen.within_class_spread
    assert len(np.unique(d.class_centers, axis=0)) == gen.n_classes


def test_colour_images():
    d = PlantedRingAlignment(image_shape=(4, 4, 3), shared_rank=4, random_state=0).sample(20)
    assert d.images.shape == (20, 4, 4, 3) and d.P.shape == (20, 48)
    np.testing.assert_array_equal(d.P[3], encode_image(d.images[3]))
    X, Y = d.embeddings()
    np.testing.assert_array_equal(brute_force_pairs(X, Y, 0.0), d.fiber_pairs(0))


def test_reproducible_seeds_and_noise_independent_content():
    kw = dict(shared_rank=2, private_ranks=(1, 1), random_state=9)
    a, b = PlantedRingAlignment(**kw).sample(30), PlantedRingAlignment(**kw).sample(30)
    np.testing.assert_array_equal(a.P, b.P)
    np.testing.assert_array_equal(a.Q, b.Q)
    np.testing.assert_array_equal(a.embeddings()[0], b.embeddings()[0])
    c = PlantedRingAlignment(**kw).sample(30, random_state=1)
    assert not np.array_equal(a.P, c.P)
    np.testing.assert_array_equal(a.class_centers, c.class_centers)
    other = PlantedRingAlignment(**{**kw, "random_state": 10})
    assert not np.array_equal(other.f.components, PlantedRingAlignment(**kw).f.components)
    noisy = PlantedRingAlignment(**kw, pixel_noise=4, token_noise=3).sample(30)
    np.testing.assert_array_equal(noisy.P_clean, a.P_clean)
    np.testing.assert_array_equal(noisy.Q_clean, a.Q_clean)
    assert not np.array_equal(noisy.P, a.P) and not np.array_equal(noisy.Q, a.Q)


def test_numpy_and_torch_embeddings_agree_exactly():
    gen = PlantedRingAlignment(private_ranks=(2, 2), pixel_noise=3, token_noise=1, random_state=6)
    d = gen.sample(50)
    for h, C in ((d.f, d.P), (d.g, d.Q)):
        out = h(torch.as_tensor(C))
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
        np.testing.assert_array_equal(out.numpy(), h(C))
        np.testing.assert_array_equal(h(C[:5][None]), h(C[:5])[None])  # leading batch axes
        np.testing.assert_array_equal(centered_lift(C, h.modulus) @ h.matrix.T, h(C))
        # integer input outside [0, n) is reduced first, as in geoalign.rings
        np.testing.assert_array_equal(h(C + h.modulus), h(C))
    # float32 on torch agrees too (the clean embeddings are small integers)
    Xc = d.f(torch.as_tensor(d.P_clean)).float()
    np.testing.assert_array_equal(Xc.numpy(), d.embeddings(clean=True)[0].astype(np.float32))
    np.testing.assert_allclose(d.f.lipschitz, np.sqrt(d.column_sq_norm) / gen.pixel_step_)


def test_embedding_errors():
    f = PlantedRingAlignment(random_state=0).f
    with pytest.raises(ValueError, match=r"P must have shape \(\.\.\., 64\)"):
        f(np.zeros((3, 63), dtype=np.int64))
    with pytest.raises(TypeError, match="integer dtype"):
        f(np.zeros((3, 64)))
    with pytest.raises(ValueError, match="power of two"):
        RingLinearEmbedding(256, 4, [0, 1], np.eye(2), step=3)
    with pytest.raises(ValueError, match="distinct indices"):
        RingLinearEmbedding(256, 4, [0, 0], np.eye(2))
    with pytest.raises(ValueError, match=r"components must have shape \(dim, 2\)"):
        RingLinearEmbedding(256, 4, [0, 1], np.eye(3))


def test_subset_and_zero_shot_split():
    d = PlantedRingAlignment(n_classes=6, random_state=0).sample(120)
    split = d.zero_shot_split(unseen_classes=2, random_state=1)
    assert isinstance(split.seen, PlantedRingSample) and isinstance(split.unseen, PlantedRingSample)
    assert set(np.unique(split.unseen.labels)) <= set(split.unseen_classes)
    assert split.seen.n_samples + split.unseen.n_samples == 120
    np.testing.assert_array_equal(split.unseen.P, d.P[split.unseen_index])
    np.testing.assert_array_equal(split.unseen.shared, d.shared[split.unseen_index])
    sub = d.subset(np.arange(10))
    np.testing.assert_array_equal(sub.fiber_pairs(0), d.fiber_pairs(0)[(d.fiber_pairs(0) < 10).all(1)])
    with pytest.raises(ValueError, match="index mask must have shape"):
        d.subset(np.ones(5, dtype=bool))
    with pytest.raises(TypeError, match="index must hold integers"):
        d.subset(np.ones(5))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(vocab_size=8, levels=8), ValueError, "vocab_size=8 is too small for levels=8"),
    (dict(vocab_size=9, levels=8, token_noise=1), ValueError, "vocab_size=9 is too small"),
    (dict(image_shape=(2, 2), shared_rank=3, private_ranks=(2, 0)), ValueError,
     r"has 4 pixel coefficients, fewer than shared_rank \+ private_ranks\[0\] = 5"),
    (dict(seq_len=4, shared_rank=3, private_ranks=(0, 2)), ValueError, "seq_len=4 is smaller"),
    (dict(dim=4, shared_rank=3, private_ranks=(1, 1)), ValueError, "must be <= dim=4"),
    (dict(levels=300), ValueError, "do not fit the centered range"),
    (dict(levels=8, pixel_step=32), ValueError, "do not fit the centered range"),
    (dict(pixel_step=3), ValueError, "pixel_step must be a power of two"),
    (dict(levels=1), ValueError, "levels must be >= 2"),
    (dict(levels=4, within_class_spread=2), ValueError, "levels=4 must be >= 2\\*within_class_spread"),
    (dict(levels=3, shared_rank=1, within_class_spread=0, n_classes=4), ValueError,
     "n_classes=4 exceeds the 3 distinct class centres"),
    (dict(private_zero_prob=1.5), ValueError, "private_zero_prob must be a number in"),
    (dict(pixel_noise=-1), ValueError, "pixel_noise must be >= 0"),
    (dict(token_noise=1.5), TypeError, "token_noise must be an integer"),
    (dict(image_shape=(8,)), ValueError, "image_shape must be"),
    (dict(image_shape=(8, 0)), ValueError, r"image_shape\[1\] must be >= 1"),
    (dict(private_ranks=(1,)), ValueError, "private_ranks must be a pair"),
    (dict(shared_rank=0), ValueError, "shared_rank must be >= 1"),
])
def test_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        PlantedRingAlignment(**kwargs)


def test_sample_size_must_be_positive():
    with pytest.raises(ValueError, match="n must be >= 1"):
        PlantedRingAlignment().sample(0)


@given(rs=st.integers(1, 3), ra=st.integers(0, 2), rb=st.integers(0, 2), levels=st.integers(4, 6),
       dim=st.sampled_from([7, 8, 12, 16]), zero=st.sampled_from([0.0, 0.5, 1.0]),
       seed=st.integers(0, 2**16))
def test_closed_form_fiber_matches_brute_force_property(rs, ra, rb, levels, dim, zero, seed):
    gen = PlantedRingAlignment(image_shape=(3, 3), vocab_size=64, seq_len=6, shared_rank=rs,
                               private_ranks=(ra, rb), levels=levels, dim=dim, n_classes=2,
                               private_zero_prob=zero, random_state=seed)
    d = gen.sample(40)
    X, Y = d.embeddings()
    np.testing.assert_array_equal(d.fiber_pairs(0), brute_force_pairs(X, Y, 0.0))
    np.testing.assert_array_equal(d.fiber_pairs(0, shared_only=True),
                                  brute_force_pairs(X @ d.shared_projector, Y @ d.shared_projector, 0.0))
    if zero == 1.0:  # no private energy: F_0 is exactly equal shared content
        np.testing.assert_array_equal(d.fiber_pairs(0), d.fiber_pairs(0, shared_only=True))
