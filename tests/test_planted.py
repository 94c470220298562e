import numpy as np
import pytest

from geoalign.data.planted import PlantedAlignment


def test_shapes_bases_and_latents_reconstruct_the_views():
    gen = PlantedAlignment(dim=20, shared_rank=3, private_ranks=(2, 4), snr=5, n_classes=4, random_state=1)
    d = gen.sample(300)
    assert d.U.shape == (300, 20) and d.V.shape == (300, 20)
    assert d.S.shape == (300, 3) and d.private_a.shape == (300, 2) and d.private_b.shape == (300, 4)
    assert set(np.unique(d.labels)) <= set(range(4))
    frame = np.concatenate([d.basis_shared, d.basis_a, d.basis_b], axis=1)
    np.testing.assert_allclose(frame.T @ frame, np.eye(9), atol=1e-12)
    noise_u = d.U - d.S @ d.basis_shared.T - d.private_a @ d.basis_a.T
    noise_v = d.V - d.S @ d.basis_shared.T - d.private_b @ d.basis_b.T
    # residuals are the isotropic noise of the documented size
    assert abs(noise_u.std() / d.noise_std[0] - 1) < 0.05
    assert abs(noise_v.std() / d.noise_std[1] - 1) < 0.05


def test_snr_matches_its_definition():
    gen = PlantedAlignment(dim=32, shared_rank=4, private_ranks=(3, 5), snr=2.5, n_classes=50,
                           between_class_fraction=0.3, random_state=3)
    d = gen.sample(20000)
    for X, B, lat in ((d.U, d.basis_a, d.private_a), (d.V, d.basis_b, d.private_b)):
        signal = d.S @ d.basis_shared.T + lat @ B.T
        noise = X - signal
        ratio = (signal ** 2).sum(1).mean() / (noise ** 2).sum(1).mean()
        # centres are a finite draw, so the realised ratio scatters around snr
        assert 2.0 < ratio < 3.1


def test_noiseless_views_have_exact_rank():
    d = PlantedAlignment(dim=16, shared_rank=2, private_ranks=(3, 1), snr=np.inf, random_state=0).sample(100)
    assert np.linalg.matrix_rank(d.U) == 5 and np.linalg.matrix_rank(d.V) == 3
    assert d.noise_std == (0.0, 0.0)


def test_reproducible_and_independent_draws():
    gen = PlantedAlignment(dim=10, shared_rank=2, private_ranks=(1, 1), random_state=7)
    a, b = gen.sample(50), gen.sample(50)
    np.testing.assert_array_equal(a.U, b.U)
    c = gen.sample(50, random_state=123)
    assert not np.allclose(a.U, c.U)
    np.testing.assert_array_equal(a.basis_shared, c.basis_shared)
    np.testing.assert_array_equal(a.class_centers, c.class_centers)
    other = PlantedAlignment(dim=10, shared_rank=2, private_ranks=(1, 1), random_state=8).sample(50)
    assert not np.allclose(a.basis_shared, other.basis_shared)


def test_zero_shot_split_is_class_disjoint():
    d = PlantedAlignment(dim=12, shared_rank=2, private_ranks=(1, 1), n_classes=10, random_state=0).sample(500)
    split = d.zero_shot_split(unseen_classes=3, random_state=4)
    assert len(split.unseen_classes) == 3 and len(split.seen_classes) == 7
    assert set(split.seen_classes).isdisjoint(split.unseen_classes)
    assert set(np.unique(split.seen.labels)) <= set(split.seen_classes)
    assert set(np.unique(split.unseen.labels)) <= set(split.unseen_classes)
    assert split.seen.n_samples + split.unseen.n_samples == 500
    np.testing.assert_array_equal(split.unseen.U, d.U[split.unseen_index])
    explicit = d.zero_shot_split(unseen_classes=[7, 8, 9])
    np.testing.assert_array_equal(explicit.unseen_classes, [7, 8, 9])
    assert np.all(explicit.seen.labels < 7)


@pytest.mark.parametrize("dim_b", [8, 30])
def test_second_view_map_is_isometric_on_signal(dim_b):
    gen = PlantedAlignment(dim=16, shared_rank=3, private_ranks=(2, 2), snr=np.inf, dim_b=dim_b, random_state=2)
    d = gen.sample(200)
    assert d.V.shape == (200, dim_b) and d.map_b.shape == (dim_b, 16)
    signal = np.concatenate([d.basis_shared, d.basis_b], axis=1)
    np.testing.assert_allclose((d.map_b @ signal).T @ (d.map_b @ signal), np.eye(5), atol=1e-12)
    np.testing.assert_allclose(d.V, d.S @ d.basis_shared_v.T + d.private_b @ d.basis_b_v.T, atol=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    (dict(dim=5, shared_rank=3, private_ranks=(2, 1)), "must be <= dim=5"),
    (dict(snr=0), "snr must be a number > 0"),
    (dict(snr=float("nan")), "snr must be a number > 0"),
    (dict(shared_rank=0), "shared_rank must be >= 1"),
    (dict(private_ranks=(1,)), "private_ranks must be a pair"),
    (dict(between_class_fraction=1.5), "between_class_fraction"),
    (dict(dim_b=2), "dim_b must be >= 7"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PlantedAlignment(**kwargs)


def test_bad_split_arguments():
    d = PlantedAlignment(dim=8, shared_rank=2, private_ranks=(1, 1), n_classes=4).sample(40)
    with pytest.raises(ValueError, match="unseen_classes must be <= 3"):
        d.zero_shot_split(unseen_classes=4)
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\]"):
        d.zero_shot_split(unseen_classes=[1, 4])
    with pytest.raises(ValueError, match="repeated"):
        d.zero_shot_split(unseen_classes=[1, 1])
    with pytest.raises(ValueError, match="at least one seen class"):
        d.zero_shot_split(unseen_classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="n must be >= 1"):
        PlantedAlignment().sample(0)


def test_planted_training_source_splits_are_class_disjoint():
    from geoalign.data.sources import load_dataset

    seen = load_dataset({"source": "planted", "n": 300, "split": "seen", "dim": 16, "shared_rank": 3,
                         "private_ranks": [2, 2]})
    unseen = load_dataset({"source": "planted", "n": 300, "split": "unseen", "dim": 16,
                           "shared_rank": 3, "private_ranks": [2, 2]})
    assert seen["X_a"].shape[1] == 16 and len(seen["y"]) + len(unseen["y"]) == 300
    assert not set(seen["y"].tolist()) & set(unseen["y"].tolist())
    with pytest.raises(ValueError, match="unknown key"):
        load_dataset({"source": "planted", "bogus": 1})
