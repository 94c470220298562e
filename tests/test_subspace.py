import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given
from hypothesis import strategies as st

from geoalign.data.planted import PlantedAlignment
from geoalign.subspace import SharedPrivateDecomposition, ajive, principal_angles, subspace_distance


def max_angle_deg(B, truth):
    return float(np.degrees(principal_angles(np.asarray(B), truth)).max())


@pytest.fixture(scope="module")
def planted():
    """The issue's reference problem: n = 5000, d = 64, SNR 10."""
    return PlantedAlignment(dim=64, shared_rank=4, private_ranks=(3, 3), snr=10, n_classes=10,
                            random_state=0).sample(5000)


@pytest.fixture(scope="module")
def fitted(planted):
    return SharedPrivateDecomposition().fit(planted.U, planted.V)


# ------------------------------------------------------------------ principal angles

@given(d=st.integers(2, 12), k=st.integers(1, 12), l=st.integers(1, 12), seed=st.integers(0, 2 ** 31))
def test_principal_angles_match_scipy(d, k, l, seed):
    k, l = min(k, d), min(l, d)
    rng = np.random.default_rng(seed)
    A, B = rng.standard_normal((d, k)), rng.standard_normal((d, l))
    ours = principal_angles(A, B)
    # SciPy's angles can be off by ~sqrt(eps) = 1.5e-8 where the spans intersect
    np.testing.assert_allclose(ours, np.sort(scipy.linalg.subspace_angles(A, B)), atol=5e-8)
    assert np.all(np.diff(ours) >= 0)
    # generic k- and l-planes in R^d intersect in k + l - d dimensions: exact zeros
    np.testing.assert_allclose(ours[:max(0, k + l - d)], 0.0, atol=1e-12)


def test_principal_angles_small_angles_are_accurate():
    A = np.eye(5)[:, :2]
    B = A.copy()
    B[2, 0] = 1e-9  # tilt by 1e-9 rad: cosines alone would round this to 0
    np.testing.assert_allclose(principal_angles(A, B), [0.0, 1e-9], rtol=1e-6, atol=1e-15)


def test_principal_angles_torch_matches_numpy_and_batches(rng):
    A, B = rng.standard_normal((3, 7, 2)), rng.standard_normal((3, 7, 4))
    ref = principal_angles(A, B)
    assert ref.shape == (3, 2)
    out = principal_angles(torch.from_numpy(A), torch.from_numpy(B))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-12)
    out32 = principal_angles(torch.from_numpy(A).float(), B)  # mixed: torch wins
    assert isinstance(out32, torch.Tensor)
    np.testing.assert_allclose(out32.numpy(), ref, atol=1e-5)


def test_subspace_distances_agree_with_projectors(rng):
    A, B = rng.standard_normal((9, 3)), rng.standard_normal((9, 3))
    PA = scipy.linalg.orth(A) @ scipy.linalg.orth(A).T
    PB = scipy.linalg.orth(B) @ scipy.linalg.orth(B).T
    np.testing.assert_allclose(subspace_distance(A, B), np.linalg.norm(PA - PB) / np.sqrt(2), rtol=1e-10)
    np.testing.assert_allclose(subspace_distance(A, B, "projection"), np.linalg.norm(PA - PB, 2), rtol=1e-10)
    theta = principal_angles(A, B)
    np.testing.assert_allclose(subspace_distance(A, B, "geodesic"), np.linalg.norm(theta), rtol=1e-12)
    C = rng.standard_normal((9, 5))
    PC = scipy.linalg.orth(C) @ scipy.linalg.orth(C).T
    np.testing.assert_allclose(subspace_distance(A, C), np.linalg.norm(PA - PC) / np.sqrt(2), rtol=1e-10)
    assert subspace_distance(A, C, "projection") == 1.0
    t = subspace_distance(torch.from_numpy(A), torch.from_numpy(B), "projection")
    assert isinstance(t, torch.Tensor) and abs(float(t) - np.linalg.norm(PA - PB, 2)) < 1e-10
    with pytest.raises(ValueError, match="geodesic.*equal dimension"):
        subspace_distance(A, C, "geodesic")
    with pytest.raises(ValueError, match="unknown metric"):
        subspace_distance(A, B, "frobenius")


def test_principal_angles_bad_input(rng):
    with pytest.raises(ValueError, match="A and B must be bases in the same space"):
        principal_angles(rng.standard_normal((4, 2)), rng.standard_normal((5, 2)))
    dependent = np.ones((5, 2))
    with pytest.raises(ValueError, match="A must have full column rank"):
        principal_angles(dependent, rng.standard_normal((5, 2)))
    with pytest.raises(ValueError, match="B contains 1 NaN"):
        principal_angles(rng.standard_normal((5, 2)), np.array([[np.nan], [1], [1], [1], [1]]))


# ------------------------------------------------------------------ recovery

def test_recovers_planted_subspaces(planted, fitted):
    assert fitted.shared_rank_ == 4 and fitted.private_ranks_ == (3, 3)
    assert max_angle_deg(fitted.basis_shared_, planted.basis_shared) <= 2.0
    assert max_angle_deg(fitted.basis_a_, planted.basis_a) <= 2.0
    assert max_angle_deg(fitted.basis_b_, planted.basis_b) <= 2.0
    energy = fitted.explained_energy_
    for view in ("U", "V"):
        assert abs(sum(energy[view].values()) - 1) < 1e-12
    # unit variances: shared carries 4 of the 7 + noise units of signal, private 3
    assert 0.4 < energy["U"]["shared"] < 0.65 and 0.3 < energy["U"]["private_a"] < 0.5
    assert energy["U"]["private_b"] < 0.02 and energy["V"]["private_a"] < 0.02


def test_orthogonality_to_1e_10(fitted):
    frame = np.concatenate([fitted.basis_shared_, fitted.basis_a_, fitted.basis_b_], axis=1)
    assert np.abs(frame.T @ frame - np.eye(10)).max() <= 1e-10
    P = fitted.projector_shared_
    np.testing.assert_allclose(P @ P, P, atol=1e-12)
    assert np.abs(fitted.projector_a_ @ fitted.projector_b_).max() <= 1e-10


def test_accuracy_degrades_gracefully_with_snr():
    errors = []
    for snr in (10.0, 1.0, 0.1):
        d = PlantedAlignment(dim=64, shared_rank=4, private_ranks=(3, 3), snr=snr, random_state=5).sample(3000)
        model = SharedPrivateDecomposition(shared_rank=4, private_ranks=(3, 3)).fit(d.U, d.V)
        errors.append(max_angle_deg(model.basis_shared_, d.basis_shared))
    assert errors[0] < errors[1] < errors[2]
    assert errors[2] < 30.0  # still far from a random 4-plane in R^64 (~ 80 degrees)


def test_permutation_rank_selection():
    d = PlantedAlignment(dim=32, shared_rank=3, private_ranks=(2, 4), snr=10, random_state=2).sample(2000)
    model = SharedPrivateDecomposition(rank_method="permutation", n_permutations=19, random_state=0)
    model.fit(d.U, d.V)
    assert model.shared_rank_ == 3 and model.private_ranks_ == (2, 4)
    assert model.shared_pvalues_[:3].max() <= 0.05 < model.shared_pvalues_[3]
    again = SharedPrivateDecomposition(rank_method="permutation", n_permutations=19, random_state=0).fit(d.U, d.V)
    np.testing.assert_array_equal(again.shared_pvalues_, model.shared_pvalues_)


@pytest.mark.parametrize("method", ["gap", "permutation"])
@pytest.mark.parametrize("ranks", [(6, 1, 5), (3, 0, 2)])
def test_rank_selection_other_ranks(method, ranks):
    rs, ra, rb = ranks
    d = PlantedAlignment(dim=32, shared_rank=rs, private_ranks=(ra, rb), snr=2, random_state=9).sample(2000)
    model = SharedPrivateDecomposition(rank_method=method, n_permutations=19).fit(d.U, d.V)
    assert (model.shared_rank_, *model.private_ranks_) == ranks


def test_identity_exact_on_noiseless_data():
    gen = PlantedAlignment(dim=32, shared_rank=3, private_ranks=(2, 2), snr=np.inf, random_state=4)
    d = gen.sample(3000)
    model = SharedPrivateDecomposition().fit(d.U, d.V)
    assert model.shared_rank_ == 3 and model.private_ranks_ == (2, 2)
    assert max_angle_deg(model.basis_shared_, d.basis_shared) < 1e-6
    new = gen.sample(500, random_state=99)  # out of sample
    parts = model.transform(new.U, new.V)
    f, g = new.U - model.mean_u_, new.V - model.mean_v_
    lhs = ((f - g) ** 2).sum(1)
    rhs = ((parts.shared_u - parts.shared_v) ** 2).sum(1) + (parts.private_a ** 2).sum(1) \
        + (parts.private_b ** 2).sum(1)
    np.testing.assert_allclose(rhs, lhs, rtol=1e-9, atol=1e-9)
    assert np.abs(parts.residual_u).max() < 1e-8 and np.abs(parts.residual_v).max() < 1e-8


def test_identity_within_noise_on_noisy_data(planted, fitted):
    parts = fitted.transform(planted.U, planted.V)
    f, g = planted.U - fitted.mean_u_, planted.V - fitted.mean_v_
    lhs = ((f - g) ** 2).sum(1)
    rhs = ((parts.shared_u - parts.shared_v) ** 2).sum(1) + (parts.private_a ** 2).sum(1) \
        + (parts.private_b ** 2).sum(1)
    noise_energy = 64 * (planted.noise_std[0] ** 2 + planted.noise_std[1] ** 2)
    # the gap is the noise that falls outside the three subspaces (and in the other view's private part)
    assert np.abs(lhs - rhs).mean() <= noise_energy


def test_rotation_equivariance(planted, fitted, rng):
    Q = np.linalg.qr(rng.standard_normal((64, 64)))[0]
    rotated = SharedPrivateDecomposition().fit(planted.U @ Q.T, planted.V @ Q.T)
    assert rotated.shared_rank_ == 4 and rotated.private_ranks_ == (3, 3)
    for P, Pr in ((fitted.projector_shared_, rotated.projector_shared_),
                  (fitted.projector_a_, rotated.projector_a_), (fitted.projector_b_, rotated.projector_b_)):
        np.testing.assert_allclose(Pr, Q @ P @ Q.T, atol=1e-8)


def test_torch_matches_numpy(planted, fitted):
    U, V = torch.from_numpy(planted.U[:2000]), torch.from_numpy(planted.V[:2000])
    tmodel = SharedPrivateDecomposition().fit(U, V)
    nmodel = SharedPrivateDecomposition().fit(planted.U[:2000], planted.V[:2000])
    assert isinstance(tmodel.basis_shared_, torch.Tensor) and tmodel.basis_shared_.dtype == torch.float64
    for name in ("projector_shared_", "projector_a_", "projector_b_"):
        np.testing.assert_allclose(getattr(tmodel, name).numpy(), getattr(nmodel, name), atol=1e-9)
    parts = tmodel.transform(U[:10], V[:10])
    assert isinstance(parts.shared_u, torch.Tensor)
    ref = nmodel.transform(planted.U[:10], planted.V[:10])
    np.testing.assert_allclose(parts.private_b.numpy(), ref.private_b, atol=1e-9)
    one = nmodel.transform(U=planted.U[:3])
    assert one.shared_v is None and one.private_b is None and one.shared_u.shape == (3, 64)


def test_views_of_different_dimension_via_cca():
    d = PlantedAlignment(dim=48, shared_rank=3, private_ranks=(2, 2), snr=10, dim_b=30,
                         random_state=1).sample(4000)
    with pytest.raises(ValueError, match="align='cca'"):
        SharedPrivateDecomposition().fit(d.U, d.V)
    model = SharedPrivateDecomposition(align="cca").fit(d.U, d.V)
    assert model.shared_rank_ == 3 and model.private_ranks_ == (2, 2)
    assert model.z_dim_ == 48 + 30 - 3
    np.testing.assert_allclose(model.map_u_ @ model.map_u_.T, np.eye(48), atol=1e-10)  # isometries
    np.testing.assert_allclose(model.map_v_ @ model.map_v_.T, np.eye(30), atol=1e-10)
    assert max_angle_deg(model.map_u_ @ model.basis_shared_, d.basis_shared) <= 5.0
    assert max_angle_deg(model.map_v_ @ model.basis_shared_, d.basis_shared_v) <= 5.0
    assert max_angle_deg(model.map_u_ @ model.basis_a_, d.basis_a) <= 5.0
    assert max_angle_deg(model.map_v_ @ model.basis_b_, d.basis_b_v) <= 5.0
    parts = model.transform(d.U[:5], d.V[:5])
    assert parts.shared_u.shape == (5, model.z_dim_)


# ------------------------------------------------------------------ AJIVE

def test_ajive_finds_joint_structure(planted):
    res = ajive(planted.U[:2000], planted.V[:2000], signal_ranks=(7, 7), n_random=50)
    assert res.joint_rank == 4
    assert max_angle_deg(res.joint_loadings_u, planted.basis_shared) <= 6.0
    # AJIVE's orthogonality is in sample space
    assert np.abs(res.joint_scores.T @ res.individual_scores_u).max() <= 1e-10
    assert res.individual_loadings_u.shape == (64, 3)
    fixed = ajive(planted.U[:500], planted.V[:500], signal_ranks=(7, 7), joint_rank=2)
    assert fixed.joint_rank == 2 and np.isnan(fixed.threshold)


# ------------------------------------------------------------------ bad input

def test_bad_input(rng):
    U, V = rng.standard_normal((50, 6)), rng.standard_normal((50, 6))
    spd = SharedPrivateDecomposition
    with pytest.raises(ValueError, match="same number of samples: U has 50, V has 49"):
        spd().fit(U, V[:49])
    with pytest.raises(ValueError, match="at least 2 samples"):
        spd().fit(U[:1], V[:1])
    bad = U.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="U contains 1 NaN"):
        spd().fit(bad, V)
    with pytest.raises(ValueError, match="V is constant"):
        spd().fit(U, np.ones((50, 6)))
    low_rank = rng.standard_normal((50, 2)) @ rng.standard_normal((2, 6))
    with pytest.raises(ValueError, match="shared_rank=3 exceeds what the data allow: U has rank 2"):
        spd(shared_rank=3).fit(low_rank, V)
    with pytest.raises(ValueError, match=r"private_ranks\[0\]=2 plus shared_rank=1 exceeds the rank of U \(2\)"):
        spd(shared_rank=1, private_ranks=(2, 1)).fit(low_rank, V)
    with pytest.raises(ValueError, match="exceeds the dimension of the space"):
        spd(shared_rank=2, private_ranks=(3, 3)).fit(U, V)
    with pytest.raises(ValueError, match="unknown rank_method"):
        spd(rank_method="elbow").fit(U, V)
    with pytest.raises(ValueError, match="private_ranks must be a pair"):
        spd(private_ranks=(1, 2, 3)).fit(U, V)
    with pytest.raises(RuntimeError, match="not fitted"):
        spd().transform(U, V)
    model = spd(shared_rank=1, private_ranks=(1, 1)).fit(U, V)
    with pytest.raises(ValueError, match="U must have 6 features"):
        model.transform(U[:, :5])
    with pytest.raises(ValueError, match="needs U, V or both"):
        model.transform()
