r"""Entropic optimal transport: log-domain Sinkhorn, batched, on any torch device.

For marginals :math:`a \in \mathbb{R}_+^n`, :math:`b \in \mathbb{R}_+^m` of equal
mass and a cost :math:`C \in \mathbb{R}^{n \times m}`, :func:`sinkhorn` solves

.. math::

    \mathrm{OT}_\varepsilon(a, b) = \min_{P \mathbf 1 = a,\; P^\top \mathbf 1 = b}
    \langle C, P\rangle + \varepsilon\, \mathrm{KL}(P \,\|\, a \otimes b),

whose solution is :math:`P_{ij} = a_i b_j \exp((f_i + g_j - C_{ij})/\varepsilon)`
with dual potentials :math:`f, g` (so that
:math:`\mathrm{OT}_\varepsilon = \langle a, f\rangle + \langle b, g\rangle`).

Algorithm (:func:`geoalign.ot._core.solve`, the Sinkhorn core shared with the
divergence, the barycentres, QSMA and SSPC).  The potentials are kept in the
log domain, so nothing under- or overflows at small ``reg``.  Between two
absorptions the iterations run on the *absorbed* kernel
:math:`\tilde K_{ij} = \exp((\alpha_i + \beta_j - C_{ij})/\varepsilon)`
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
fixed-iteration solve runs the checked loop instead (no kernel rebuilt per
block: faster there), and for NumPy or CPU tensors in float32/float64 the
iterations run in the optional compiled kernel ``geoalign._sinkhorn``: one
pass over the kernel per iteration, the column sums :math:`u^\top K` of the
next update accumulated during the row update (NumPy's BLAS, two passes, when
the extension is not built; the same iterates up to rounding).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from .._validation import check_array, check_int, check_nonnegative_scalar, check_positive_scalar
from .._warnings import ConvergenceWarning
from . import _common
from ._core import log as _log
from ._core import solve  # noqa: F401  (the solver of this module: re-exported)

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
