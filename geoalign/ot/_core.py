r"""The Sinkhorn core: every Sinkhorn iteration of the package runs here (internal).

Entropic transport between marginals :math:`a \in \mathbb R_+^n`, :math:`b \in \mathbb R_+^m`
with kernel :math:`K = e^{-C/\varepsilon}` alternates the two Bregman projections

.. math::

    v \leftarrow b \oslash K^\top u, \qquad u \leftarrow a \oslash K v
    \qquad\text{(scaling domain)},

    \beta_j \leftarrow \varepsilon \log b_j - \varepsilon \log \sum_i e^{(\alpha_i - C_{ij})/\varepsilon},
    \quad \alpha_i \leftarrow \varepsilon \log a_i - \varepsilon \log \sum_j e^{(\beta_j - C_{ij})/\varepsilon}
    \qquad\text{(log domain)},

the same iterates written with :math:`u = e^{\alpha/\varepsilon}`, :math:`v = e^{\beta/\varepsilon}`.
The callers differ only in their marginals and stopping rules:

================================  ===========================================  ==============================
caller                            marginals                                    iterations / stopping rule
================================  ===========================================  ==============================
``sinkhorn`` (``_sinkhorn``)      given ``a``, ``b``; batches [B, n, m]        :func:`solve`: tol on the column
                                                                               marginal, or fixed count
``sinkhorn_divergence``           four problems (xy, yx, xx, yy)               :func:`log_kernel_apply`,
                                                                               symmetric averaged updates,
                                                                               ε-scaling; potential change
``barycenter`` (fixed support)    ``a_k`` and the geometric mean of the        :func:`log_kernel_apply`;
                                  :math:`K^\top u_k`                           marginal error every 10
free-support barycentre           support masses ``q``, measures ``b_k``        :func:`scaling_iterations`
                                                                               (over-relaxed), warm starts
QSMA barycentric plan             uniform                                      :func:`scaling_iterations`,
                                                                               fixed count, no host sync
SSPC multi-assignment             three: slot, anchor usage, sample            :func:`multi_marginal_scalings`,
                                                                               fixed count
================================  ===========================================  ==============================

Shapes follow torch's batched products: kernels ``[B, n, m]``, scalings as row
vectors ``u`` [B, 1, n], ``v`` [B, 1, m] (torch's and NumPy's row-vector x
matrix products are several times faster on the CPU than matrix x column
ones).  Everything is device-generic; on the CPU, where reading a value waits
for nothing, :func:`scaling_iterations` runs on host memory (the *host fast
path*): the optional compiled kernel ``geoalign._sinkhorn`` (one pass over
the kernel per iteration, :func:`compiled_iterations`) where it is built,
NumPy's BLAS on views of the same memory otherwise.
"""
from __future__ import annotations

import math

import numpy as np
import torch

try:  # optional compiled kernel: one pass over K per iteration (built where a C compiler exists)
    from .. import _sinkhorn as _compiled
except ImportError:  # pragma: no cover - depends on the build
    _compiled = None

__all__: list[str] = []


# --------------------------------------------------------------------------- #
# Log domain
# --------------------------------------------------------------------------- #
def log(w: torch.Tensor) -> torch.Tensor:
    """``log w``; zero-mass points get potential ``-inf`` (they transport nothing)."""
    return torch.log(w)


def log_kernel_apply(M: torch.Tensor, h: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r""":math:`\log \sum_j e^{M_{ij} + h_j}` (``h`` broadcast against ``M``), reduced over ``dim``.

    With :math:`M = -C/\varepsilon` this is :math:`\log (K e^{h})`, the log-domain
    matrix-vector product; :math:`-\varepsilon` times it is the soft-min (soft
    c-transform) of the divergence and the barycentre.
    """
    return torch.logsumexp(M + h, dim=dim)


def softmin(eps: float, C: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    r""":math:`-\varepsilon \log \sum_j \exp(h_j - C_{ij}/\varepsilon)`, batched: C [B, n, m], h [B, m]."""
    return -eps * log_kernel_apply(C / -eps, h[:, None, :])


def softmin_weights(eps: float, C: torch.Tensor, h: torch.Tensor, weights: bool = True):
    r""":func:`softmin` and its weights :math:`\pi_{ij} = e^{h_j - C_{ij}/\varepsilon} / \sum_l e^{h_l - C_{il}/\varepsilon}`.

    The weights (rows summing to one, shape of ``C``) are the derivative of the
    soft-min with respect to :math:`C_{ij}`; ``weights=False`` returns ``None`` for them.
    """
    z = C / -eps + h[:, None, :]
    lse = torch.logsumexp(z, dim=-1)
    return -eps * lse, (z.sub_(lse[:, :, None]).exp_() if weights else None)


def kernel_softmin(eps: float, K: torch.Tensor, logw: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    r""":func:`softmin` with :math:`K = e^{-C/\varepsilon}` precomputed:
    :math:`-\varepsilon \log K (w \odot e^{h})`, with ``h`` shifted by its maximum (no overflow)."""
    z = logw + h
    zmax = z.amax(1, keepdim=True)
    return -eps * (zmax + torch.log((K @ torch.exp(z - zmax)[:, :, None])[..., 0]))


def log_iterations(alpha, beta, C, eps, loga, logb, k):
    r"""``k`` exact log-sum-exp iterations (column update, then row update).

    Absorbed convention :math:`P_{ij} = e^{(\alpha_i + \beta_j - C_{ij})/\varepsilon}`;
    shapes ``alpha`` [B, n], ``beta`` [B, m], ``C`` [B, n, m].
    """
    for _ in range(k):
        beta = eps * logb - eps * torch.logsumexp((alpha[:, :, None] - C) / eps, dim=1)
        alpha = eps * loga - eps * torch.logsumexp((beta[:, None, :] - C) / eps, dim=2)
    return alpha, beta


# --------------------------------------------------------------------------- #
# Scaling domain
# --------------------------------------------------------------------------- #
# On the CPU a "host synchronisation" costs nothing (the values already live in host
# memory), so the scaling iterations there run on NumPy's BLAS and fixed-iteration solves
# take the checked loop, which is faster (benchmark `sinkhorn` of benchmarks/run.py); on
# accelerators they take the sync-free loop.  Tests switch this off to count the
# synchronisations of the device-generic code on the CPU.
_HOST_FAST_PATH = True

_CHUNK_BYTES = 1 << 19  # about half the per-core L2 cache of current x86 CPUs


def host_fast(K) -> bool:
    """Whether :func:`scaling_iterations` takes the NumPy host path for ``K``."""
    return _HOST_FAST_PATH and K.device.type == "cpu" and K.dtype in (torch.float32, torch.float64)


def _relaxed(old, new, omega, zero_mass=False):
    r"""Over-relaxed scaling :math:`s^{1-\omega} (s_{new})^{\omega}`; ``zero_mass``: NaN (0^(1-ω) 0) -> 0."""
    if isinstance(old, np.ndarray):
        s = old ** (1 - omega) * new ** omega
        return np.nan_to_num(s, nan=0.0) if zero_mass else s
    s = old.pow(1 - omega) * new.pow(omega)
    return torch.nan_to_num(s, nan=0.0) if zero_mass else s


def scaling_iterations(u, K, at, bt, k, *, v=None, omega=1.0, floor=None, host=None):
    r"""``k`` Sinkhorn iterations :math:`v = b / (u K)`, :math:`u = a / (v K^\top)` on row vectors.

    Parameters
    ----------
    u : tensor, shape=[B, 1, n]
        Row scaling to start from (the column scaling is computed first).
    K : tensor, shape=[B, n, m]
    at, bt : tensor, shapes [B, 1, n], [B, 1, m]
        Marginals (zero entries: zero-mass points).
    k : int
    v : tensor, shape=[B, 1, m], optional
        Column scaling the over-relaxation starts from (default ones).
    omega : float in [1, 2)
        Over-relaxation (Thibault et al. 2017): :math:`v \leftarrow v^{1-\omega}
        (b / uK)^{\omega}` (0 on zero-mass columns), likewise :math:`u`; 1 is
        plain Sinkhorn.
    floor : float, optional
        Clamp the denominators to at least ``floor`` (the sync-free device loop:
        nothing is checked, nothing may divide by zero).
    host : bool, optional
        Take the NumPy host path; default :func:`host_fast` (CPU, float32/64).
        ``False`` keeps torch's products on the CPU as well.

    Returns
    -------
    u, v : tensors, shapes [B, 1, n], [B, 1, m]

    Notes
    -----
    On the CPU (:func:`host_fast`), plain iterations (``omega=1``, no
    ``floor``) run in the compiled kernel ``geoalign._sinkhorn`` where it is
    built (:func:`compiled_iterations`: one pass over the kernel per
    iteration).  Otherwise each iteration reads the kernel twice, and on the
    CPU float32/float64 products go through NumPy's BLAS on views of the
    same memory (no copy): its vector x matrix kernels ran 1.3-1.7x faster
    than torch's batched products here, and batches of small problems run
    chunk by chunk from cache (3-4x faster than streaming the whole batch
    every iteration); see the ``sinkhorn`` benchmark of benchmarks/run.py.  Non-finite values are left to the caller
    to check.
    """
    if host_fast(K) if host is None else host:
        return _host_scaling_iterations(u, K, at, bt, k, v, omega, floor)
    if omega != 1 and v is None:
        v = torch.ones_like(bt)
    for _ in range(k):
        den = u @ K
        v_new = bt / (den if floor is None else den.clamp_min(floor))
        v = v_new if omega == 1 else _relaxed(v, v_new, omega, zero_mass=True)
        den = v @ K.transpose(1, 2)
        u_new = at / (den if floor is None else den.clamp_min(floor))
        u = u_new if omega == 1 else _relaxed(u, u_new, omega)
    return u, v


def compiled_iterations(u, K, at, bt, k, uK=None):
    r"""``k`` plain iterations (``omega=1``) in the compiled kernel ``geoalign._sinkhorn``.

    One pass over each kernel per iteration: the column sums :math:`u^\top K`
    of the next column update are accumulated while the row update runs.
    Same shapes as :func:`scaling_iterations` (CPU, float32/float64); ``uK``
    [B, 1, m], optional, is :math:`u^\top K` for the given ``u`` (saves one
    pass).  Returns ``u, v, uK`` with ``uK`` :math:`= u^\top K` for the returned
    ``u`` (the caller's column marginal is ``v * uK``).  Arithmetic in the
    working dtype.  Non-finite values are left to the caller to check.
    """
    Kn = np.ascontiguousarray(K.numpy())
    B, n, m = Kn.shape
    dt = Kn.dtype
    an = np.ascontiguousarray(at.numpy().reshape(-1, n), dtype=dt)
    bn = np.ascontiguousarray(bt.numpy().reshape(-1, m), dtype=dt)
    un = np.array(np.broadcast_to(u.numpy().reshape(-1, n), (B, n)), dtype=dt)  # a copy: overwritten
    vn = np.empty((B, m), dt)
    wn = np.empty((B, m), dt) if uK is None else np.array(uK.numpy().reshape(B, m), dtype=dt)
    _compiled.iterate(Kn, an, bn, un, vn, wn, int(k), uK is not None)
    return (torch.from_numpy(un).reshape(B, 1, n), torch.from_numpy(vn).reshape(B, 1, m),
            torch.from_numpy(wn).reshape(B, 1, m))


def _host_scaling_iterations(u, K, at, bt, k, v, omega, floor):
    if _compiled is not None and omega == 1 and floor is None:
        return compiled_iterations(u, K, at, bt, k)[:2]
    Kn, an, bn, u0 = K.numpy(), at.numpy(), bt.numpy(), u.numpy()
    v0 = None if omega == 1 else (np.ones((Kn.shape[0], 1, Kn.shape[2]), Kn.dtype)
                                  if v is None else v.numpy())
    KTn = Kn.transpose(0, 2, 1)
    # Batches run in chunks of about _CHUNK_BYTES of kernel, each chunk all k
    # iterations while its kernels stay in cache (the problems are independent).
    c = max(1, _CHUNK_BYTES // max(1, Kn[0].nbytes))
    us, vs = [], []
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # checked by the caller
        for s in range(0, Kn.shape[0], c):
            un, Ks, KTs = u0[s:s + c], Kn[s:s + c], KTn[s:s + c]
            a_s, b_s = an[s:s + c] if an.shape[0] > 1 else an, bn[s:s + c] if bn.shape[0] > 1 else bn
            vn = None if v0 is None else v0[s:s + c]
            for _ in range(k):
                den = un @ Ks
                v_new = b_s / (den if floor is None else np.maximum(den, floor))
                vn = v_new if omega == 1 else _relaxed(vn, v_new, omega, zero_mass=True)
                den = vn @ KTs
                u_new = a_s / (den if floor is None else np.maximum(den, floor))
                un = u_new if omega == 1 else _relaxed(un, u_new, omega)
            us.append(un)
            vs.append(vn)
    if len(us) > 1:
        return torch.from_numpy(np.concatenate(us)), torch.from_numpy(np.concatenate(vs))
    return torch.from_numpy(us[0]), torch.from_numpy(vs[0])


def absorbed_kernel(alpha, beta, C, eps, tau):
    """Absorbed kernel :math:`e^{(\\alpha_i + \\beta_j - C_{ij})/\\varepsilon}`; entries below tiny*e^(2 tau) set to 0.

    Their contribution to the plan is below tiny*e^(4 tau) (negligible), and
    keeping them would make every later product a subnormal number, which x86
    CPUs process up to 100x slower.
    """
    K = torch.add(alpha[:, :, None], beta[:, None, :]).sub_(C).div_(eps).exp_()  # one n x m buffer
    floor = torch.finfo(C.dtype).tiny * math.exp(2 * tau)
    return torch.nn.functional.threshold_(K, floor, 0.0)  # K <= floor -> 0, in place


def absorption_threshold(dtype) -> float:
    """τ: scalings are absorbed into the potentials when they leave [e^-τ, e^τ].

    An eighth of the exponent range of ``dtype``.
    """
    return 0.125 * math.log(torch.finfo(dtype).max)


# --------------------------------------------------------------------------- #
# The stabilised solver (entropic OT with given marginals)
# --------------------------------------------------------------------------- #
def solve(a, b, C, eps, max_iter, tol, check_every=10, eps_scaling=None, init=None):
    r"""Log-domain-stabilised Sinkhorn on batched tensors (no autograd).

    Between two absorptions the iterations run on the absorbed kernel
    :math:`\tilde K_{ij} = e^{(\alpha_i + \beta_j - C_{ij})/\varepsilon}` as
    matrix-vector products (Schmitzer 2019): in exact arithmetic the iterates
    of :func:`log_iterations`, one BLAS pass per half-step (on the CPU with
    the compiled kernel: one pass per iteration, and the column sums
    :math:`u^\top K` it returns serve the marginal check).  Every
    ``check_every`` iterations the scalings are checked (one host
    synchronisation): absorbed into the potentials when they leave
    :math:`[e^{-\tau}, e^{\tau}]`, and a block that under/overflowed is rolled back
    and redone with exact log-sum-exp iterations.  ``tol=0`` without
    ``eps_scaling`` on an accelerator: no host synchronisation (absorption after
    every block on the device, denominators floored at the smallest normal
    number); on the CPU the checked loop runs instead (faster there).

    Parameters
    ----------
    a, b : tensor, shape=[B, n], [B, m]
    C : tensor, shape=[B, n, m]
    eps : float
    max_iter : int
        Iterations, ε-scaling stages included.
    tol : float
        Stop when the L1 column-marginal error is at most ``tol`` (0: fixed count).
    check_every : int
    eps_scaling : float in (0, 1), optional
        Start at ε = max(C) - min(C), one block of ``check_every`` per stage.
    init : tuple (alpha, beta), optional
        Warm start, absorbed convention :math:`P = e^{(\alpha_i+\beta_j-C_{ij})/\varepsilon}`.

    Returns
    -------
    alpha, beta : tensor, shapes [B, n], [B, m]
        Potentials after the last *row* update (rows of the plan exact).
    n_iter : int
    err : float
        L1 column-marginal violation at the last check (``inf`` when ``tol=0``:
        nothing is checked).
    """
    C = C.detach()
    a, b = a.detach(), b.detach()
    loga, logb = log(a), log(b)
    bt, at = b[:, None, :], a[:, None, :]
    tiny = torch.finfo(C.dtype).tiny
    tau = absorption_threshold(C.dtype)

    if init is None:
        alpha = torch.zeros_like(a)
        beta = torch.zeros_like(b)
    else:
        alpha, beta = (t.detach().clone() for t in init)

    schedule = [eps]
    if eps_scaling is not None:
        start = float(C.max() - C.min())
        schedule = []
        e = start
        while e > eps:
            schedule.append(e)
            e *= eps_scaling
        schedule.append(eps)

    n_iter = 0
    err = math.inf
    resume = None  # (kernel, u, v, uK) the first stage starts from
    host = host_fast(C)
    one_pass = host and _compiled is not None  # compiled iterations, u^T K carried along
    if init is None and not host:  # one exact iteration: no host synchronisation
        alpha, beta = log_iterations(alpha, beta, C, schedule[0], loga, logb, 1)
        n_iter = 1
    elif init is None:
        # The first iteration from zero potentials as scalings of exp(-C/eps) (the same
        # iterate, one matrix-vector pass per half-step); only if a column or a row of
        # that kernel under/overflows, the exact log-sum-exp iteration instead.
        K = absorbed_kernel(alpha, beta, C, schedule[0], tau)
        if one_pass:
            u, v, uK = compiled_iterations(torch.ones_like(at), K, at, bt, 1)
        else:
            (u, v), uK = scaling_iterations(torch.ones_like(at), K, at, bt, 1), None
        ok = torch.isfinite(u).all() & torch.isfinite(v).all()
        ok &= ~(((u <= tiny) & (at > 0)).any() | ((v <= tiny) & (bt > 0)).any())
        if bool(ok):
            resume = (K, u, v, uK)
        else:
            alpha, beta = log_iterations(alpha, beta, C, schedule[0], loga, logb, 1)
        n_iter = 1

    for stage, e in enumerate(schedule):
        final = stage == len(schedule) - 1
        budget = max_iter - n_iter if final else min(check_every, max_iter - n_iter)
        if resume is not None:
            (K, u, v, uK), resume = resume, None
        else:
            K = absorbed_kernel(alpha, beta, C, e, tau)
            u = torch.ones_like(at)
            v = torch.ones_like(bt)
            uK = None  # u^T K for the current u and K, when known (from the compiled kernel)
        done = 0
        while done < budget and tol == 0 and final and not host:  # fixed: stay on the device
            k = min(check_every, budget - done)
            u, v = scaling_iterations(u, K, at, bt, k, floor=tiny)
            alpha = alpha + e * torch.log(u[:, 0])
            beta = beta + e * torch.log(v[:, 0])
            u, v = torch.ones_like(at), torch.ones_like(bt)
            done += k
            n_iter += k
            if done < budget:
                K = absorbed_kernel(alpha, beta, C, e, tau)
        while done < budget:
            k = min(check_every, budget - done)
            u0, v0 = u, v
            if one_pass:  # one pass over K per iteration; returns u^T K for the final u
                u, v, uK = compiled_iterations(u, K, at, bt, k, uK)
            else:
                u, v = scaling_iterations(u, K, at, bt, k)
            # The column marginal costs one more pass over K (none after the compiled
            # kernel): only where it is used (a tolerance to test, or the error after
            # the last block).
            measure = final and (tol > 0 or done + k >= budget)
            if measure:  # column marginal of diag(u) K diag(v)
                col = v * (uK if one_pass else u @ K)
            else:
                col = bt
            bad_u = ~torch.isfinite(u) | ((u <= tiny) & (at > 0))
            bad_v = ~torch.isfinite(v) | ((v <= tiny) & (bt > 0)) | ~torch.isfinite(col)
            lu = torch.log(u.clamp_min(tiny)).abs().masked_fill(at == 0, 0)
            lv = torch.log(v.clamp_min(tiny)).abs().masked_fill(bt == 0, 0)
            stats = torch.stack([
                (bad_u.any() | bad_v.any()).to(C.dtype),
                torch.maximum(lu.max(), lv.max()),
                (col - bt).abs().sum(-1).max(),
            ]).tolist()  # one host synchronisation per block
            if stats[0]:
                # Under/overflow inside the block: redo it exactly in the log domain.
                alpha = alpha + e * torch.log(u0[:, 0])
                beta = beta + e * torch.log(v0[:, 0])
                alpha, beta = log_iterations(alpha, beta, C, e, loga, logb, k)
                K = absorbed_kernel(alpha, beta, C, e, tau)
                u = torch.ones_like(at)
                v = torch.ones_like(bt)
                uK = None
                err = float((K.sum(1) - b).abs().sum(1).max())
            else:
                err = stats[2] if measure else err
                if stats[1] > tau:
                    alpha = alpha + e * torch.log(u[:, 0])
                    beta = beta + e * torch.log(v[:, 0])
                    K = absorbed_kernel(alpha, beta, C, e, tau)
                    u = torch.ones_like(at)
                    v = torch.ones_like(bt)
                    uK = None
            done += k
            n_iter += k
            if final and err <= tol:
                break
        alpha = alpha + e * torch.log(u[:, 0])
        beta = beta + e * torch.log(v[:, 0])
    return alpha, beta, n_iter, err


# --------------------------------------------------------------------------- #
# Three marginals: SSPC's multi-assignment
# --------------------------------------------------------------------------- #
def multi_marginal_scalings(e_low, e_high, n_low, n_iters):
    r"""Scalings of the multi-assignment plan :math:`Q_{nmk} = E_{g(m)}[n,k]\,\alpha_{mk}\,\beta_{nk}\,\gamma_{nm}`.

    ``n_iters`` rounds of the three Sinkhorn projections onto the marginals
    :math:`\sum_n Q_{nmk} = N/K` (``alpha``, slot x anchor), :math:`\sum_m Q_{nmk} = 1`
    (``beta``, sample x anchor) and :math:`\sum_k Q_{nmk} = 1` (``gamma``, sample x
    slot).  The kernel depends on the slot only through its weight group
    (``e_low`` for the first ``n_low`` slots, ``e_high`` for the others, both
    [N, K]), so every marginal is a matrix product (three GEMMs per projection,
    no N x K x K tensor).  No host synchronisation.
    """
    N, K = e_low.shape
    dtype, dev = e_low.dtype, e_low.device
    alpha = torch.ones(K, K, dtype=dtype, device=dev)        # [slot, anchor]
    beta = torch.ones(N, K, dtype=dtype, device=dev)         # [sample, anchor]
    gamma = torch.ones(N, K, dtype=dtype, device=dev)        # [sample, slot]
    col_target = N / K
    for _ in range(n_iters):
        p_low, p_high = e_low * beta, e_high * beta
        # column: sum_n Q[n, m, k] = N / K  (uniform anchor usage in every slot)
        col = torch.cat([gamma[:, :n_low].T @ p_low, gamma[:, n_low:].T @ p_high], dim=0) * alpha
        alpha = alpha * (col_target / col)
        # slot: sum_m Q[n, m, k] = 1  (each anchor fills one slot per sample)
        slot = beta * (e_low * (gamma[:, :n_low] @ alpha[:n_low])
                       + e_high * (gamma[:, n_low:] @ alpha[n_low:]))
        beta = beta / slot
        p_low, p_high = e_low * beta, e_high * beta
        # row: sum_k Q[n, m, k] = 1  (each slot of a sample holds one anchor)
        row = gamma * torch.cat([p_low @ alpha[:n_low].T, p_high @ alpha[n_low:].T], dim=1)
        gamma = gamma / row
    return alpha, beta, gamma
