r"""Symmetric positive-definite matrices :math:`\mathrm{SPD}(n)`.

Two metrics:

* ``metric="affine"`` (affine-invariant, :math:`\langle u, v\rangle_x =
  \operatorname{tr}(x^{-1} u x^{-1} v)`).  With any factor :math:`x = L L^\top`
  (we use the Cholesky factor, cheaper and better conditioned than
  :math:`x^{1/2}`; the metric is congruence invariant so the result is the same):

  .. math::

      \exp_x(v) = L \operatorname{expm}(L^{-1} v L^{-\top}) L^\top,\quad
      \log_x(y) = L \operatorname{logm}(L^{-1} y L^{-\top}) L^\top,\quad
      d(x, y) = \bigl\|\operatorname{logm}(L^{-1} y L^{-\top})\bigr\|_F.

* ``metric="log_euclidean"`` (pull-back of the Frobenius metric by
  :math:`\operatorname{logm}`):

  .. math::

      d(x, y) = \|\operatorname{logm} x - \operatorname{logm} y\|_F,\quad
      \exp_x(v) = \operatorname{expm}\bigl(\operatorname{logm} x + D\!\operatorname{logm}_x[v]\bigr),\quad
      \log_x(y) = D\!\operatorname{expm}_{\operatorname{logm} x}[\operatorname{logm} y - \operatorname{logm} x].

  The differentials use the Daleckii–Krein formula
  :math:`Df(A)[H] = U (F \circ U^\top H U) U^\top` with the divided differences
  :math:`F_{ij} = (f(\lambda_i) - f(\lambda_j)) / (\lambda_i - \lambda_j)`,
  computed with ``log1p``/``expm1`` so that close eigenvalues lose no digits.
  The weighted Fréchet mean is the closed form
  :math:`\operatorname{expm}(\sum_i w_i \operatorname{logm} x_i)`.

Both match geomstats' ``SPDAffineMetric`` and ``SPDLogEuclideanMetric``.
"""
from __future__ import annotations

import torch

from .._validation import check_choice, check_int
from .base import Manifold

__all__ = ["SPD", "sym", "sym_funcm"]


def sym(a: torch.Tensor) -> torch.Tensor:
    """Symmetric part :math:`(a + a^\\top)/2`."""
    return (a + a.mT) / 2


def sym_funcm(a: torch.Tensor, f) -> torch.Tensor:
    """Apply the scalar function ``f`` to the eigenvalues of the symmetric matrix ``a``."""
    lam, u = torch.linalg.eigh(sym(a))
    return (u * f(lam).unsqueeze(-2)) @ u.mT


def _congruence_inv(chol: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """:math:`L^{-1} y L^{-T}` for symmetric ``y`` (two triangular solves)."""
    z = torch.linalg.solve_triangular(chol, y, upper=False)
    z = torch.linalg.solve_triangular(chol, z.mT, upper=False)
    return sym(z)


def _log_divided_difference(lam: torch.Tensor) -> torch.Tensor:
    """F_ij = (log l_i - log l_j)/(l_i - l_j), F_ii = 1/l_i, stable for close eigenvalues."""
    li, lj = lam.unsqueeze(-1), lam.unsqueeze(-2)
    lo, hi = torch.minimum(li, lj), torch.maximum(li, lj)
    z = (hi - lo) / lo
    small = z < 1e-6
    z_safe = torch.where(small, torch.ones_like(z), z)
    ratio = torch.where(small, 1 - z / 2 + z * z / 3, torch.log1p(z_safe) / z_safe)  # log1p(z)/z
    return ratio / lo


def _exp_divided_difference(lam: torch.Tensor) -> torch.Tensor:
    """F_ij = (e^{l_i} - e^{l_j})/(l_i - l_j), F_ii = e^{l_i}, stable for close eigenvalues."""
    li, lj = lam.unsqueeze(-1), lam.unsqueeze(-2)
    lo = torch.minimum(li, lj)
    z = (li - lj).abs()
    small = z < 1e-6
    z_safe = torch.where(small, torch.ones_like(z), z)
    ratio = torch.where(small, 1 + z / 2 + z * z / 6, torch.expm1(z_safe) / z_safe)  # expm1(z)/z
    return torch.exp(lo) * ratio


def _daleckii_krein(u: torch.Tensor, f_div: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return sym(u @ (f_div * (u.mT @ h @ u)) @ u.mT)


def _tcoth(t: torch.Tensor) -> torch.Tensor:
    """:math:`t \\coth t = |t| + 2|t| / (e^{2|t|} - 1)` (even, >= 1, equal to 1 at t = 0)."""
    a = 2 * t.abs()
    return torch.where(a < 1e-8, torch.ones_like(a), a / 2 + a / torch.expm1(a))


def _whiten_all(x: torch.Tensor, chol_inv: torch.Tensor) -> torch.Tensor:
    r""":math:`L^{-1} x_i L^{-\top}` for all ``x`` (..., n, p, p) and ``chol_inv`` (..., p, p).

    Two GEMMs over the stacked points (rows :math:`x_i L^{-\top}`, transposed
    blockwise to :math:`L^{-1} x_i` since ``x_i`` is symmetric), instead of 2n small
    products.  The result is symmetric up to rounding (``eigh`` reads one triangle).
    """
    *b, n, p, _ = x.shape
    y = x.reshape(*b, n * p, p) @ chol_inv.mT
    y = y.reshape(*b, n, p, p).mT.reshape(*b, n * p, p)
    return (y @ chol_inv.mT).reshape(*b, n, p, p)


class _Frame:
    r"""Eigenvectors :math:`u_i` of the whitened points in the layouts the GEMMs need.

    ``ut`` (..., n, p, p): the :math:`u_i^\top`, contiguous (so ``ut.reshape(..., n p, p)``
    stacks them vertically for free); ``ucat`` (..., p, n p): :math:`[u_1 \cdots u_n]`.
    Then :math:`\sum_i u_i a_i = ` ``ucat @ a.reshape(..., n p, p)``, one GEMM of inner
    size :math:`np` instead of n small products and a reduction.
    """

    def __init__(self, u: torch.Tensor):
        *b, n, p, _ = u.shape
        self.u, self.n, self.p = u, n, p
        self.ut = u.mT.contiguous()
        self.ucat = u.movedim(-3, -2).reshape(*b, p, n * p)

    def sum_left(self, a: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_i u_i a_i` for ``a`` (..., n, p, p)."""
        return self.ucat @ a.reshape(*a.shape[:-3], self.n * self.p, self.p)

    def hessian(self, c: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_i u_i \bigl(c_i \circ (u_i^\top v\, u_i)\bigr) u_i^\top` (``c`` symmetric,
        carrying the weights): one GEMM, two batches of small products, one GEMM."""
        n, p = self.n, self.p
        utv = (self.ut.reshape(*self.ut.shape[:-3], n * p, p) @ v).reshape(self.ut.shape)
        y = c * (utv @ self.u)  # symmetric, so u_i y_i u_i^T = u_i (y_i u_i^T)
        return self.sum_left(y @ self.ut)


def _batched_cg(apply, b: torch.Tensor, rtol: torch.Tensor, max_iter: int, adaptive: bool):
    r"""Conjugate gradients for :math:`H v = b`, one independent solve per batch element.

    ``b`` (..., p, p); element ``k`` stops (and is frozen by masking) once its residual
    is at most ``rtol[k] * |b_k|_F``, so a batched call returns what a loop over the
    elements returns.  ``adaptive``: stop when every element has stopped (one
    host-device synchronisation per CG iteration); otherwise run ``max_iter`` iterations.
    """
    tiny = torch.finfo(b.dtype).tiny
    x = torch.zeros_like(b)
    r, p = b, b
    rr = (b * b).sum((-2, -1))
    target = rr * rtol * rtol
    active = rr > target
    for _ in range(max_iter):
        if adaptive and not bool(active.any()):
            break
        hp = apply(p)
        alpha = torch.where(active, rr / (p * hp).sum((-2, -1)).clamp_min(tiny), 0)
        x = x + alpha[..., None, None] * p
        r = r - alpha[..., None, None] * hp
        rr_new = (r * r).sum((-2, -1))
        beta = torch.where(active, rr_new / rr.clamp_min(tiny), 0)
        p = r + beta[..., None, None] * p
        rr = torch.where(active, rr_new, rr)
        active = active & (rr_new > target)
    return x


class SPD(Manifold):
    r"""Symmetric positive-definite ``n x n`` matrices.

    Parameters
    ----------
    n : int
        Matrix size (>= 1); points have shape ``(..., n, n)``.
    metric : {"affine", "log_euclidean"}
    validate : bool, default True

    Notes
    -----
    Membership: :math:`\max_{ij}|x_{ij} - x_{ji}| \le \mathrm{atol}\cdot\max(1, \max_{ij}|x_{ij}|)`
    (atol 1e-4 float32, 1e-7 float64) and a successful Cholesky factorisation
    (strict positive definiteness).  ``projx`` symmetrises and clamps the
    eigenvalues to at least :math:`\delta\,\max(1, \lambda_{\max})` with
    :math:`\delta` = 1e-10 (float64) or 1e-5 (float32).  ``proju`` symmetrises.
    """

    name = "SPD"

    def __init__(self, n: int, metric: str = "affine", validate: bool = True):
        super().__init__(validate=validate)
        self.n = check_int(n, "n", minimum=1)
        self.metric = check_choice(metric, "metric", ("affine", "log_euclidean"))
        self.point_shape = (self.n, self.n)
        self.dim = self.n * (self.n + 1) // 2

    def _repr_args(self) -> str:
        return f"n={self.n}, metric={self.metric!r}"

    @property
    def _karcher_newton(self) -> bool:
        """Whether :func:`frechet_mean` can use the Newton kernels below (affine metric)."""
        return self.metric == "affine"

    def _constraint(self) -> str:
        return "x = x^T and x positive definite"

    def _tangent_constraint(self) -> str:
        return "v = v^T"

    # kernels ----------------------------------------------------------------
    def _asym(self, a):
        scale = a.abs().amax(dim=(-2, -1)).clamp(min=1)
        return (a - a.mT).abs().amax(dim=(-2, -1)) / scale

    def _violation(self, x):
        viol = self._asym(x)
        _, info = torch.linalg.cholesky_ex(sym(x))
        return torch.where(info == 0, viol, torch.full_like(viol, float("inf")))

    def _tangent_violation(self, x, v):
        return self._asym(v) + torch.zeros_like(x[..., 0, 0])

    def _projx(self, x):
        delta = 1e-10 if x.dtype == torch.float64 else 1e-5
        lam, u = torch.linalg.eigh(sym(x))
        floor = delta * lam.amax(-1, keepdim=True).clamp(min=1)
        return sym((u * torch.maximum(lam, floor).unsqueeze(-2)) @ u.mT)

    def _proju(self, x, u):
        return sym(u) + torch.zeros_like(x)

    def _inner(self, x, u, v):
        if self.metric == "affine":
            chol = torch.linalg.cholesky(x)
            a, b = _congruence_inv(chol, sym(u)), _congruence_inv(chol, sym(v))
            return (a * b).sum((-2, -1))
        lam, q = torch.linalg.eigh(x)
        f_div = _log_divided_difference(lam)
        a, b = _daleckii_krein(q, f_div, sym(u)), _daleckii_krein(q, f_div, sym(v))
        return (a * b).sum((-2, -1))

    def _exp(self, x, v):
        if self.metric == "affine":
            chol = torch.linalg.cholesky(x)
            e = sym_funcm(_congruence_inv(chol, sym(v)), torch.exp)
            return sym(chol @ e @ chol.mT)
        lam, q = torch.linalg.eigh(x)
        logx = (q * torch.log(lam).unsqueeze(-2)) @ q.mT
        dlog = _daleckii_krein(q, _log_divided_difference(lam), sym(v))
        return sym_funcm(logx + dlog, torch.exp)

    def _log(self, x, y):
        if self.metric == "affine":
            chol = torch.linalg.cholesky(x)
            s = sym_funcm(_congruence_inv(chol, y), torch.log)
            return sym(chol @ s @ chol.mT)
        lam, q = torch.linalg.eigh(x)
        mu = torch.log(lam)  # logm x = q diag(mu) q^T: same eigenvectors as x
        diff = sym_funcm(y, torch.log) - (q * mu.unsqueeze(-2)) @ q.mT
        return _daleckii_krein(q, _exp_divided_difference(mu), diff)

    def _tangent_mean(self, m, x, w):
        r""":math:`\sum_i w_i \log_m(x_i) = L \bigl(\sum_i w_i \operatorname{logm}(L^{-1} x_i L^{-\top})\bigr) L^\top`.

        Affine metric: one Cholesky factor per mean and the congruence by
        :math:`L` once after the weighted sum (it is linear), instead of once per
        point; the same value as the generic ``sum_i w_i log_m(x_i)`` up to rounding.
        """
        if self.metric != "affine":
            return super()._tangent_mean(m, x, w)
        chol = torch.linalg.cholesky(m)
        s = sym_funcm(_congruence_inv(chol.unsqueeze(-3), x), torch.log)
        t = (w[..., None, None] * s).sum(-3)
        return sym(chol @ t @ chol.mT)

    # Karcher-Newton kernels (affine metric; used by frechet_mean) -----------
    def _karcher_state(self, m, x, w):
        r"""Whitened data at the mean ``m`` (``None``: the identity) and the tangent mean.

        With :math:`m = L L^\top` and :math:`L^{-1} x_i L^{-\top} = u_i \operatorname{diag}(\lambda_i) u_i^\top`
        (one batched ``eigh``), the whitened tangent mean is
        :math:`t = \sum_i w_i u_i \operatorname{diag}(\log\lambda_i) u_i^\top`; the tangent
        mean at ``m`` is :math:`L t L^\top` and its Riemannian norm :math:`\|t\|_F`.
        Returns ``(chol, frame, mu, t)`` with ``frame`` the :class:`_Frame` of the
        :math:`u_i` and ``mu = log(lambda)``.
        """
        if m is None:
            chol, white = None, x
        else:
            chol = torch.linalg.cholesky(m)
            eye = torch.eye(self.n, dtype=m.dtype, device=m.device)
            chol_inv = torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False)
            white = _whiten_all(x, chol_inv)
        lam, u = torch.linalg.eigh(white)
        mu = torch.log(lam)
        frame = _Frame(u)
        t = sym(frame.sum_left((w[..., :, None] * mu).unsqueeze(-1) * frame.ut))
        return chol, frame, mu, t

    def _newton_direction(self, frame, mu, w, t, rtol, max_iter, adaptive):
        r"""Solve :math:`\mathcal H v = t` for the Riemannian Newton step (whitened frame).

        The Hessian of :math:`\tfrac12\sum_i w_i d(\cdot, x_i)^2` at the whitened mean
        (the identity) acts on a symmetric ``v`` as

        .. math:: \mathcal H v = \sum_i w_i\, u_i \bigl(C_i \circ (u_i^\top v u_i)\bigr) u_i^\top,
            \qquad (C_i)_{jk} = \tau_{ijk} \coth \tau_{ijk},\quad
            \tau_{ijk} = \tfrac12 (\mu_{ij} - \mu_{ik})

        (the Jacobi-field operator :math:`\sqrt{-R}\coth\sqrt{-R}` of the symmetric
        space), symmetric with spectrum in :math:`[1, \max_{ijk} \tau\coth\tau]`, so
        conjugate gradients converge fast and :math:`\|v\| \le \|t\|`.
        """
        c = w[..., :, None, None] * _tcoth((mu.unsqueeze(-1) - mu.unsqueeze(-2)) / 2)
        return _batched_cg(lambda v: frame.hessian(c, v), t, rtol, max_iter, adaptive)

    def _whitened_exp(self, chol, v):
        r""":math:`\exp_m(L v L^\top) = L \operatorname{expm}(v) L^\top` (``chol`` None: identity)."""
        e = sym_funcm(v, torch.exp)
        return e if chol is None else sym(chol @ e @ chol.mT)

    def _dist(self, x, y):
        if self.metric == "affine":
            chol = torch.linalg.cholesky(x)
            lam = torch.linalg.eigvalsh(_congruence_inv(chol, y))
            return torch.linalg.vector_norm(torch.log(lam), dim=-1)
        d = sym_funcm(x, torch.log) - sym_funcm(y, torch.log)
        return torch.linalg.matrix_norm(d)

    def _random(self, shape, gen, dtype, scale: float = 0.5):
        g = torch.randn(shape + (self.n, self.n), generator=gen, dtype=dtype)
        return sym_funcm(scale * sym(g), torch.exp)

    def _closed_form_mean(self, x, w):
        if self.metric != "log_euclidean":
            return None
        logs = sym_funcm(x, torch.log)
        return sym_funcm((w[..., None, None] * logs).sum(-3), torch.exp)

    def _initial_mean(self, x, w):
        # the log-Euclidean mean: close to the affine-invariant mean, always SPD
        logs = sym_funcm(x, torch.log)
        return sym_funcm((w[..., None, None] * logs).sum(-3), torch.exp)
