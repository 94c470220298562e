r"""The product kernels of :class:`~geoalign.rings.PolyRing`: exact limb-split float64 FFT,
schoolbook, and the optional compiled kernel ``geoalign._ringmul`` (see the exactness argument
in :mod:`geoalign.rings.ring`)."""
from __future__ import annotations

import math

import numpy as np

from .._backend import namespace, torch_module
from ._common import _batch_shape, _reduce

__all__ = ["HAVE_COMPILED_KERNEL", "fft_error_bound"]


try:  # optional compiled kernel (built by `pip install` where a C compiler exists)
    from .. import _ringmul
except ImportError:  # pragma: no cover - depends on the build
    _ringmul = None

_EPS = 2.0**-53
_SAFE_ERROR = 0.125  # 4x below the 1/2 that rounding tolerates
_MAGIC = 6755399441055744.0  # 1.5 * 2^52: adding it rounds |x| < 2^51 to an integer in the low bits
_MAGIC_INT = int(np.float64(_MAGIC).view(np.int64))
_BLOCK_ELEMENTS = 1 << 17  # float64 values per operand per block (1 MiB): stays in the L2 cache
_DIRECT_MAX_LENGTH = 16  # schoolbook product when the shorter factor is at most this long
_SIMD_MAX_MODULUS = 1 << 16  # the 16-bit compiled kernel computes modulo 2^16
_SIMD_MAX_WORK = 1 << 18  # L_P * L_Q up to which the compiled schoolbook beats the FFT (measured: 512 x 512)

#: True if the compiled kernel ``geoalign._ringmul`` (``PolyRing.mul(method="simd")``) is built.
HAVE_COMPILED_KERNEL = _ringmul is not None


def fft_error_bound(n_limbs: int, len_a: int, len_b: int, limb_bits: int, fft_length: int) -> float:
    r"""Worst-case float64 error of a limb-split FFT product (see the module docstring).

    .. math:: E = k\sqrt{L_a L_b}\,(2^b-1)^2\,2^{-53}\,(16(\log_2 N + 1) + 3)

    Parameters
    ----------
    n_limbs : int
        Number of limbs ``k`` (limb products summed per output limb).
    len_a, len_b : int
        Numbers of coefficients of the two factors.
    limb_bits : int
        Bits per limb ``b``.
    fft_length : int
        FFT length ``N`` (a power of two).

    Returns
    -------
    bound : float
        Products are exact when ``bound < 1/2``; the planner requires ``<= 1/8``.
    """
    log2n = max(int(fft_length).bit_length() - 1, 1)
    limb_max = float(2**limb_bits - 1)
    return n_limbs * math.sqrt(len_a * len_b) * limb_max**2 * _EPS * (16 * (log2n + 1) + 3)


def _limb_plan(n: int, len_a: int, len_b: int, nfft: int) -> tuple[int, int]:
    bits = (n - 1).bit_length()
    for k in range(1, bits + 1):
        b = -(-bits // k)
        if fft_error_bound(k, len_a, len_b, b, nfft) <= _SAFE_ERROR:
            return b, k
    raise ValueError(f"polynomials with {len_a} and {len_b} coefficients are too long for an exact "
                     "float64 FFT product even with 1-bit limbs; use method='direct'")


def _fill_limbs(x, n: int, bits: int, k: int, buf, stride: int) -> None:
    """Write the ``k`` limbs of ``x mod n`` into rows ``[i*stride, i*stride + r)`` of ``buf``.

    ``x`` is an integer tensor block (r, L), any integers; ``buf`` a float64
    workspace of ``nfft`` columns whose columns past ``L`` stay zero (the zero
    padding: every block writes the same columns).
    """
    r, L = x.shape
    if k == 1:  # residues already fit one limb
        view = buf[:r, :L]
        if view.device.type != "cpu":
            view.copy_(_reduce(x, n, copy=False))
            return
        # Inputs are usually residues already: check the converted (cache-resident)
        # block instead of reducing every coefficient.
        view.copy_(x)
        lo, hi = torch_module().aminmax(view)
        if lo < 0 or hi >= n:
            view.copy_(_reduce(x, n, copy=False))
        return
    x = _reduce(x, n, copy=False)
    mask = (1 << bits) - 1
    for i in range(k):
        buf[i * stride:i * stride + r, :L].copy_((x >> (bits * i)) & mask)


def _limb_spectra(x, n: int, bits: int, k: int, nfft: int) -> list:
    """Spectra of the ``k`` limbs of ``x mod n``, each shape=[rows, nfft // 2 + 1]."""
    torch = torch_module()
    buf = torch.zeros((k * x.shape[0], nfft), dtype=torch.float64, device=x.device)
    _fill_limbs(x, n, bits, k, buf, x.shape[0])
    F = torch.fft.rfft(buf)
    return list(F.split(x.shape[0]))


def _fft_mul_rows(n: int, nfft: int, bits: int, k: int, FA: list, FB: list, out) -> None:
    """Round the limb convolutions of spectra ``FA``, ``FB`` and write the residues into ``out``."""
    torch = torch_module()
    out_len = out.shape[-1]
    if k == 1:
        c = torch.fft.irfft(FA[0].mul_(FB[0]), nfft)  # FA is this block's own spectrum
        # The low bits of (c + 1.5*2^52) are the rounded integer (two's complement).
        c = c.add_(_MAGIC).view(torch.int64)[:, :out_len]
        if n & (n - 1) == 0:  # ... and for a power-of-two modulus already the residue
            torch.bitwise_and(c, n - 1, out=out)
        else:
            torch.remainder(c.sub_(_MAGIC_INT), n, out=out)
        return
    # Horner in the limb base from the top limb convolution down, one reduction each:
    # u < n < 2^31 and b <= 16 bits (k >= 2) keep u * 2^b + c_s below 2^63.
    u = None
    for s in reversed(range(2 * k - 1)):
        S = None
        for i in range(max(0, s - k + 1), min(s, k - 1) + 1):
            term = FA[i] * FB[s - i]
            S = term if S is None else S.add_(term)
        c = torch.fft.irfft(S, nfft).add_(_MAGIC).view(torch.int64)[:, :out_len].sub_(_MAGIC_INT)
        u = torch.remainder(c if u is None else u.mul_(1 << bits).add_(c), n)
    out.copy_(u)


def _direct_mul(a, b, n: int):
    """Schoolbook product with int64 arithmetic (broadcast over leading dims)."""
    if a.shape[-1] < b.shape[-1]:
        a, b = b, a
    La, Lb = a.shape[-1], b.shape[-1]
    batch = _batch_shape(a, b)
    xp = namespace(a)
    if xp is np:
        out = np.zeros(batch + (La + Lb - 1,), dtype=np.int64)
    else:
        out = xp.zeros(batch + (La + Lb - 1,), dtype=xp.int64, device=a.device)
    # Without intermediate reductions the sum of Lb products must fit int64.
    safe = (n - 1) ** 2 * Lb < 2**63
    for j in range(Lb):
        term = a * b[..., j:j + 1]
        if not safe:
            term = term % n
        out[..., j:j + La] += term
        if not safe:
            out[..., j:j + La] %= n
    return out % n
