"""Tests for the encoders (images, tokens) and embedding maps of geoalign.rings."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from geoalign.rings import (RandomProjection, centered_lift, decode_image, decode_tokens, dft_features,
                            encode_image, encode_tokens)


# --------------------------------------------------------------------------- images
def test_encode_image_layouts_explicit():
    img = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)  # pixel (i, j), channel c = 6i + 3j + c
    np.testing.assert_array_equal(encode_image(img), np.arange(12))  # interleaved = memory order
    planar = encode_image(img, channel_order="planar")
    np.testing.assert_array_equal(planar, [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11])
    gray = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=np.uint8)
    np.testing.assert_array_equal(encode_image(gray), [1, 2, 3, 4, 5, 6, 7, 8])
    np.testing.assert_array_equal(encode_image(gray, patch_size=2), [[1, 2, 5, 6], [3, 4, 7, 8]])


def test_encode_image_patches_planar_and_padding():
    img = np.arange(4 * 4 * 2, dtype=np.uint8).reshape(4, 4, 2)
    P = encode_image(img, patch_size=2, channel_order="planar")
    assert P.shape == (4, 8)
    # second patch (top-right): pixels (0,2),(0,3),(1,2),(1,3); channel 0 first
    np.testing.assert_array_equal(P[1], [img[0, 2, 0], img[0, 3, 0], img[1, 2, 0], img[1, 3, 0],
                                         img[0, 2, 1], img[0, 3, 1], img[1, 2, 1], img[1, 3, 1]])
    odd = np.full((3, 5), 7, dtype=np.uint8)
    with pytest.raises(ValueError, match=r"3x5 is not divisible by patch_size=2.*pad_value"):
        encode_image(odd, patch_size=2)
    Q = encode_image(odd, patch_size=2, pad_value=255)
    assert Q.shape == (6, 4)
    np.testing.assert_array_equal(Q[2], [7, 255, 7, 255])  # right column padded
    np.testing.assert_array_equal(Q[5], [7, 255, 255, 255])  # bottom-right corner
    np.testing.assert_array_equal(decode_image(Q, (3, 5), patch_size=2), odd)


@given(h=st.integers(1, 9), w=st.integers(1, 9), c=st.sampled_from([None, 1, 3, 4]),
       p=st.sampled_from([None, 1, 2, 3]), order=st.sampled_from(["interleaved", "planar"]),
       seed=st.integers(0, 2**32 - 1))
def test_image_round_trip(h, w, c, p, order, seed):
    shape = (h, w) if c is None else (h, w, c)
    img = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    P = encode_image(img, patch_size=p, channel_order=order, pad_value=0)
    assert P.min() >= 0 and P.max() < 256 and P.dtype == np.int64
    back = decode_image(P, shape, patch_size=p, channel_order=order)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, img)


def test_image_torch_and_errors():
    img = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    P = encode_image(torch.from_numpy(img), patch_size=2, channel_order="planar")
    assert isinstance(P, torch.Tensor)
    np.testing.assert_array_equal(P.numpy(), encode_image(img, patch_size=2, channel_order="planar"))
    back = decode_image(P, img.shape, patch_size=2, channel_order="planar")
    assert isinstance(back, torch.Tensor) and back.dtype == torch.uint8
    np.testing.assert_array_equal(back.numpy(), img)
    with pytest.raises(TypeError, match="uint8, got float32"):
        encode_image(img.astype(np.float32))
    with pytest.raises(TypeError, match="uint8"):
        encode_image(torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, C\)"):
        encode_image(np.zeros((2, 2, 2, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="channel_order"):
        encode_image(img, channel_order="rgb")
    with pytest.raises(ValueError, match="pad_value"):
        encode_image(img, patch_size=4, pad_value=256)
    with pytest.raises(ValueError, match=r"P must have shape \(72,\)"):
        decode_image(np.zeros(10, dtype=np.int64), img.shape)
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        decode_image(np.full(72, 300), img.shape)


# --------------------------------------------------------------------------- tokens
def test_encode_tokens_padding_and_round_trip():
    ids = [[5, 1, 2], [7], []]
    Q = encode_tokens(ids, vocab_size=10)
    np.testing.assert_array_equal(Q, [[5, 1, 2], [7, 0, 0], [0, 0, 0]])
    assert decode_tokens(Q, lengths=[3, 1, 0]) == ids
    Q9 = encode_tokens(ids, vocab_size=10, length=5, pad_id=9)
    np.testing.assert_array_equal(Q9[1], [7, 9, 9, 9, 9])
    assert decode_tokens(Q9, pad_id=9) == ids
    single = encode_tokens([3, 4, 0], vocab_size=30522)
    np.testing.assert_array_equal(single, [3, 4, 0])
    assert decode_tokens(single, lengths=3) == [3, 4, 0]
    assert decode_tokens(single) == [3, 4, 0]


@given(seqs=st.lists(st.lists(st.integers(0, 30521), max_size=20), min_size=1, max_size=6))
def test_tokens_round_trip_property(seqs):
    Q = encode_tokens(seqs, vocab_size=30522, pad_id=1)
    assert Q.shape == (len(seqs), max(max(map(len, seqs)), 1))
    assert decode_tokens(Q, lengths=[len(s) for s in seqs]) == seqs


def test_tokens_arrays_torch_and_errors():
    arr = np.array([[1, 2], [3, 4]])
    np.testing.assert_array_equal(encode_tokens(arr, 5), arr)
    t = encode_tokens(torch.tensor([[1, 2], [3, 4]]), 5, length=3)
    assert isinstance(t, torch.Tensor)
    np.testing.assert_array_equal(t.numpy(), [[1, 2, 0], [3, 4, 0]])
    with pytest.raises(ValueError, match=r"token id 12 at sequence 1, position 0 is outside \[0, vocab_size=10\)"):
        encode_tokens([[1], [12]], 10)
    with pytest.raises(ValueError, match="token id -1"):
        encode_tokens(np.array([0, -1]), 10)
    with pytest.raises(ValueError, match="sequence 0 has 3 tokens, more than length=2"):
        encode_tokens([[1, 2, 3]], 10, length=2)
    with pytest.raises(ValueError, match="pad_id"):
        encode_tokens([[1]], 10, pad_id=10)
    with pytest.raises(ValueError, match="vocab_size"):
        encode_tokens([[1]], 1)
    with pytest.raises(TypeError, match="integer dtype"):
        encode_tokens(np.array([[0.5]]), 10)
    with pytest.raises(ValueError, match="lengths"):
        decode_tokens(np.zeros((2, 3), dtype=np.int64), lengths=[1, 4])


# --------------------------------------------------------------------------- embeddings
def test_centered_lift_range():
    for n in (2, 17, 256, 30522, 2**31 - 1):
        a = np.unique(np.concatenate([np.arange(min(n, 600)), n - 1 - np.arange(min(n, 600))]))
        lift = centered_lift(a, n)
        assert lift.dtype == np.float64
        assert (lift > -n / 2).all() and (lift <= n / 2).all()
        np.testing.assert_array_equal(np.mod(lift.astype(np.int64), n), a)
    np.testing.assert_array_equal(centered_lift([0, 127, 128, 129, 255], 256), [0, 127, 128, -127, -1])
    np.testing.assert_array_equal(centered_lift([-1, 17], 17), [-1, 0])  # any integers, reduced first
    t = centered_lift(torch.tensor([200]), 256, dtype=torch.float32)
    assert t.dtype == torch.float32 and float(t) == -56.0
    with pytest.raises(TypeError, match="integer dtype"):
        centered_lift(np.array([0.5]), 256)


def test_random_projection_properties():
    f = RandomProjection(256, length=64, dim=4096, seed=3)
    g = RandomProjection(256, length=64, dim=4096, seed=3)
    np.testing.assert_array_equal(f.components_, g.components_)
    assert f.components_.shape == (4096, 64)
    P = np.random.default_rng(0).integers(0, 256, (5, 64))
    Y = f(P)
    assert Y.shape == (5, 4096)
    # Johnson-Lindenstrauss at large dim: norms of lifted inputs are preserved within a few %
    ratio = np.linalg.norm(Y, axis=1) / np.linalg.norm(centered_lift(P, 256), axis=1)
    assert np.all(np.abs(ratio - 1) < 0.06)
    # lipschitz_ is the operator norm: attained by the top right singular vector, never exceeded
    small = RandomProjection(30522, length=20, dim=8, seed=1)
    assert small.lipschitz_ == pytest.approx(np.linalg.svd(small.components_, compute_uv=False)[0])
    D = np.random.default_rng(1).integers(-100, 100, (200, 20))
    base = np.full(20, 1000)
    moved = small(base + D) - small(np.broadcast_to(base, D.shape))
    assert (np.linalg.norm(moved, axis=1) <= small.lipschitz_ * np.linalg.norm(D, axis=1) + 1e-9).all()
    # shorter inputs are zero-padded; torch gives the same numbers
    np.testing.assert_allclose(small(P[:, :12] % 30522), small(np.pad(P[:, :12], ((0, 0), (0, 8)))))
    np.testing.assert_allclose(small(torch.from_numpy(P[:, :20])).numpy(), small(P[:, :20]))
    with pytest.raises(ValueError, match="more than length=20"):
        small(P)
    with pytest.raises(ValueError, match="lift"):
        RandomProjection(256, 4, 2, lift="signed")


def test_dft_features_match_evaluation_and_are_1_lipschitz():
    n, L = 30522, 16
    rng = np.random.default_rng(4)
    P = rng.integers(0, n, (3, L))
    F = dft_features(P, n, n_freq=5)
    assert F.shape == (3, 10)
    lift = centered_lift(P, n)
    omega = np.exp(-2j * np.pi / L)
    for k in range(5):
        val = np.polynomial.polynomial.polyval(omega**k, lift.T) / np.sqrt(L)  # lift(P)(omega^k)
        np.testing.assert_allclose(F[:, k], val.real, atol=1e-6)
        np.testing.assert_allclose(F[:, 5 + k], val.imag, atol=1e-6)
    Q = np.clip(P + rng.integers(-3, 4, P.shape), 0, n - 1)  # no wrap-around
    gap = np.linalg.norm(dft_features(P, n, 9, lift="canonical") - dft_features(Q, n, 9, lift="canonical"), axis=1)
    assert (gap <= np.linalg.norm((P - Q).astype(float), axis=1) + 1e-9).all()
    np.testing.assert_allclose(dft_features(torch.from_numpy(P), n, 5).numpy(), F)
    with pytest.raises(ValueError, match="n_freq"):
        dft_features(P, n, n_freq=L // 2 + 2)
