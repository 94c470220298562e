r"""Quasi-random normal draws for the models: scrambled Sobol nets, digitally shifted per item.

Used by :class:`~geoalign.models.QSMA` for the Monte Carlo estimate of its
expected losses over the posterior (the reparameterisation noise).
"""
from __future__ import annotations

import math

import torch

__all__ = ["scrambled_sobol_bits", "digitally_shifted_normal", "random_shifts", "sobol_normal"]

_SOBOL_BITS = 30  # torch's SobolEngine produces multiples of 2^-30 (exact in float64)
_UNIFORM_BITS = 23  # (b + 1/2) 2^-23 and 2u - 1 are exact in float32, and never 0 or 1


def scrambled_sobol_bits(n_points: int, dim: int, seed: int) -> torch.Tensor:
    r"""The first ``n_points`` Owen-scrambled Sobol points as 30-bit integers.

    Returns
    -------
    bits : int64 tensor, shape=[n_points, dim]
        Point ``k`` is :math:`u_k = \mathrm{bits}_k / 2^{30}`; with ``n_points = 2^m``
        the set is a :math:`(t, m, d)`-net in base 2.
    """
    engine = torch.quasirandom.SobolEngine(dim, scramble=True, seed=int(seed))
    return (engine.draw(n_points, dtype=torch.float64) * 2 ** _SOBOL_BITS).to(torch.int64)


def digitally_shifted_normal(bits: torch.Tensor, shifts: torch.Tensor,
                             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    r"""Normal quantiles :math:`\Phi^{-1}(u)` of digitally shifted copies of a point set.

    Copy ``i`` of the points is :math:`u_{ki} = (\mathrm{bits}_k \oplus s_i) / 2^{30}`
    (:math:`\oplus` = bitwise XOR per coordinate), truncated to 23 bits and moved
    to the centre of its cell.  A digital shift maps every elementary interval
    onto another one, so each copy of a :math:`(t, m, d)`-net is again a
    :math:`(t, m, d)`-net, and with :math:`s_i` uniform each point is uniform:
    a randomised QMC point set per copy at the cost of one XOR, no engine.

    Parameters
    ----------
    bits : int64 tensor, shape=[K, d]
        From :func:`scrambled_sobol_bits`.
    shifts : int64 tensor, shape=[n, d]
        One shift per copy, uniform in :math:`[0, 2^{30})`.

    Returns
    -------
    eps : tensor, shape=[K, n, d]
        :math:`\Phi^{-1}(u) = \sqrt2\,\mathrm{erfinv}(2u - 1)` (erfinv is vectorised,
        several times faster than ``ndtri`` on the CPU).
    """
    b = (bits[:, None, :] ^ shifts[None]) >> (_SOBOL_BITS - _UNIFORM_BITS)
    work = torch.float64 if dtype == torch.float64 else torch.float32
    two_u_minus_1 = (2 * b + 1).to(work) * 2.0 ** -_UNIFORM_BITS - 1.0
    return (math.sqrt(2.0) * torch.erfinv(two_u_minus_1)).to(dtype)


def random_shifts(n: int, dim: int, device=None, generator: torch.Generator | None = None):
    """``n`` uniform digital shifts in :math:`[0, 2^{30})^{dim}` (torch's generator unless given)."""
    return torch.randint(0, 2 ** _SOBOL_BITS, (n, dim), device=device, generator=generator)


def sobol_normal(n: int, n_samples: int, dim: int, seed: int, device=None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    r"""Quasi-random standard normal draws: one digitally shifted scrambled Sobol net per item.

    Parameters
    ----------
    n, n_samples, dim : int
        Items, samples per item (:math:`K`, best a power of two) and dimension.
    seed : int
        Seed of the Owen scramble and of the shifts.

    Returns
    -------
    eps : tensor, shape=[n, n_samples, dim]
        Item ``i`` gets the first ``K`` scrambled Sobol points, digitally shifted
        by its own random shift (:func:`digitally_shifted_normal`), so with
        ``K = 2^m`` every item's points form a :math:`(t, m, d)`-net: each
        coordinate hits each of the ``K`` strata of :math:`(0, 1)` exactly once.
    """
    bits = scrambled_sobol_bits(n_samples, dim, seed)
    gen = torch.Generator().manual_seed(int(seed))
    eps = digitally_shifted_normal(bits, random_shifts(n, dim, generator=gen), dtype)
    return eps.transpose(0, 1).to(device=device)
