import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from geoalign.evaluation import (calibrated_stacking, evaluate_gzsl, per_class_accuracy,
                              retrieval_scores, select_gamma, zsl_accuracy)


# --------------------------------------------------------------------------- references

def ref_per_class(y, p):
    accs = []
    for c in sorted(set(y.tolist())):
        sel = y == c
        accs.append(np.mean(p[sel] == c))
    return float(np.mean(accs))


def ref_gzsl(scores, y, seen, gamma):
    pred = np.array([np.argmax([s - gamma * seen[c] for c, s in enumerate(row)]) for row in scores])
    u_sel, s_sel = ~seen[y], seen[y]
    u, s = ref_per_class(y[u_sel], pred[u_sel]), ref_per_class(y[s_sel], pred[s_sel])
    return u, s, (0.0 if u + s == 0 else 2 * u * s / (u + s))


def ref_retrieval(q, d, lq, ld, metric):
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
    firsts, aps = [], []
    for i in range(len(q)):
        if metric == "euclidean":
            sim = -np.array([np.sum((q[i] - x) ** 2) for x in d])
        else:
            sim = np.array([q[i] @ x for x in d])
        rel = (ld == lq[i]).astype(int)
        if rel.sum() == 0:
            continue
        aps.append(average_precision_score(rel, sim))
        ranked = sorted(range(len(d)), key=lambda j: -sim[j])
        firsts.append(1 + next(r for r, j in enumerate(ranked) if rel[j]))
    firsts = np.array(firsts)
    return {k: np.mean(firsts <= k) for k in (1, 5, 10)}, np.median(firsts), np.mean(aps)


# --------------------------------------------------------------------------- ZSL / GZSL

@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=60))
def test_per_class_accuracy_matches_reference(pairs):
    y, p = np.array(pairs).T
    assert per_class_accuracy(y, p) == pytest.approx(ref_per_class(y, p))


def test_per_class_is_not_per_sample():
    y = np.array([0] * 9 + [1])
    p = np.array([0] * 9 + [0])
    assert per_class_accuracy(y, p) == pytest.approx(0.5)  # sample accuracy would be 0.9


def test_zsl_accuracy_restricts_candidates(rng):
    scores = rng.normal(size=(50, 6))
    y = rng.integers(3, 6, size=50)
    cand = np.array([3, 4, 5])
    expected = ref_per_class(y, cand[scores[:, cand].argmax(1)])
    assert zsl_accuracy(scores, y, cand) == pytest.approx(expected)
    assert zsl_accuracy(torch.as_tensor(scores), torch.as_tensor(y), cand) == pytest.approx(expected)
    scores[:, 0] = 100.0  # a non-candidate class with huge scores changes nothing
    assert zsl_accuracy(scores, y, cand) == pytest.approx(expected)
    with pytest.raises(ValueError, match="not among classes"):
        zsl_accuracy(scores, y, [3, 4])
    with pytest.raises(ValueError, match="length 50"):
        zsl_accuracy(scores, y[:-1], cand)
    with pytest.raises(ValueError, match="class id 7 but scores have only 6"):
        zsl_accuracy(scores, np.full(50, 7))
    with pytest.raises(ValueError, match="NaN"):
        zsl_accuracy(np.full((2, 2), np.nan), [0, 1])


def test_calibrated_stacking_numpy_and_torch(rng):
    s = rng.normal(size=(4, 3))
    mask = np.array([True, False, True])
    out = calibrated_stacking(s, mask, 0.7)
    np.testing.assert_allclose(out, s - 0.7 * np.array([1, 0, 1]))
    t = calibrated_stacking(torch.as_tensor(s, dtype=torch.float32), torch.as_tensor(mask), 0.7)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), out, rtol=1e-6)
    with pytest.raises(ValueError, match="length 3"):
        calibrated_stacking(s, mask[:2], 0.1)
    with pytest.raises(TypeError, match="boolean"):
        calibrated_stacking(s, np.array([1, 0, 1]), 0.1)
    with pytest.raises(ValueError, match="some classes seen and some unseen"):
        calibrated_stacking(s, np.ones(3, bool), 0.1)


def _biased_gzsl(rng, n=300, bias=1.0):
    """Scores that favour seen classes by ``bias``: calibration with gamma near bias helps."""
    seen = np.array([True, True, True, False, False])
    y = rng.integers(0, 5, size=n)
    scores = rng.normal(scale=0.5, size=(n, 5))
    scores[np.arange(n), y] += 1.5
    scores[:, seen] += bias
    return scores, y, seen


def test_select_gamma_matches_brute_force(rng):
    scores, y, seen = _biased_gzsl(rng)
    grid = np.linspace(-2, 2, 41)
    sel = select_gamma(scores, y, seen, gammas=grid)
    ref = {g: ref_gzsl(scores, y, seen, g)[2] for g in grid}
    assert sel.harmonic == pytest.approx(max(ref.values()))
    assert ref[min(ref, key=lambda g: (-ref[g], abs(g)))] == pytest.approx(sel.harmonic)
    assert 0.4 <= sel.gamma <= 1.6  # the planted seen-class bias is 1.0
    assert sel.harmonic > ref_gzsl(scores, y, seen, 0.0)[2] + 0.1
    default = select_gamma(torch.as_tensor(scores), torch.as_tensor(y), seen)
    assert default.harmonic >= sel.harmonic - 0.02


def test_evaluate_gzsl_uses_validation_gamma_only(rng):
    val_scores, val_y, seen = _biased_gzsl(rng)
    test_scores, test_y, _ = _biased_gzsl(rng, bias=1.0)
    res = evaluate_gzsl(val_scores, val_y, test_scores, test_y, seen)
    sel = select_gamma(val_scores, val_y, seen)
    assert res.gamma == sel.gamma and res.val_harmonic == pytest.approx(sel.harmonic)
    u, s, h = ref_gzsl(test_scores, test_y, seen, res.gamma)
    assert (res.unseen, res.seen, res.harmonic) == pytest.approx((u, s, h))
    # changing the test data cannot move gamma
    other = evaluate_gzsl(val_scores, val_y, test_scores + 5 * seen, test_y, seen)
    assert other.gamma == res.gamma
    with pytest.raises(ValueError, match="identical"):
        evaluate_gzsl(test_scores, test_y, test_scores, test_y, seen)
    with pytest.raises(ValueError, match="identical"):
        evaluate_gzsl(test_scores.copy(), test_y, test_scores, test_y, seen)
    only_seen = val_y % 3
    with pytest.raises(ValueError, match="both seen and unseen"):
        evaluate_gzsl(val_scores, only_seen, test_scores, test_y, seen)


# --------------------------------------------------------------------------- retrieval

@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_retrieval_matches_brute_force_and_sklearn(rng, metric):
    a, b = rng.normal(size=(40, 5)), rng.normal(size=(35, 5))
    la, lb = rng.integers(0, 4, size=40), rng.integers(0, 4, size=35)
    res = retrieval_scores(a, b, la, lb, metric=metric, block_size=7)
    for got, (q, d, lq, ld) in ((res.a_to_b, (a, b, la, lb)), (res.b_to_a, (b, a, lb, la))):
        recall, medr, m = ref_retrieval(q, d, lq, ld, metric)
        assert got.map_all == pytest.approx(m, rel=1e-10)
        assert got.median_rank == medr
        assert got.recall == pytest.approx(recall)
        assert got["R@5"] == got.recall[5] and got["mAP"] == got.map_all and got["MedR"] == medr
    assert res.map_all == pytest.approx(0.5 * (res.a_to_b.map_all + res.b_to_a.map_all))
    assert res.mean.recall[1] == pytest.approx(0.5 * (res.a_to_b.recall[1] + res.b_to_a.recall[1]))
    t = retrieval_scores(torch.as_tensor(a), torch.as_tensor(b), torch.as_tensor(la), lb,
                          metric=metric)
    assert t.map_all == pytest.approx(res.map_all, rel=1e-10)
    assert t.a_to_b.recall == pytest.approx(res.a_to_b.recall)


def test_retrieval_instance_pairs_and_skipped_queries(rng):
    a = rng.normal(size=(20, 8))
    perfect = retrieval_scores(a, a + 1e-3 * rng.normal(size=a.shape))
    assert perfect.map_all == pytest.approx(1.0) and perfect.mean.median_rank == 1.0
    assert perfect.a_to_b.recall[1] == 1.0
    shuffled = retrieval_scores(a, a[::-1].copy())
    assert shuffled.a_to_b.recall[1] < 0.2
    res = retrieval_scores(a[:4], a[:3], [0, 1, 2, 9], [0, 1, 2])
    assert res.a_to_b.n_queries == 3 and res.a_to_b.n_skipped == 1


def test_retrieval_errors(rng):
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))
    with pytest.raises(ValueError, match="equal counts"):
        retrieval_scores(a, b)
    with pytest.raises(ValueError, match="same dimension"):
        retrieval_scores(a, rng.normal(size=(5, 2)))
    with pytest.raises(ValueError, match="both labels_a and labels_b"):
        retrieval_scores(a, b, labels_a=np.zeros(5))
    with pytest.raises(ValueError, match="labels_b must have length 4"):
        retrieval_scores(a, b, np.zeros(5), np.zeros(3))
    with pytest.raises(ValueError, match="no query has a relevant item"):
        retrieval_scores(a, b, np.zeros(5), np.ones(4))
    with pytest.raises(ValueError, match="metric"):
        retrieval_scores(a, a, metric="manhattan")
    with pytest.raises(ValueError, match="NaN"):
        retrieval_scores(np.full((2, 3), np.nan), a[:2])
    if torch.cuda.is_available():  # pragma: no cover - GPU machines only
        with pytest.raises(ValueError, match="same device"):
            retrieval_scores(torch.zeros(2, 3), torch.zeros(2, 3, device="cuda"))
