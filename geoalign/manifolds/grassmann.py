r"""The Grassmannian :math:`\mathrm{Gr}(n, p)` of p-dimensional subspaces of :math:`\mathbb{R}^n`.

Points are **Stiefel frames**: ``n x p`` matrices :math:`X` with
:math:`X^\top X = I_p`, representing the subspace :math:`\operatorname{span}(X)`
(any :math:`XQ`, :math:`Q \in O(p)`, is the same point).  Tangent vectors are
horizontal: :math:`X^\top V = 0`.  The metric is the canonical one of Edelman,
Arias & Smith (1998), :math:`\langle U, V\rangle_X = \operatorname{tr}(U^\top V)`,
so that

.. math::

    d(X, Y) = \Bigl(\sum_i \theta_i^2\Bigr)^{1/2},

with :math:`\theta_i` the principal angles between the subspaces.

geomstats' ``Grassmannian(n, p)`` stores ``n x n`` projectors
:math:`P = XX^\top` with the Frobenius metric, whose distances are
:math:`\sqrt{2}` times ours (the tangent vector :math:`V` at :math:`X` becomes
:math:`VX^\top + XV^\top`, of norm :math:`\sqrt{2}\|V\|_F`);
:mod:`geoalign.manifolds.geomstats_interop` converts points and tangents.

Formulas:

* :math:`\exp_X(V) = XW\cos(\Sigma)W^\top + U\sin(\Sigma)W^\top` with the thin
  SVD :math:`V = U\Sigma W^\top`;
* :math:`\log_X(Y)`: align the frame of :math:`Y` by Procrustes
  (:math:`Y_* = Y B A^\top` where :math:`X^\top Y = A S B^\top`, making
  :math:`X^\top Y_*` symmetric PSD), take the thin SVD
  :math:`(I - XX^\top)Y_* = Q\,\operatorname{diag}(\sin\theta)R^\top` and return
  :math:`Q\,\operatorname{diag}(\theta) R^\top`, with
  :math:`\theta = \operatorname{atan2}(\sin\theta, \cos\theta)` and
  :math:`\cos\theta_i = \|X^\top Y_* r_i\|` (``atan2`` keeps full accuracy for
  angles near 0 and near :math:`\pi/2`);
* ``geodesic(X, Y, 1)`` returns the frame :math:`Y_*` — the same subspace as
  :math:`Y`, not necessarily the same frame.

Cut locus: when a principal angle equals :math:`\pi/2` the logarithm is not
unique; the SVDs above pick one minimizing geodesic (no error is raised).
"""
from __future__ import annotations

import torch

from .._validation import check_int
from .base import Manifold

__all__ = ["Grassmann"]


def _svd_thin(a):
    return torch.linalg.svd(a, full_matrices=False)


class Grassmann(Manifold):
    r"""Grassmann manifold of ``p``-planes in :math:`\mathbb{R}^n`, as ``n x p`` frames.

    Parameters
    ----------
    n : int
        Ambient dimension.
    p : int
        Subspace dimension, ``1 <= p <= n``.
    validate : bool, default True

    Notes
    -----
    Membership: :math:`\max_{ij} |(X^\top X - I)_{ij}| \le` atol (1e-4
    float32, 1e-7 float64).  Tangent vectors: :math:`\max |X^\top V| \le`
    atol :math:`\cdot\max(1, \max|V|)`.  ``projx`` maps a full-rank ``n x p``
    matrix to its polar factor :math:`UV^\top` (the closest frame in Frobenius
    norm; rotation-equivariant).  ``proju(X, U) = U - XX^\top U``.
    """

    name = "Grassmann"

    def __init__(self, n: int, p: int, validate: bool = True):
        super().__init__(validate=validate)
        self.n = check_int(n, "n", minimum=1)
        self.p = check_int(p, "p", minimum=1, maximum=self.n)
        self.point_shape = (self.n, self.p)
        self.dim = self.p * (self.n - self.p)

    def _repr_args(self) -> str:
        return f"n={self.n}, p={self.p}"

    def _constraint(self) -> str:
        return "X^T X = I_p"

    def _tangent_constraint(self) -> str:
        return "X^T V = 0"

    # kernels ----------------------------------------------------------------
    def _violation(self, x):
        eye = torch.eye(self.p, dtype=x.dtype, device=x.device)
        return (x.mT @ x - eye).abs().amax(dim=(-2, -1))

    def _tangent_violation(self, x, v):
        scale = v.abs().amax(dim=(-2, -1)).clamp(min=1)
        return (x.mT @ v).abs().amax(dim=(-2, -1)) / scale

    def _inner(self, x, u, v):
        return (u * v).sum((-2, -1)) + torch.zeros_like(x[..., 0, 0])

    def _projx(self, x):
        u, _, vh = _svd_thin(x)
        return u @ vh

    def _proju(self, x, u):
        return u - x @ (x.mT @ u)

    def _exp(self, x, v):
        x, v = torch.broadcast_tensors(x, v)
        u, s, wh = _svd_thin(v)
        w = wh.mT
        y = (x @ w) * torch.cos(s).unsqueeze(-2) @ wh + u * torch.sin(s).unsqueeze(-2) @ wh
        return y

    def _align(self, x, y):
        """Procrustes-aligned frame of span(y): X^T Y_* symmetric PSD."""
        a, _, bh = _svd_thin(x.mT @ y)
        return y @ (bh.mT @ a.mT)

    def _log(self, x, y):
        x, y = torch.broadcast_tensors(x, y)
        ys = self._align(x, y)
        h = ys - x @ (x.mT @ ys)
        q, sin_t, rh = _svd_thin(h)
        cos_t = torch.linalg.vector_norm(x.mT @ ys @ rh.mT, dim=-2)
        theta = torch.atan2(sin_t, cos_t)
        return (q * theta.unsqueeze(-2)) @ rh

    def _dist(self, x, y):
        x, y = torch.broadcast_tensors(x, y)
        cos_t = torch.linalg.svdvals(x.mT @ y)  # descending
        sin_t = torch.linalg.svdvals(y - x @ (x.mT @ y))  # descending -> pairs with ascending cos
        # (I - XX^T)Y has at most min(p, n - p) nonzero singular values; pad/truncate to p
        sin_t = sin_t[..., : self.p]
        theta = torch.atan2(sin_t.flip(-1), cos_t)
        return torch.linalg.vector_norm(theta, dim=-1)

    def _random(self, shape, gen, dtype):
        g = torch.randn(shape + (self.n, self.p), generator=gen, dtype=dtype)
        q, r = torch.linalg.qr(g)
        # sign fix makes the frame Haar distributed on the Stiefel manifold
        sign = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
        return q * torch.where(sign == 0, torch.ones_like(sign), sign).unsqueeze(-2)

    def _initial_mean(self, x, w):
        # chordal (projection) mean: top-p eigenvectors of sum_i w_i X_i X_i^T
        proj = (w[..., None, None] * (x @ x.mT)).sum(-3)
        _, vecs = torch.linalg.eigh(proj)
        return vecs[..., -self.p:]
