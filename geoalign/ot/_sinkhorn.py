r"""Entropic optimal transport: log-domain Sinkhorn, batched, on any torch device.

For marginals :math:`a \in \mathbb{R}_+^n`, :math:`b \in \mathbb{R}_+^m` of equal
mass and a cost :math:`C \in \mathbb{R}^{n \times m}`, :func:`sinkhorn` solves

.. math::

    \mathrm{OT}_\varepsilon(a, b) = \min_{P \mathbf 1 = a,\; P^\top \mathbf 1 = b}
    \langle C, P\rangle + \varepsilon\, \mathrm{KL}(P \,\|\, a \otimes b),

whose solution is :math:`P_{ij} = a_i b_j \exp((f_i + g_j - C_{ij})/\varepsilon)`
with dual potentials :math:`f, g` (so that
:math:`\mathrm{OT}_\varepsilon = \langle a, f\rangle + \langle b, g\rangle`).

Algorithm.  The potentials are kept in the log domain, so nothing under- or
overflows at small ``reg``.  Between two absorptions the iterations run on the
*absorbed* kernel :math:`\tilde K_{ij} = \exp((\alpha_i + \beta_j - C_{ij})/\varepsilon)`
as matrix-vector products (Schmitzer 2019, "log-domain stabilisation with
absorption"): in exact arithmetic these are the same iterates as the
log-sum-exp updates, but one BLAS pass per half-step instead of an
exponential of the whole matrix.  Every ``check_every`` iterations the scalings
are checked on the host (the only synchronisations on a GPU): they are absorbed
into the potentials when they grow, and if anything under/overflowed the
block is rolled back and redone with exact log-sum-exp updates.  With ``tol=0``
(a fixed number of iterations) the solver never waits for the host: the
scalings are absorbed on the device after every block, whatever their size,
and their denominators are floored at the smallest normal number instead of
being rolled back.  On the CPU, where reading a value waits for nothing, the
fixed-iteration solve runs the checked loop instead (NumPy-BLAS products, no
kernel rebuilt per block: faster there).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._validation import check_array, check_int, check_nonnegative_scalar, check_positive_scalar
from .._warnings import ConvergenceWarning
from . import _common

__all__ = ["SinkhornResult", "sinkhorn"]


@dataclass
class SinkhornResult:
    r"""Solution of an entropic transport problem (see :func:`sinkhorn`).

    Attributes
    ----------
    plan : array, shape=[n, m] or [B, n, m]
        Transport plan :math:`P` (row marginals exact, column marginals within
        ``marginal_error``).
    value : float or array, shape=[] or [B]
        Transport cost :math:`\langle C, P\rangle` (what POT's ``sinkhorn2``
        returns).  For tensors its gradient w.r.t. ``C`` is ``plan``.
    entropic_value : float or array, shape=[] or [B]
        :math:`\langle C, P\rangle + \varepsilon\,\mathrm{KL}(P\|a\otimes b)
        = \langle a, f\rangle + \langle b, g\rangle`; its gradient w.r.t. ``C``
        is ``plan`` and w.r.t. ``a``, ``b`` the potentials (envelope theorem).
    potentials : tuple (f, g), shapes [n], [m] (or [B, n], [B, m])
        Dual potentials, :math:`P_{ij} = a_i b_j e^{(f_i + g_j - C_{ij})/\varepsilon}`.
    n_iter : int
        Sinkhorn iterations done (one iteration = a column and a row update).
    converged : bool or None
        ``marginal_error <= tol`` for every problem of the batch; ``None`` with
        ``tol=0`` (a fixed number of iterations was asked for: nothing was tested).
    marginal_error : float or tensor
        Largest L1 violation :math:`\|P^\top\mathbf 1 - b\|_1` over the batch.  With
        ``tol=0`` and tensor inputs a 0-dim tensor on the device, so that the
        solver does not wait for it (``float()`` reads it).
    reg : float
        The regularisation :math:`\varepsilon` used.
    """

    plan: Any
    value: Any
    entropic_value: Any
    potentials: tuple
    n_iter: int
    converged: bool | None
    marginal_error: Any
    reg: float


# --------------------------------------------------------------------------- #
# Core solver on batched tensors (used by the barycentres as well).
# --------------------------------------------------------------------------- #
def _log(w: torch.Tensor) -> torch.Tensor:
    return torch.log(w)  # log 0 = -inf: zero-mass points get potential -inf (no transport)


def _exact_iterations(alpha, beta, C, eps, loga, logb, k):
    """``k`` exact log-sum-exp Sinkhorn iterations (column then row update)."""
    for _ in range(k):
        beta = eps * logb - eps * torch.logsumexp((alpha[:, :, None] - C) / eps, dim=1)
        alpha = eps * loga - eps * torch.logsumexp((beta[:, None, :] - C) / eps, dim=2)
    return alpha, beta


def _kernel(alpha, beta, C, eps, tau):
    """Absorbed kernel; entries below tiny*e^(2 tau) are set to 0.

    Their contribution to the plan is below tiny*e^(4 tau) (negligible), and
    keeping them would make every later product a subnormal number, which x86
    CPUs process up to 100x slower.
    """
    K = torch.add(alpha[:, :, None], beta[:, None, :]).sub_(C).div_(eps).exp_()  # one n x m buffer
    floor = torch.finfo(C.dtype).tiny * math.exp(2 * tau)
    return torch.nn.functional.threshold_(K, floor, 0.0)  # K <= floor -> 0, in place


# On the CPU a "host synchronisation" costs nothing (the values already live in host
# memory), so fixed-iteration solves there take the checked NumPy-BLAS loop, which is faster
# (benchmark `sinkhorn` of benchmarks/run.py); on accelerators they take the sync-free loop.
# Tests switch this off to count the synchronisations of the device-generic code on the CPU.
_HOST_FAST_PATH = True


def _host_fast(K) -> bool:
    return _HOST_FAST_PATH and K.device.type == "cpu"


_CHUNK_BYTES = 1 << 19  # about half the per-core L2 cache of current x86 CPUs


def _scaling_block(u, K, at, bt, k):
    r"""``k`` Sinkhorn iterations :math:`v = b / (u K)`, :math:`u = a / (v K^\top)` on row vectors.

    Each iteration reads the kernel twice (the memory-bandwidth floor).  On the
    CPU, float32/float64 products go through NumPy's BLAS on views of the same
    memory (no copy): its vector x matrix kernels ran 1.3-1.7x faster than
    torch's batched products here, and batches of small problems run chunk by
    chunk from cache (3-4x faster than streaming the whole batch every
    iteration); see the ``sinkhorn`` benchmark of benchmarks/run.py.
    """
    if _host_fast(K) and K.dtype in (torch.float32, torch.float64):
        Kn, an, bn, u0 = K.numpy(), at.numpy(), bt.numpy(), u.numpy()
        KTn = Kn.transpose(0, 2, 1)
        # Batches run in chunks of about _CHUNK_BYTES of kernel, each chunk all k
        # iterations while its kernels stay in cache (the problems are independent).
        c = max(1, _CHUNK_BYTES // max(1, Kn[0].nbytes))
        us, vs = [], []
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # checked by the caller
            for s in range(0, Kn.shape[0], c):
                un, Ks, KTs, a_s, b_s = u0[s:s + c], Kn[s:s + c], KTn[s:s + c], an[s:s + c], bn[s:s + c]
                for _ in range(k):
                    vn = b_s / (un @ Ks)
                    un = a_s / (vn @ KTs)
                us.append(un)
                vs.append(vn)
        if len(us) > 1:
            return torch.from_numpy(np.concatenate(us)), torch.from_numpy(np.concatenate(vs))
        return torch.from_numpy(us[0]), torch.from_numpy(vs[0])
    for _ in range(k):
        v = bt / (u @ K)
        u = at / (v @ K.transpose(1, 2))
    return u, v


def solve(a, b, C, eps, max_iter, tol, check_every=10, eps_scaling=None, init=None):
    r"""Run log-domain Sinkhorn on batched tensors (no autograd).

    ``tol=0`` without ``eps_scaling``: no host synchronisation (see the module docstring).

    Parameters
    ----------
    a, b : tensor, shape=[B, n], [B, m]
    C : tensor, shape=[B, n, m]
    init : tuple (alpha, beta), optional
        Warm start in the absorbed convention :math:`P = e^{(\alpha_i+\beta_j-C_{ij})/\varepsilon}`.

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
    loga, logb = _log(a), _log(b)
    # Scalings are row vectors: torch's batched row-vector x matrix products are several
    # times faster on the CPU than matrix x column-vector ones.
    bt, at = b[:, None, :], a[:, None, :]
    tiny = torch.finfo(C.dtype).tiny
    # Absorb when a scaling leaves [e^-tau, e^tau] (an eighth of the exponent range).
    tau = 0.125 * math.log(torch.finfo(C.dtype).max)

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
    resume = None  # (kernel, u, v) the first stage starts from
    host = _host_fast(C)
    if init is None and not host:  # one exact iteration: no host synchronisation
        alpha, beta = _exact_iterations(alpha, beta, C, schedule[0], loga, logb, 1)
        n_iter = 1
    elif init is None:
        # The first iteration from zero potentials as scalings of exp(-C/eps) (the same
        # iterate, one matrix-vector pass per half-step); only if a column or a row of
        # that kernel under/overflows, the exact log-sum-exp iteration instead.
        K = _kernel(alpha, beta, C, schedule[0], tau)
        u, v = _scaling_block(torch.ones_like(at), K, at, bt, 1)
        ok = torch.isfinite(u).all() & torch.isfinite(v).all()
        ok &= ~(((u <= tiny) & (at > 0)).any() | ((v <= tiny) & (bt > 0)).any())
        if bool(ok):
            resume = (K, u, v)
        else:
            alpha, beta = _exact_iterations(alpha, beta, C, schedule[0], loga, logb, 1)
        n_iter = 1

    for stage, e in enumerate(schedule):
        final = stage == len(schedule) - 1
        budget = max_iter - n_iter if final else min(check_every, max_iter - n_iter)
        if resume is not None:
            (K, u, v), resume = resume, None
        else:
            K = _kernel(alpha, beta, C, e, tau)
            u = torch.ones_like(at)
            v = torch.ones_like(bt)
        done = 0
        while done < budget and tol == 0 and final and not host:  # fixed: stay on the device
            k = min(check_every, budget - done)
            for _ in range(k):
                v = bt / (u @ K).clamp_min(tiny)
                u = at / (v @ K.transpose(1, 2)).clamp_min(tiny)
            alpha = alpha + e * torch.log(u[:, 0])
            beta = beta + e * torch.log(v[:, 0])
            u, v = torch.ones_like(at), torch.ones_like(bt)
            done += k
            n_iter += k
            if done < budget:
                K = _kernel(alpha, beta, C, e, tau)
        while done < budget:
            k = min(check_every, budget - done)
            u0, v0 = u, v
            u, v = _scaling_block(u, K, at, bt, k)
            # The column marginal costs one more pass over K: only where it is used (a
            # tolerance to test, or the error after the last block).
            measure = final and (tol > 0 or done + k >= budget)
            col = v * (u @ K) if measure else bt  # column marginal of diag(u) K diag(v)
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
                alpha, beta = _exact_iterations(alpha, beta, C, e, loga, logb, k)
                K = _kernel(alpha, beta, C, e, tau)
                u = torch.ones_like(at)
                v = torch.ones_like(bt)
                err = float((K.sum(1) - b).abs().sum(1).max())
            else:
                err = stats[2] if measure else err
                if stats[1] > tau:
                    alpha = alpha + e * torch.log(u[:, 0])
                    beta = beta + e * torch.log(v[:, 0])
                    K = _kernel(alpha, beta, C, e, tau)
                    u = torch.ones_like(at)
                    v = torch.ones_like(bt)
            done += k
            n_iter += k
            if final and err <= tol:
                break
        alpha = alpha + e * torch.log(u[:, 0])
        beta = beta + e * torch.log(v[:, 0])
        if n_iter >= max_iter and not final:
            # Out of iterations during eps-scaling: finish with the target eps.
            continue
    return alpha, beta, n_iter, err


def finalize(a, b, C, eps, alpha, beta, zero_mass=None):
    r"""One differentiable row update from detached potentials (envelope theorem).

    Returns plan, transport cost, entropic value and the potentials (f, g) in
    the :math:`a \otimes b` convention.  Gradients flow into ``C`` (and ``a``)
    only through this last step.  ``zero_mass``: whether ``b`` has zero entries
    (``None``: look, one host synchronisation; ``"device"``: handle them
    without looking, at the cost of one more log-sum-exp pass).
    """
    beta = beta.detach()
    differentiable = torch.is_grad_enabled() and (C.requires_grad or a.requires_grad)
    if differentiable:
        z = (beta[:, None, :] - C) / eps
        lse = torch.logsumexp(z, dim=2)
        plan = a[:, :, None] * torch.exp(z - lse[:, :, None])
    else:  # the same log-sum-exp in place: one n x m buffer instead of four
        z = torch.sub(beta[:, None, :], C).div_(eps)
        zmax = z.amax(2, keepdim=True)
        s = z.sub_(zmax).exp_().sum(2)
        lse = zmax[:, :, 0] + torch.log(s)
        plan = z.mul_((a / s)[:, :, None])
    f = -eps * lse
    logb = _log(b.detach())
    g = beta - eps * logb
    if zero_mass is None:
        zero_mass = bool((b == 0).any())
    if zero_mass:  # zero-mass columns: potential from the c-transform
        alpha = (f + eps * _log(a)).detach()
        g_ct = -eps * torch.logsumexp((alpha[:, :, None] - C.detach()) / eps, dim=1)
        g = torch.where(b > 0, g, g_ct)
    g = g.detach()
    if differentiable:
        value = (C * plan.detach()).sum((1, 2))
    else:  # <C, P> as a BLAS dot product, no n x m temporary
        B = C.shape[0]
        value = (C.reshape(B, 1, -1) @ plan.reshape(B, -1, 1)).reshape(B)
    entropic = (a * f).sum(1) + (b * g).sum(1)
    return plan, value, entropic, f, g


def _validate_cost(C, finite=True):
    C = check_array(C, "C", ndim=(2, 3), allow_empty=False, finite=finite)
    if 0 in tuple(C.shape):
        raise ValueError(f"C must not be empty, got shape {tuple(C.shape)}")
    return C


def sinkhorn(a, b, C, reg, max_iter=1000, tol=1e-9, eps_scaling=None, check_every=10,
             warn=True, device=None, *, validate=True):
    r"""Entropic optimal transport by log-domain Sinkhorn iterations.

    Solves :math:`\min_{P\mathbf 1 = a, P^\top \mathbf 1 = b} \langle C, P\rangle
    + \varepsilon\,\mathrm{KL}(P\|a\otimes b)` for one cost matrix or a batch of
    them.  The iterates are those of POT's ``ot.sinkhorn(method="sinkhorn_log")``
    (column update, then row update, from zero potentials), computed with
    absorbed kernels (see the module docstring), so the method is stable down to
    ``reg = 1e-4`` on costs in [0, 1].

    Parameters
    ----------
    a : array-like or None, shape=[n] or [B, n]
        Source marginal (``None``: uniform).  Non-negative.
    b : array-like or None, shape=[m] or [B, m]
        Target marginal, same total mass as ``a``.
    C : array-like, shape=[n, m] or [B, n, m]
        Cost matrices.  A batch shares ``a``/``b`` of shape [n]/[m] or has its own.
    reg : float
        :math:`\varepsilon > 0`, in the units of ``C``.
    max_iter : int
        Maximum number of iterations (ε-scaling stages included).
    tol : float
        Stop when :math:`\|P^\top\mathbf 1 - b\|_1 \le` ``tol`` for all problems;
        ``tol=0`` runs exactly ``max_iter`` iterations and never waits for the
        device (with ``validate=False`` and no ``eps_scaling``, the call makes no
        host synchronisation at all; counted in ``tests/test_syncs.py``).
    eps_scaling : float in (0, 1), optional
        Start at ε = max(C) - min(C) and multiply by this factor (``check_every``
        iterations per stage) down to ``reg``: faster for small ``reg``.
    check_every : int
        Iterations between convergence checks (host synchronisations); with
        ``tol=0``, between absorptions of the scalings.
    warn : bool
        Emit :class:`~geoalign._warnings.ConvergenceWarning` if ``tol > 0`` is not reached.
    device : str or torch.device, optional
        Where to compute NumPy inputs (tensors are used where they are).
    validate : bool, default True
        Check the values of the inputs (no NaN/Inf in ``C``; marginals
        non-negative, of positive and equal mass): a few host synchronisations.
        ``False`` trusts them (shapes and devices are still checked), for
        training loops.

    Returns
    -------
    SinkhornResult
        ``plan``, ``value``, ``entropic_value``, ``potentials``, ``n_iter``,
        ``converged``, ``marginal_error`` — NumPy for NumPy inputs, tensors
        (differentiable w.r.t. ``C``, ``a``) for tensor inputs.

    Examples
    --------
    >>> import numpy as np
    >>> C = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> res = sinkhorn(None, None, C, reg=0.01)
    >>> np.round(res.plan, 6)
    array([[0.5, 0. ],
           [0. , 0.5]])
    """
    eps = check_positive_scalar(reg, "reg")
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    tol = check_nonnegative_scalar(tol, "tol")
    check_every = check_int(check_every, "check_every", minimum=1)
    if eps_scaling is not None:
        eps_scaling = check_positive_scalar(eps_scaling, "eps_scaling")
        if eps_scaling >= 1:
            raise ValueError(f"eps_scaling must be in (0, 1), got {eps_scaling}")
    C = _validate_cost(C, finite=validate)
    ref = _common.reference(C, a, b)
    dev = _common.device_for(a=a, b=b, C=C)
    if device is not None:
        if ref is not None and torch.device(device) != dev:
            raise ValueError(f"device={device!r} differs from the tensors' device {dev}")
        dev = torch.device(device)
    dtype = _common.compute_dtype(C, a, b)
    batched = C.ndim == 3
    Ct = _common.as_tensor(C, dev, dtype)
    if not batched:
        Ct = Ct[None]
    B, n, m = Ct.shape
    at = _common.marginal(a, "a", n, B, batched, dev, dtype, validate=validate)
    bt = _common.marginal(b, "b", m, B, batched, dev, dtype, validate=validate)
    if validate:
        _common.check_same_mass(at, bt)

    alpha, beta, n_iter, _ = solve(at, bt, Ct, eps, max_iter, tol, check_every, eps_scaling)
    zero_mass = False if b is None else (None if validate else "device")
    plan, value, entropic, f, g = finalize(at, bt, Ct, eps, alpha, beta, zero_mass)
    err = (plan.detach().sum(1) - bt).abs().sum(1).max()
    if tol > 0 or ref is None:  # tol=0 with tensors: left on the device, not waited for
        err = float(err)
    converged = err <= tol if tol > 0 else None
    if warn and tol > 0 and not converged:
        warnings.warn(
            f"sinkhorn did not converge: marginal error {err:.3g} > tol={tol:g} after "
            f"{n_iter} iterations (reg={eps:g}); raise max_iter or use eps_scaling",
            ConvergenceWarning, stacklevel=2)
    if not batched:
        plan, value, entropic, f, g = plan[0], value[0], entropic[0], f[0], g[0]
    out = _common.output
    return SinkhornResult(
        plan=out(plan, ref), value=out(value, ref), entropic_value=out(entropic, ref),
        potentials=(out(f, ref), out(g, ref)), n_iter=n_iter, converged=converged,
        marginal_error=err, reg=eps)
