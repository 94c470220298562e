"""SSPC: Multi-Assignment Sinkhorn-Knopp against a dense loop reference, marginals, regulariser, model."""
import numpy as np
import pytest
import torch

from geoalign.models.sspc import SSPC, SSPCRegularizer, multi_assignment_sinkhorn


def reference_multi_sk(S, R, low_weight=0.25, eps=0.07, n_iters=20):
    """Straightforward loops over the dense N x K x K tensor (float64), as in docs/design/mathematics.md, Published methods."""
    N, K = S.shape
    w = [low_weight] * (K - R) + [1.0] * R
    Q = np.empty((N, K, K))
    for n in range(N):
        for m in range(K):
            for k in range(K):
                Q[n, m, k] = np.exp(w[m] * S[n, k] / eps)
    for _ in range(n_iters):
        for m in range(K):
            for k in range(K):
                Q[:, m, k] *= (N / K) / Q[:, m, k].sum()
        for n in range(N):
            for k in range(K):
                Q[n, :, k] /= Q[n, :, k].sum()
        for n in range(N):
            for m in range(K):
                Q[n, m, :] /= Q[n, m, :].sum()
    t = Q[:, K - R:, :].sum(axis=1)
    if R == K:  # all slots heavy: t == 1 everywhere, min-max scaling undefined
        return Q, t, None
    scaled = (t - t.min(1, keepdims=True)) / (t.max(1, keepdims=True) - t.min(1, keepdims=True))
    return Q, t, scaled


@pytest.mark.parametrize("K,R", [(6, 3), (8, 2), (5, 5)])
def test_multi_sk_matches_loop_reference(rng, K, R):
    S = rng.uniform(-1, 1, size=(23, K))
    Q, t, scaled = reference_multi_sk(S, R)
    res = multi_assignment_sinkhorn(S, n_positive=R)
    np.testing.assert_allclose(res.plan, Q, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.assignment, t, rtol=1e-10, atol=1e-12)
    if R < K:
        np.testing.assert_allclose(res.targets, scaled, rtol=1e-9, atol=1e-10)


def test_multi_sk_marginals_and_spread(rng):
    N, K = 400, 16
    R = K // 2
    z = rng.normal(size=(N, 5))
    anchors = rng.normal(size=(K, 5))
    S = (z / np.linalg.norm(z, axis=1, keepdims=True)) @ (anchors / np.linalg.norm(anchors, axis=1,
                                                                                    keepdims=True)).T
    res = multi_assignment_sinkhorn(S)
    # rows (last normalisation) exact; each sample's slot x anchor block nearly doubly stochastic
    np.testing.assert_allclose(res.plan.sum(axis=2), 1.0, atol=1e-12)
    np.testing.assert_allclose(res.plan.sum(axis=1), 1.0, atol=0.05)
    # uniform anchor usage in every slot
    np.testing.assert_allclose(res.plan.sum(axis=0), N / K, rtol=0.05)
    # each sample spread over about R anchors, heavy mass on its most similar anchors
    np.testing.assert_allclose(res.assignment.sum(axis=1), R, atol=1e-9)
    n_heavy = (res.targets > 0.5).sum(axis=1)
    assert abs(n_heavy.mean() - R) <= 1.0
    assert res.targets.min() == 0.0 and np.allclose(res.targets.max(axis=1), 1.0)
    top = np.argsort(-S, axis=1)[:, :R]
    assert np.take_along_axis(res.assignment, top, 1).sum(1).mean() > 0.7 * R


def test_multi_sk_torch_in_torch_out_and_float32():
    S = torch.rand(50, 8, dtype=torch.float32) * 2 - 1
    res = multi_assignment_sinkhorn(S)
    assert isinstance(res.targets, torch.Tensor) and res.targets.dtype == torch.float32
    ref = multi_assignment_sinkhorn(S.double().numpy())
    np.testing.assert_allclose(res.assignment.numpy(), ref.assignment, atol=1e-4)


def test_multi_sk_bad_input():
    with pytest.raises(ValueError, match="similarities"):
        multi_assignment_sinkhorn(np.ones(5))
    with pytest.raises(ValueError, match="similarities"):
        multi_assignment_sinkhorn(np.array([[0.1, np.nan]]))
    with pytest.raises(ValueError, match="n_positive"):
        multi_assignment_sinkhorn(np.zeros((3, 4)), n_positive=5)
    with pytest.raises(ValueError, match="epsilon"):
        multi_assignment_sinkhorn(np.zeros((3, 4)), epsilon=0.0)


def _planted(rng, n=256, d=12, n_classes=4):
    y = rng.integers(0, n_classes, n)
    centres = rng.normal(size=(n_classes, d)) * 3
    xa = centres[y] + rng.normal(size=(n, d))
    xb = centres[y] @ rng.normal(size=(d, d)) + rng.normal(size=(n, d))
    return xa.astype(np.float32), xb.astype(np.float32), y


def test_regularizer_queue_and_start_when_full():
    torch.manual_seed(0)
    reg = SSPCRegularizer(dim=4, n_anchors=8, queue_size=10, start_when_full=True)
    z_a, z_b = torch.randn(6, 4), torch.randn(6, 4)
    assert reg.loss(z_a, z_b).item() == 0.0              # queue 6/10: not started
    assert int(reg.queue_count) == 6 and not reg.queue_full
    loss = reg.loss(z_a, z_b)                             # queue full only after this call
    assert loss.item() == 0.0 and reg.queue_full
    loss = reg.loss(z_a, z_b)
    assert loss.item() > 0
    loss.backward()
    assert reg.anchors_a.grad is not None and reg.anchors_a.grad.abs().sum() > 0
    reg.eval()
    count, ptr = int(reg.queue_count), int(reg.queue_ptr)
    reg.loss(z_a, z_b)
    assert int(reg.queue_ptr) == ptr and int(reg.queue_count) == count  # eval leaves the queue
    with pytest.raises(ValueError, match="z_a and z_b"):
        reg.loss(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="logits"):
        SSPCRegularizer(dim=4, logits="sigmoid")


def test_regularizer_targets_use_queue_and_exp_logits():
    torch.manual_seed(1)
    reg = SSPCRegularizer(dim=4, n_anchors=6, queue_size=0, logits="exp")
    z_a = torch.randn(20, 4)
    loss = reg.loss(z_a, z_a.clone())
    S = reg.similarities(z_a, "a").detach()
    T_b = multi_assignment_sinkhorn(reg.similarities(z_a, "b").detach()).targets
    T_a = multi_assignment_sinkhorn(S).targets
    expected = 0.5 * (torch.nn.functional.binary_cross_entropy_with_logits(torch.exp(S / 0.1), T_b)
                      + torch.nn.functional.binary_cross_entropy_with_logits(
                          torch.exp(reg.similarities(z_a, "b").detach() / 0.1), T_a))
    assert torch.allclose(loss.detach(), expected, atol=1e-5)


def test_regularizer_loss_decreases_on_planted_data(rng):
    xa, xb, _ = _planted(rng)
    torch.manual_seed(0)
    enc_a, enc_b = torch.nn.Linear(12, 8), torch.nn.Linear(12, 8)
    reg = SSPCRegularizer(dim=8, n_anchors=8, queue_size=0)
    opt = torch.optim.Adam([*enc_a.parameters(), *enc_b.parameters(), *reg.parameters()], lr=1e-2)
    ta, tb = torch.from_numpy(xa), torch.from_numpy(xb)
    losses = []
    for _ in range(80):
        opt.zero_grad()
        loss = reg.loss(enc_a(ta), enc_b(tb))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_sspc_estimator_learns_and_roundtrips(rng, tmp_path):
    from geoalign.evaluation import retrieval_scores

    xa, xb, y = _planted(rng)
    model = SSPC(dim=8, hidden=16, n_anchors=8, queue_size=128, max_epochs=15, batch_size=64,
                 lr=3e-3, random_state=0, trainer_options={"progress": False})
    model.fit(xa, xb, y)
    rec = model.history_.records
    assert rec[-1]["train_info_nce"] < rec[0]["train_info_nce"]
    assert rec[-1]["train_consistency"] > 0 and rec[0]["train_queue_fill"] > 0
    za, zb = model.transform_a(xa), model.transform_b(xb)
    assert retrieval_scores(za, zb, y, y).mean.map_all > 0.8
    path = model.save(tmp_path / "sspc.pt")
    again = SSPC.load(path)
    np.testing.assert_allclose(again.transform_a(xa), za, atol=1e-6)
    assert int(again.module_.regularizer.queue_count) == 128


def test_sspc_bad_input(rng):
    xa, xb, y = _planted(rng, n=20)
    model = SSPC(dim=4, hidden=None, n_anchors=4, queue_size=0, max_epochs=1,
                 trainer_options={"progress": False})
    with pytest.raises(ValueError, match="same"):
        model.fit(xa, xb[:-1])
    with pytest.raises(ValueError, match="one label per pair"):
        model.fit(xa, xb, y[:-2])
    bad = xa.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="X_a"):
        model.fit(bad, xb)
