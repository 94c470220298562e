r"""Entropic free-support barycentre: annealed, warm-started fixed point (internal).

The fixed point :math:`X \leftarrow \sum_k w_k \operatorname{diag}(q)^{-1} P_k Y_k`
needs a transport plan :math:`P_k` per update, but the support moves little
between two updates, so a *converged* Sinkhorn solve per update is wasted work.
Here the dual potentials :math:`\beta_k` (one per measure, on its points) are
carried from update to update and only a few Sinkhorn iterations are done per
update; the plans and the support converge together.

Per update, for all :math:`K` measures in one batch:

1. Kernel with the potentials absorbed and each row normalised by its maximum,
   :math:`\tilde K_{ij} = \exp(Z_{ij} - \max_l Z_{il})`,
   :math:`Z_{ij} = (\beta_j - \|y_j\|^2 + 2\langle x_i, y_j\rangle)/\varepsilon`
   (one batched GEMM and one exponential; :math:`\|x_i\|^2` cancels in the row
   normalisation).  Entries below a floor are raised to the floor: no
   subnormal numbers (slow on x86) and no column can be left without mass.
2. ``inner`` scaling iterations :math:`v = b / \tilde K^\top u`, :math:`u = q / \tilde K v`
   (rows exact), absorbed into :math:`\beta` when the scalings leave
   :math:`[e^{-\tau}, e^{\tau}]`; a non-finite scaling rolls back to exact
   log-sum-exp iterations.
3. Barycentric map :math:`x_i \leftarrow \sum_k w_k (\tilde K_k (v_k \odot Y_k))_i / (\tilde K_k v_k)_i`.

ε is annealed geometrically from ``eps_start`` down to ``reg`` (one update per
stage), which also lets the support find its arrangement at a coarse scale
before the plans sharpen.  At the target ε the loop stops when the squared
displacement is below ``tol`` or the transport cost
:math:`\sum_k w_k\langle C_k, P_k\rangle` changes by less than ``rtol`` (relative).

Exact polish (:func:`exact_fixed_point`).  Entropic plans spread each support
point over several neighbours, which pulls the support towards the means
(+4% to +10% exact objective at ε = 1-3% of the median cost).  The exact fixed
point started from the entropic support removes this bias in a few updates.
With uniform masses and :math:`n_k = s` the exact plans are permutations and
:math:`X \leftarrow \sum_k w_k Y_k[\sigma_k]`; each :math:`\sigma_k` is a linear
assignment on the cost reduced by the last Sinkhorn column potentials
:math:`\beta_k` (same optimum, measured 7x less work than from zero
potentials).  Refreshing :math:`\beta` between exact updates (soft or hard
c-transforms) measured no further gain, so the entropic :math:`\beta` is kept.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from . import _core

__all__: list[str] = []


def _cost(X, Ys):
    """Squared distances [K, s, n] between X [s, d] and every cloud Ys [K, n, d]."""
    sq = (X * X).sum(-1)[None, :, None] + (Ys * Ys).sum(-1)[:, None, :] - 2 * X @ Ys.transpose(1, 2)
    return sq.clamp_min(0)


def _mtv(A, x):
    """Batched ``A^T @ x`` for A [B, m, n], x [B, m, 1], as a row-vector product.

    ``(x^T A)^T`` gives the same numbers, but torch on CPU runs a batched
    matrix times a single column through a slow path (measured 12x slower for
    [8, 500, 500] in float32, one thread).
    """
    return (x.transpose(1, 2) @ A).transpose(1, 2)


def initial_potentials(C, b):
    r"""Column potentials to start from: the hard c-transform :math:`\beta_j = \min_i C_{ij}`.

    Every column then has a kernel entry of 1, so no scaling has to span
    :math:`e^{\text{distance}/\varepsilon}` (which over/underflows float32 when the
    clouds start far from the support).  ``-inf`` on zero-mass (padding) points.
    """
    return torch.where(b > 0, C.amin(1), torch.full_like(b, -math.inf))


def entropic_fixed_point(X, Ys, b, q, w, reg, *, max_iter, tol, rtol, inner, inner_tol,
                         eps_start, eps_scaling, check_every=5, bar=None, omega=1.0, beta0=None):
    r"""Run the annealed fixed point; returns ``(X, value, n_iter, converged, shift, beta)``.

    Shapes: ``X`` [s, d], ``Ys`` [K, n, d] (padded), ``b`` [K, n] (zero mass on
    padding), ``q`` [s], ``w`` [K].  ``value`` is :math:`\sum_k w_k \langle
    \|X - Y_k\|^2, P_k\rangle` for the final support and the last plans; ``beta``
    [K, n] the measures' dual potentials of the last plans (``-inf`` on padding).
    """
    K, n, d = Ys.shape
    s = X.shape[0]
    dtype = X.dtype
    finfo = torch.finfo(dtype)
    tau = _core.absorption_threshold(dtype)
    log_floor = math.log(finfo.tiny) + 2 * tau  # kernel floor, well above the subnormals
    ysq = (Ys * Ys).sum(-1)
    Yt = Ys.transpose(1, 2)
    qc = q[None, :, None].expand(K, s, 1)
    bc = b[:, :, None]
    qr, br = qc.transpose(1, 2), bc.transpose(1, 2)
    logq = torch.log(q)[None].expand(K, s)
    logb = torch.log(b)
    beta = initial_potentials(_cost(X, Ys), b) if beta0 is None else beta0
    Z = torch.empty(K, s, n, dtype=dtype, device=X.device)

    def kernel(beta, eps):
        torch.baddbmm(((beta - ysq) / eps)[:, None, :], X.expand(K, s, d), Yt, alpha=2 / eps, out=Z)
        Z.sub_(Z.amax(2, keepdim=True))
        return Z.clamp_min_(log_floor).exp_()

    def exact(beta, eps):
        # Log-domain iterations from the current beta (always finite): the rare rescue path.
        C = _cost(X, Ys)
        alpha = eps * logq - eps * torch.logsumexp((beta[:, None, :] - C) / eps, dim=2)
        alpha, beta = _core.log_iterations(alpha, beta, C, eps, logq, logb, 2)
        return beta

    eps = reg if eps_start is None else max(reg, eps_start)
    prev = math.inf
    converged, shift, value = False, math.inf, math.inf
    n_iter = 0
    for _ in range(max_iter):
        Kk = kernel(beta, eps)
        u = qc / Kk.sum(2, keepdim=True)
        v = torch.ones_like(bc)
        done = 0
        err = math.inf
        while done < inner:
            # check after the first iteration of an update: the support has moved, stale
            # potentials can need large scalings, which over-relaxation would amplify
            k = min(1 if done == 0 else check_every, inner - done)
            # the core's row-vector scalings (views): v = b / K^T u, u = q / K v, over-relaxed;
            # torch's products (the NumPy host path measured no faster on these small batches)
            ur, vr = _core.scaling_iterations(u.transpose(1, 2), Kk, qr, br, k, v=v.transpose(1, 2),
                                              omega=omega, host=False)
            u, v = ur.transpose(1, 2), vr.transpose(1, 2)
            done += k
            lv = torch.log(v).masked_fill_(bc == 0, 0)
            lu = torch.log(u)
            col = v * _mtv(Kk, u)
            stats = torch.stack([
                (~torch.isfinite(lv)).any().to(dtype) + (~torch.isfinite(lu)).any().to(dtype),
                lv.abs().max(),  # u = q / (K v) is recomputed from the kernel: only v is absorbed
                (col - bc).abs().sum(1).max(),
            ]).tolist()  # one host synchronisation per block
            if stats[0]:
                beta = exact(beta, eps)
            elif stats[1] > tau:
                beta = beta + eps * lv[..., 0]
            else:
                err = stats[2]
                if err <= inner_tol and done >= min(check_every, inner):  # the early check only guards
                    break
                continue
            Kk = kernel(beta, eps)
            u = qc / Kk.sum(2, keepdim=True)
            v = torch.ones_like(bc)
        beta = beta + eps * torch.log(v[..., 0])
        # Barycentric map and the cost of the current plans (P = u K v), all from K.
        PY = u * (Kk @ (v * Ys))  # [K, s, d] = sum_j P_ij y_j
        col = (v * _mtv(Kk, u))[..., 0]
        X_new = torch.einsum("k,ksd->sd", w, PY) / q[:, None]
        plan_y = (col * ysq).sum(1)
        cost = lambda Xc: (w * ((q * (Xc * Xc).sum(1)).sum() + plan_y
                                - 2 * (Xc[None] * PY).sum((1, 2)))).sum()
        obj, value_t, shift_t = torch.stack([cost(X), cost(X_new),
                                             ((X_new - X) ** 2).sum()]).tolist()
        X = X_new
        value, shift = value_t, shift_t
        n_iter += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(eps=f"{eps:.3g}", cost=f"{obj:.6g}")
        if eps <= reg and err <= inner_tol:
            if shift < tol or abs(prev - obj) <= rtol * abs(obj):
                converged = True
                break
        prev = obj if eps <= reg else math.inf
        eps = max(reg, eps * eps_scaling)
    return X, value, n_iter, converged, shift, beta


# --------------------------------------------------------------------------- #
# Exact fixed point (POT's iterates) and the exact polish of an entropic support
# --------------------------------------------------------------------------- #
def is_assignment_problem(b, q, sizes):
    """Uniform masses everywhere and every measure as large as the support.

    Then the exact optimal plans are permutation matrices (vertices of the
    Birkhoff polytope) and a linear assignment solver replaces the network simplex.
    """
    s = q.shape[0]
    if any(n != s for n in sizes):
        return False
    rtol = 1e-9 if q.dtype == torch.float64 else 1e-6
    uniform = lambda t: bool(((t - 1.0 / s).abs() <= rtol / s).all())
    return uniform(q) and uniform(b)


def assignments(X, Ys, beta=None, workers=None):
    r"""Optimal permutations :math:`\sigma_k` from the support ``X`` [s, d] to each cloud ``Ys`` [K, s, d].

    :math:`\sigma_k = \arg\min_\sigma \sum_i \|x_i - y_{k,\sigma(i)}\|^2`, solved in
    float64 by :func:`scipy.optimize.linear_sum_assignment` on the reduced cost
    :math:`\langle y_j, y_j\rangle - 2\langle x_i, y_j\rangle - \beta_{kj}`.  Row and
    column shifts leave the optimal assignment unchanged, so ``beta`` (column dual
    potentials, e.g. from Sinkhorn) never changes the answer, only the time: with
    nearly optimal potentials most rows find their column at once (measured 7x
    fewer operations than from zero potentials; non-finite potentials are
    ignored).  The solver releases the GIL, so ``workers`` threads (default
    :func:`torch.get_num_threads`) solve that many measures at once; cost
    matrices are built ``workers`` at a time (bounded memory).  Returns an
    int64 array [K, s].
    """
    from scipy.optimize import linear_sum_assignment

    X64 = X.detach().to(torch.float64)
    Y64 = Ys.detach().to(device=X64.device, dtype=torch.float64)
    if beta is not None:
        beta = beta.detach().to(device=X64.device, dtype=torch.float64)
        if not bool(torch.isfinite(beta).all()):
            beta = None
    K = Y64.shape[0]
    workers = max(1, min(K, torch.get_num_threads() if workers is None else workers))
    solve = lambda R: linear_sum_assignment(R)[1]
    pool = None
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor
        pool = ThreadPoolExecutor(workers)
    perms = []
    try:
        for start in range(0, K, workers):
            Yc = Y64[start:start + workers]
            R = (Yc * Yc).sum(-1)[:, None, :] - 2 * X64 @ Yc.transpose(1, 2)
            if beta is not None:
                R = R - beta[start:start + workers, None, :]
            R = R.cpu().numpy()
            perms.extend(pool.map(solve, R) if pool is not None else map(solve, R))
    finally:
        if pool is not None:
            pool.shutdown()
    return np.stack(perms)


def _displacement(X, X_new, bar):
    r"""Squared displacement of an update, :math:`\|X_{new} - X\|_F^2` (one tick of ``bar``)."""
    if bar is not None:
        bar.update(1)
    return float(((X_new - X) ** 2).sum())


def exact_fixed_point(X, Ys, b, q, w, *, max_iter, tol, sizes, assignment=True, beta=None, bar=None):
    r"""Fixed point with exact plans; returns ``(X, value, n_iter, converged, shift)``.

    Each update solves the :math:`K` exact problems for the current support and
    moves it to :math:`\sum_k w_k \operatorname{diag}(q)^{-1} P_k Y_k` (POT's
    iterates).  With ``assignment``, uniform masses and :math:`n_k = s` the plans are the
    permutations of :func:`assignments` (warm-started by ``beta``) and the update
    is :math:`X \leftarrow \sum_k w_k Y_k[\sigma_k]`; otherwise the network
    simplex (POT ``ot.emd``, float64) gives them.  ``value`` is
    :math:`\sum_k w_k \langle \|X - Y_k\|^2, P_k\rangle` for the returned support and
    the last plans: the exact objective once converged (the plans are then optimal
    for it, unchanged permutations give a zero shift).  Shapes as in
    :func:`entropic_fixed_point`; ``sizes`` are the unpadded :math:`n_k`.
    """
    K = Ys.shape[0]
    converged, n_iter, shift = False, 0, math.inf
    if assignment and is_assignment_problem(b, q, sizes):
        X64, value, n_iter, converged, shift = _assignment_fixed_point(X, Ys, w, max_iter, tol, beta, bar)
        return X64.to(device=X.device, dtype=X.dtype), value, n_iter, converged, shift

    import ot as pot

    dtype, dev = X.dtype, X.device
    X64 = X.detach().to(torch.float64).cpu()
    Y64 = Ys.detach().to(torch.float64).cpu()
    q64, w64 = q.detach().to(torch.float64).cpu(), w.detach().to(torch.float64).cpu()
    q_np, b_np = q64.numpy(), b.detach().to(torch.float64).cpu().numpy()
    for _ in range(max_iter):
        # one measure at a time; the plans kept sparse (a vertex has <= s + n - 1 entries)
        X_new = torch.zeros_like(X64)
        plans = []
        for k in range(K):
            P = pot.emd(q_np, b_np[k], _cost(X64, Y64[k:k + 1])[0].numpy())
            i, j = np.nonzero(P)
            plans.append((torch.from_numpy(i), torch.from_numpy(j), torch.from_numpy(P[i, j])))
            X_new.index_add_(0, plans[-1][0], w64[k] * plans[-1][2][:, None] * Y64[k][plans[-1][1]])
        X_new /= q64[:, None]
        shift, X64, n_iter = _displacement(X64, X_new, bar), X_new, n_iter + 1
        if shift < tol:
            converged = True
            break
    value = sum(float(w64[k]) * float((p * ((X64[i] - Y64[k][j]) ** 2).sum(1)).sum())
                for k, (i, j, p) in enumerate(plans))
    return X64.to(device=dev, dtype=dtype), value, n_iter, converged, shift


# --------------------------------------------------------------------------- #
# Permutation plans: linear assignment, certified and warm-started by dual potentials
# --------------------------------------------------------------------------- #
def dual_potentials(C, perm, v, max_passes):
    r"""Column potentials proving that the permutation ``perm`` is optimal for the cost ``C``.

    Bellman-Ford relaxation from the column potentials ``v`` [n]:
    :math:`u_i = C_{i\sigma(i)} - v_{\sigma(i)}`, :math:`v_j \leftarrow \min_i (C_{ij} - u_i)`
    (never increases :math:`v`: the row :math:`\sigma^{-1}(j)` gives the current value).
    At a fixed point :math:`u_i + v_j \le C_{ij}` with equality on :math:`\sigma`, the
    dual certificate of optimality of :math:`\sigma` (LP duality); it is reached in at
    most :math:`n` passes exactly when no reassignment along a cycle lowers the cost
    (:math:`\sigma` optimal).  Returns ``(v, certified)``; after ``max_passes``
    passes without a fixed point, ``certified`` is False (``v`` is then no certificate).
    """
    rows = np.arange(C.shape[0])
    c_perm = C[rows, perm]
    for _ in range(max_passes):
        u = c_perm - v[perm]
        v_new = (C - u[:, None]).min(0)
        if np.array_equal(v_new, v):
            return v, True
        v = v_new
    return v, False


_BF_PASSES = 30  # Bellman-Ford passes towards the potentials of a new permutation
_CERTIFY_PASSES = 8  # passes to certify a kept permutation before solving again


def _first_assignment(C, beta):
    """Optimal permutation and its dual column potentials from scratch (or from ``beta``).

    Without potentials the network simplex (POT ``ot.emd``) runs (measured 1.5-3x
    faster than a cold linear assignment on the ``barycenter`` benchmark's
    200 x 200 costs) and its vertex, a permutation matrix, gives the
    assignment and its duals; otherwise (or if the vertex is not a permutation)
    :func:`scipy.optimize.linear_sum_assignment` on the cost reduced by the
    potentials.
    """
    from scipy.optimize import linear_sum_assignment

    n = C.shape[0]
    if beta is None:
        import ot as pot

        w = np.full(n, 1.0 / n)
        P, log = pot.emd(w, w, C, log=True)
        perm = P.argmax(1)
        if np.count_nonzero(P) == n and np.array_equal(np.sort(perm), np.arange(n)):
            return perm, np.asarray(log["v"], dtype=np.float64)
        beta = np.zeros(n)
    perm = linear_sum_assignment(C - beta[None])[1]
    v, ok = dual_potentials(C, perm, beta, n + 1)
    return perm, v if ok else beta


def _assignment_fixed_point(X, Ys, w, max_iter, tol, beta=None, bar=None):
    r"""Fixed point :math:`X \leftarrow \sum_k w_k Y_k[\sigma_k]` with optimal permutations.

    Each update keeps, per measure, its permutation and dual column potentials.
    For the moved support, :func:`dual_potentials` first tries to certify the
    kept permutation (a few :math:`O(n^2)` passes); only a measure whose
    permutation is no longer optimal gets a new linear assignment, on the
    cost reduced by its last potentials (measured 10-40x faster than from
    zero potentials on the ``barycenter`` benchmark's instances).  When every
    permutation is certified, the next update would return the same support:
    the iteration stops there, converged, without that update (the fixed point
    of POT's iteration, which does it and measures a zero displacement).
    ``beta`` [K, n]: optional warm start (e.g. Sinkhorn column potentials).
    Returns float64 CPU ``(X, value, n_iter, converged, shift)``.
    """
    from scipy.optimize import linear_sum_assignment

    Y64 = Ys.detach().to(torch.float64).cpu().numpy()
    w64 = w.detach().to(torch.float64).cpu().numpy()
    X64 = X.detach().to(torch.float64).cpu().numpy()
    K, n, _ = Y64.shape
    ysq = (Y64 * Y64).sum(-1)
    if beta is not None:
        beta = beta.detach().to(torch.float64).cpu().numpy()
        if not np.isfinite(beta).all():
            beta = None

    def cost(X, k):  # |y_j|^2 - 2 <x_i, y_j>: the squared distance up to a row shift
        return ysq[k][None, :] - 2 * X @ Y64[k].T

    perms, duals = [], []
    for k in range(K):
        p, v = _first_assignment(cost(X64, k), None if beta is None else beta[k])
        perms.append(p)
        duals.append(v)
    converged, n_iter, shift = False, 0, math.inf
    for _ in range(max_iter):
        X_new = np.einsum("k,kid->id", w64, Y64[np.arange(K)[:, None], np.stack(perms)])
        shift, X64, n_iter = _displacement(X64, X_new, bar), X_new, n_iter + 1
        if shift < tol:
            converged = True
            break
        changed = False
        for k in range(K):
            C = cost(X64, k)
            v, ok = dual_potentials(C, perms[k], duals[k], _CERTIFY_PASSES)
            if ok:
                duals[k] = v
                continue
            p = linear_sum_assignment(C - duals[k][None])[1]
            if not np.array_equal(p, perms[k]):
                changed = True
            # the potentials relaxed towards the new certificate: the next warm start
            perms[k], duals[k] = p, dual_potentials(C, p, duals[k], _BF_PASSES)[0]
        if not changed:  # every permutation optimal for X: X is the fixed point
            converged, shift = True, 0.0
            break
    matched = Y64[np.arange(K)[:, None], np.stack(perms)]
    value = float((w64 * ((X64[None] - matched) ** 2).sum((1, 2))).sum() / n)
    return torch.from_numpy(X64), value, n_iter, converged, shift
