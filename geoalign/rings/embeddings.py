"""Real embeddings of ring elements: lifts, random projections and DFT features."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import is_torch, to_torch
from .._validation import check_choice, check_int
from ._common import _check_modulus, _coerce, _pad_last

__all__ = ["centered_lift", "RandomProjection", "dft_features"]


_LIFTS = ("centered", "canonical")


def centered_lift(P: Any, n: int, dtype: Any = None):
    r"""Centered lift of coefficients to the representatives in :math:`(-n/2, n/2]`.

    .. math:: \ell(a) = a \bmod n \ \text{if}\ a \bmod n \le \lfloor n/2 \rfloor,
              \quad a \bmod n - n \ \text{otherwise}.

    Parameters
    ----------
    P : int array or tensor, shape=[..., L]
    n : int
        Modulus.
    dtype : optional
        Output float dtype (default float64; a NumPy dtype for arrays, a torch dtype for tensors).

    Returns
    -------
    lift : float, shape=[..., L]

    Notes
    -----
    Lipschitz constant: 1 with respect to the Euclidean norm of integer
    coefficient vectors, on every cell where no coefficient crosses the wrap
    point :math:`n/2 \to n/2+1` (there the lift jumps by :math:`n-1`).  For images
    over :math:`\mathbb{Z}_{256}` a pixel moving across 128/129 crosses it; use the
    ``"canonical"`` lift (:math:`[0, n)`, globally 1-Lipschitz on pixel values) in
    :class:`RandomProjection` / :func:`dft_features` when that matters.
    """
    return _lift(P, n, "centered", dtype)


def _lift(P: Any, n: int, lift: str, dtype: Any = None):
    n = _check_modulus(n)
    check_choice(lift, "lift", _LIFTS)
    (p,), xp, _ = _coerce({"P": P}, n)
    if lift == "centered":
        p = xp.where(p > n // 2, p - n, p)
    if xp is np:
        return p.astype(np.float64 if dtype is None else dtype)
    return p.to(xp.float64 if dtype is None else dtype)


@dataclass
class RandomProjection:
    r"""Fixed seeded Gaussian projection of the lifted coefficients into :math:`\mathbb{R}^d`.

    .. math:: f(P) = \tfrac{1}{\sqrt{d}}\, G\, \ell(P), \qquad G_{ij} \sim \mathcal{N}(0, 1),

    with :math:`G \in \mathbb{R}^{d \times L}` drawn from ``numpy.random.default_rng(seed)``
    and :math:`\ell` the centered (default) or canonical lift.  Johnson–Lindenstrauss:
    :math:`\mathbb{E}\|f(P)-f(P')\|^2 = \|\ell(P)-\ell(P')\|^2`.

    Parameters
    ----------
    n : int
        Modulus of the ring.
    length : int
        Number of coefficients ``L`` (shorter inputs are zero-padded; longer raise).
    dim : int
        Output dimension ``d``.
    seed : int
    lift : {"centered", "canonical"}

    Attributes
    ----------
    components_ : ndarray, shape=[dim, length]
        :math:`G/\sqrt{d}` (float64).
    lipschitz_ : float
        Exact Lipschitz constant of the linear part, :math:`\|G/\sqrt d\|_2` (largest
        singular value, :math:`\approx 1 + \sqrt{L/d}`); the whole map is
        ``lipschitz_``-Lipschitz in the lifted coefficients (see :func:`centered_lift`).

    Examples
    --------
    >>> f = RandomProjection(256, length=64, dim=16, seed=0)
    >>> f(np.zeros((3, 64), dtype=np.int64)).shape
    (3, 16)
    """

    n: int
    length: int
    dim: int
    seed: int = 0
    lift: str = "centered"

    def __post_init__(self):
        self.n = _check_modulus(self.n)
        self.length = check_int(self.length, "length", minimum=1)
        self.dim = check_int(self.dim, "dim", minimum=1)
        check_choice(self.lift, "lift", _LIFTS)
        rng = np.random.default_rng(self.seed)
        self.components_ = rng.standard_normal((self.dim, self.length)) / math.sqrt(self.dim)
        self.lipschitz_ = float(np.linalg.norm(self.components_, 2))
        self._cache: dict[tuple, Any] = {}

    def __call__(self, P: Any):
        """Embed ``P`` (shape=[..., L'], L' <= length) to shape=[..., dim], float64."""
        x = _lift(P, self.n, self.lift)
        if x.shape[-1] > self.length:
            raise ValueError(f"P has {x.shape[-1]} coefficients, more than length={self.length}")
        x = _pad_last(x, self.length)
        if is_torch(x):
            key = (str(x.device),)
            if key not in self._cache:
                self._cache[key] = to_torch(self.components_, device=x.device)
            return x @ self._cache[key].T
        return x @ self.components_.T


def dft_features(P: Any, n: int, n_freq: int, lift: str = "centered"):
    r"""Evaluation features: the lift evaluated at roots of unity (real and imaginary parts).

    .. math:: F_k(P) = \tfrac{1}{\sqrt{L}} \sum_{j=0}^{L-1} \ell(P)_j\, \omega^{jk},
              \quad \omega = e^{-2\pi i/L},\ k = 0..n_{freq}-1,

    i.e. :math:`L^{-1/2}\,\ell(P)(\omega^k)`; the output concatenates
    :math:`\operatorname{Re} F` then :math:`\operatorname{Im} F`.

    Parameters
    ----------
    P : int array or tensor, shape=[..., L]
    n : int
        Modulus.
    n_freq : int
        Number of frequencies, ``1 <= n_freq <= L//2 + 1`` (real input: higher
        frequencies are conjugates of these).
    lift : {"centered", "canonical"}

    Returns
    -------
    features : float64, shape=[..., 2*n_freq]

    Notes
    -----
    Lipschitz constant <= 1 in the lifted coefficients: the map is a block of the
    unitary DFT (:math:`|z|^2 = \operatorname{Re}^2 + \operatorname{Im}^2`, and
    distinct frequencies are orthogonal rows), so
    :math:`\|F(P)-F(P')\|_2 \le \|\ell(P)-\ell(P')\|_2`.
    """
    x = _lift(P, n, lift)
    L = x.shape[-1]
    n_freq = check_int(n_freq, "n_freq", minimum=1, maximum=L // 2 + 1)
    if is_torch(x):
        import torch

        F = torch.fft.rfft(x, dim=-1, norm="ortho")[..., :n_freq]
        return torch.cat([F.real, F.imag], dim=-1)
    F = np.fft.rfft(x, axis=-1, norm="ortho")[..., :n_freq]
    return np.concatenate([F.real, F.imag], axis=-1)
