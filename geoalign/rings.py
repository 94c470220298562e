r"""Polynomial rings :math:`\mathbb{Z}_n[x]`: batched exact arithmetic, encoders, lifts.

A batch of polynomials is an integer array (or tensor) of shape ``(..., degree+1)``
holding the coefficients lowest degree first,

.. math:: P(x) = \sum_{i=0}^{L-1} P[..., i]\, x^i \in \mathbb{Z}_n[x],

for any modulus :math:`2 \le n < 2^{31}` (composite moduli such as 256 or 30522
included: :math:`\mathbb{Z}_n` is then a ring with zero divisors, not a field).
Every function accepts NumPy arrays and torch tensors (on any device) and returns
the kind it was given; results are ``int64``.

Input conventions
-----------------
* **Arithmetic** (``add``, ``sub``, ``neg``, ``mul``, ``scalar_mul``, ``evaluate``,
  ``truncate``, ``cyclic``, ``reduce``, ``degree``, ``trim``, ``divmod``, ``gcd``,
  ``is_unit``, ``inverse``) accepts *any* integer coefficients (negative or
  ``>= n`` included) and reduces them modulo ``n`` first.  Results always lie in
  ``[0, n)``.
* **Ring elements** are checked strictly by :meth:`PolyRing.element` (alias
  :meth:`PolyRing.validate`): coefficients outside ``[0, n)`` raise.
* Floating, complex, boolean and object dtypes raise ``TypeError`` (NaN/Inf raise
  ``ValueError``): a float that happens to hold an integer is not silently accepted.

Exact multiplication
--------------------
Two exact kernels, both batched; :meth:`PolyRing.mul` picks one (``method=``).

*Compiled schoolbook* (the optional C extension ``geoalign._ringmul``, built by
``pip install`` where a C compiler exists; see :data:`HAVE_COMPILED_KERNEL`),
vectorised *across the batch*: 32 (16-bit) or 8 (float64) polynomials share each
SIMD multiply-add (AVX-512 or AVX2, chosen at run time), and the convolution is
register-blocked (four outputs per pass over a factor).  Bit-exact in every case:

* power-of-two moduli :math:`n \mid 2^{16}` (images over :math:`\mathbb{Z}_{256}`):
  16-bit wrap-around arithmetic, exact modulo every divisor of :math:`2^{16}`, no
  rounding at all;
* any other :math:`n < 2^{31}` with :math:`T (n-1)^2 \le 2^{52}`, where
  :math:`T = \min(L_P, L_Q)` bounds the number of terms of a coefficient: residues
  in float64, every product and partial sum an integer below :math:`2^{52}`, hence
  exact; one reduction per coefficient at the end (:math:`\mathbb{Z}_{30522}`, degree
  255: sums below :math:`2^{38}`);
* beyond, two 16-bit limbs :math:`a = a_1 2^{16} + a_0` and Karatsuba on them (three
  float64 convolutions of limbs below :math:`2^{17}`, sums below :math:`2^{52}` for
  :math:`T \le 2^{18}`), recombined modulo ``n`` in int64 (:math:`n \approx 2^{31}`).

For equal lengths the float64 kernel also applies Karatsuba to the polynomial halves
while the sums stay exact (a level doubles the coefficients and halves the number of
terms: the bound becomes :math:`T 2^{d} v^2 \le 2^{52}` after ``d`` levels, checked).
Its cost is :math:`O(L_P L_Q)` (less with Karatsuba), so it is used up to
:math:`L_P L_Q = 2^{18}` and the FFT beyond.

*Every modulus* :math:`n < 2^{31}`: a floating-point FFT over the whole batch
(torch's FFT, on any device), made *provably exact* by splitting coefficients
into ``k`` limbs of ``b`` bits,
:math:`a = \sum_i a^{(i)} 2^{bi}`.  For an FFT of length :math:`N = 2^m` the
classical bound (Percival 2003; Brent, Percival & Zimmermann 2007) on the error
of a float64 convolution is

.. math:: \|z' - z\|_\infty \le \|x\|_2 \|y\|_2\,
          \big((1+\epsilon)^{3m}(1+\epsilon\sqrt5)^{3m+1}(1+\beta)^{3m} - 1\big)
          \approx \|x\|_2\|y\|_2\,\epsilon\,(3m + \sqrt5(3m+1) + 3m\beta/\epsilon),

with :math:`\epsilon = 2^{-53}` and twiddle error :math:`\beta`.  We use the
conservative constant :math:`16(m+1)+3` in place of the bracket (it covers
:math:`\beta \le 2\epsilon` and the extra pass of a real FFT) and sum ``k`` limb
products per output limb, so the error is at most

.. math:: E = k\,\sqrt{L_P L_Q}\,(2^b-1)^2\,2^{-53}\,(16(m+1)+3).

The planner picks the fewest limbs with :math:`E \le 1/8` (a 4x margin below the
rounding threshold 1/2), so rounding recovers every integer exactly.  Examples
(degree 255 times degree 255, :math:`N = 512`): :math:`\mathbb{Z}_{256}` and
:math:`\mathbb{Z}_{30522}` need one limb (:math:`E \approx 3\cdot10^{-7}` and
:math:`5\cdot10^{-3}`), :math:`n \approx 2^{31}` needs two 16-bit limbs
(:math:`E \approx 0.04`).  The rounded limb convolutions :math:`c_s` are recombined by
Horner's rule in the limb base, :math:`u \leftarrow (u\,2^b + c_s) \bmod n` from the
top one down, with :math:`u\,2^b + c_s < 2^{31+16} + 2^{51}` in int64, so nothing
overflows.  Very short factors use a direct integer (schoolbook) product instead.

Embeddings into :math:`\mathbb{R}^d`
-------------------------------------
:func:`centered_lift`, :class:`RandomProjection` and :func:`dft_features` map
polynomials to real vectors; each docstring states its Lipschitz constant (used
by the robustness statement, design §2.2 (2): perturbations of size
:math:`\eta` move the embedding by at most :math:`L\eta`).
"""
from __future__ import annotations

import math
import numbers
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import numpy as np

from ._backend import (check_same_device, default_num_threads, is_torch, namespace, to_numpy, to_torch,
                       torch_module, torch_num_threads)
from ._validation import check_choice, check_finite, check_int

try:  # optional compiled kernel (built by `pip install` where a C compiler exists)
    from . import _ringmul
except ImportError:  # pragma: no cover - depends on the build
    _ringmul = None

__all__ = [
    "MAX_MODULUS",
    "HAVE_COMPILED_KERNEL",
    "PolyRing",
    "PolyDivMod",
    "encode_image",
    "decode_image",
    "encode_tokens",
    "decode_tokens",
    "centered_lift",
    "RandomProjection",
    "dft_features",
    "fft_error_bound",
]

#: Moduli must satisfy ``2 <= n < MAX_MODULUS`` (products of two residues fit int64).
MAX_MODULUS = 2**31

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


# --------------------------------------------------------------------------- helpers
def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for a in (2, 3, 5, 7, 11, 13, 17):  # deterministic for n < 3.4e14
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _check_modulus(n: Any, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} (the modulus) must be an integer, got {n!r} ({type(n).__name__})")
    n = int(n)
    if not 2 <= n < MAX_MODULUS:
        raise ValueError(f"{name} (the modulus) must satisfy 2 <= {name} < 2^31, got {n}")
    return n


def _as_integer(x: Any, name: str, min_ndim: int = 0):
    """Return ``x`` as an int64 array/tensor (unreduced); reject non-integer dtypes."""
    if x is None:
        raise TypeError(f"{name} is required, got None")
    if is_torch(x):
        import torch

        if x.dtype == torch.bool or x.is_floating_point() or x.is_complex():
            check_finite(x, name)
            raise TypeError(f"{name} must have an integer dtype, got {x.dtype}")
        if x.dim() < min_ndim:
            raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {tuple(x.shape)}")
        return x.long()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists
        raise TypeError(f"{name} must be an integer array, got {type(x).__name__}: {exc}") from exc
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        check_finite(arr, name)
        raise TypeError(f"{name} must have an integer dtype, got {arr.dtype}")
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {arr.shape}")
    return arr


def _check_poly_shape(P: Any, name: str) -> None:
    if P.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one coefficient (shape (..., degree+1)), "
                         f"got shape {tuple(P.shape)}")


def _reduce(x: Any, n: int, copy: bool = True):
    """Coefficients mod n as int64 in [0, n) (x already integer).

    Integer division is slow (~5 ns per int64), so a power-of-two modulus uses a
    mask (exact in two's complement, negatives included) and coefficients already
    in range are only checked (copied unless ``copy=False``).
    """
    if is_torch(x):
        import torch

        if n & (n - 1) == 0:
            return torch.bitwise_and(x, n - 1)
        if x.numel() and 0 <= int(x.min()) and int(x.max()) < n:
            return x.clone() if copy else x
        return torch.remainder(x, n)
    if x.dtype == np.uint64:  # values >= 2^63 would wrap when cast first
        return (x % np.uint64(n)).astype(np.int64)
    x = x.astype(np.int64, copy=False)
    if n & (n - 1) == 0:
        return np.bitwise_and(x, n - 1)
    if x.size and 0 <= x.min() and x.max() < n:
        return x.copy() if copy else x
    return np.remainder(x, n)


def _coerce(named: dict[str, Any], n: int, min_ndim: int = 1, reduce: bool = True):
    """Validate integer inputs, unify backend/device, reduce mod n.

    Returns ``(values, xp, device)`` where ``values`` are int64 arrays (NumPy) or
    tensors on one device (torch if any input is a tensor).  With ``reduce=False``
    the values are validated integers of any integer dtype, not reduced (possibly
    the caller's own arrays: read only).
    """
    check_same_device(**{k: v for k, v in named.items() if is_torch(v)})
    xp = namespace(*named.values())
    device = next((v.device for v in named.values() if is_torch(v)), None)
    out = []
    for name, value in named.items():
        v = _as_integer(value, name, min_ndim=min_ndim)
        if min_ndim >= 1:
            _check_poly_shape(v, name)
        if xp is not np:
            v = to_torch(v, device=device)
        out.append(_reduce(v, n) if reduce else v)
    return out, xp, device


def _pad_last(x: Any, length: int):
    """Zero-pad (or cut) the last axis to ``length``."""
    cur = x.shape[-1]
    if cur == length:
        return x
    if cur > length:
        return x[..., :length]
    if is_torch(x):
        import torch

        return torch.nn.functional.pad(x, (0, length - cur))
    pad = [(0, 0)] * (x.ndim - 1) + [(0, length - cur)]
    return np.pad(x, pad)


def _batch_shape(*arrays) -> tuple:
    return tuple(np.broadcast_shapes(*(tuple(a.shape[:-1]) for a in arrays)))


def _broadcast_rows(x, batch: tuple):
    """View ``x`` (..., L) as (rows, L) over ``batch``; a single row stays one row."""
    L = x.shape[-1]
    if int(np.prod(x.shape[:-1], dtype=np.int64)) == 1:
        return x.reshape(1, L)
    if tuple(x.shape[:-1]) == batch:
        return x.reshape(-1, L)
    full = (x.expand(*batch, L) if is_torch(x) else np.broadcast_to(x, batch + (L,)))
    return full.reshape(-1, L)


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


# --------------------------------------------------------------------------- the ring
class PolyDivMod(NamedTuple):
    """Quotient and remainder of :meth:`PolyRing.divmod` (unpacks as ``q, r``)."""

    quotient: Any
    remainder: Any


def _check_batch_broadcast(p, q) -> None:
    """Leading (batch) dimensions of ``P`` and ``Q`` must broadcast; say so with both shapes."""
    bp, bq = tuple(p.shape[:-1]), tuple(q.shape[:-1])
    try:
        np.broadcast_shapes(bp, bq)
    except ValueError:
        raise ValueError(f"P and Q batch shapes {bp} and {bq} do not broadcast (shapes "
                         f"{tuple(p.shape)} and {tuple(q.shape)}; the last axis holds the "
                         "coefficients): give equal batch sizes, or 1 to pair one polynomial "
                         "with all") from None


class PolyRing:
    r"""The polynomial ring :math:`\mathbb{Z}_n[x]` acting on batches of coefficient arrays.

    Parameters
    ----------
    n : int
        Modulus, :math:`2 \le n < 2^{31}`.  Composite moduli are allowed;
        operations needing inverses then raise for non-units.
    num_threads : int, optional
        CPU threads for FFT products (default: all available, see
        :func:`geoalign._backend.default_num_threads`).  Products run block by
        block on torch's intra-op threads, set to this number for the duration of
        the call (``torch.set_num_threads`` is process-wide: the previous setting
        is restored afterwards).

    Attributes
    ----------
    n : int
    is_prime, is_field : bool
        :math:`\mathbb{Z}_n` is a field iff ``n`` is prime.

    Notes
    -----
    Polynomials are arrays of shape ``(..., degree+1)``, lowest degree first.
    Arithmetic accepts any integers and reduces them mod ``n``;
    :meth:`element` checks that coefficients already lie in ``[0, n)``.

    Examples
    --------
    >>> R = PolyRing(256)
    >>> R.mul([16], [16])           # zero divisors: 16 * 16 = 0 in Z_256
    array([0])
    >>> R.mul([1, 1], [255, 1])     # (1 + x)(-1 + x) = x^2 - 1
    array([255,   0,   1])
    """

    def __init__(self, n: int, num_threads: int | None = None):
        self.n = _check_modulus(n)
        self.num_threads = (default_num_threads() if num_threads is None
                            else check_int(num_threads, "num_threads", minimum=1))

    # ---------------------------------------------------------------- properties
    @property
    def is_prime(self) -> bool:
        """True if the modulus is prime."""
        return _is_prime(self.n)

    @property
    def is_field(self) -> bool:
        r"""True if :math:`\mathbb{Z}_n` is a field (``n`` prime)."""
        return self.is_prime

    def __repr__(self) -> str:
        return f"PolyRing(n={self.n})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PolyRing) and other.n == self.n

    def __hash__(self) -> int:
        return hash(("PolyRing", self.n))

    # ---------------------------------------------------------------- checks
    def element(self, P: Any, name: str = "P"):
        """Check that ``P`` is a batch of ring elements and return it as int64.

        Parameters
        ----------
        P : array-like or torch.Tensor, shape=[..., degree+1]
            Integer coefficients in ``[0, n)``.
        name : str
            Argument name used in error messages.

        Raises
        ------
        TypeError
            Non-integer dtype.
        ValueError
            NaN/Inf, no coefficient axis, or a coefficient outside ``[0, n)``.
        """
        v = _as_integer(P, name, min_ndim=1)
        _check_poly_shape(v, name)
        vn = to_numpy(v)
        bad = (vn < 0) | (vn >= self.n)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{name} must have coefficients in [0, {self.n}) (elements of Z_{self.n}), "
                             f"got {int(vn[idx])} at index {idx}")
        if is_torch(v):
            return v
        return v.astype(np.int64, copy=False)

    validate = element

    def reduce(self, P: Any):
        """Coefficients modulo ``n`` in ``[0, n)`` (any integers accepted), int64."""
        (p,), _, _ = _coerce({"P": P}, self.n)
        return p

    # ---------------------------------------------------------------- construction
    def random(self, shape: int | Sequence[int] = (), degree: int = 0, seed: Any = None, device: Any = None):
        """Uniformly random polynomials of the given degree bound.

        Parameters
        ----------
        shape : int or tuple of int
            Batch shape.
        degree : int
            Number of coefficients is ``degree + 1`` (the top one may be zero).
        seed : int or numpy.random.Generator, optional
        device : str or torch.device, optional
            ``None`` returns a NumPy array; otherwise a tensor on that device
            (same values as NumPy for the same seed).

        Returns
        -------
        P : int64 array, shape=[*shape, degree+1]
        """
        degree = check_int(degree, "degree", minimum=0)
        shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
        for s in shape:
            check_int(s, "shape entries", minimum=0)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        out = rng.integers(0, self.n, size=shape + (degree + 1,), dtype=np.int64)
        return out if device is None else to_torch(out, device=device)

    # ---------------------------------------------------------------- arithmetic
    def add(self, P: Any, Q: Any):
        """Sum ``P + Q`` (broadcast over leading dims; the shorter is zero-padded)."""
        (p, q), _, _ = _coerce({"P": P, "Q": Q}, self.n)
        L = max(p.shape[-1], q.shape[-1])
        return (_pad_last(p, L) + _pad_last(q, L)) % self.n

    def sub(self, P: Any, Q: Any):
        """Difference ``P - Q`` (broadcast over leading dims)."""
        (p, q), _, _ = _coerce({"P": P, "Q": Q}, self.n)
        L = max(p.shape[-1], q.shape[-1])
        return (_pad_last(p, L) - _pad_last(q, L)) % self.n

    def neg(self, P: Any):
        """Additive inverse ``-P``."""
        (p,), _, _ = _coerce({"P": P}, self.n)
        return (-p) % self.n

    def scalar_mul(self, c: Any, P: Any):
        """Product ``c * P`` of ring elements ``c`` (shape broadcastable to ``P.shape[:-1]``)."""
        (p,), _, _ = _coerce({"P": P}, self.n)
        (cc,), _, _ = _coerce({"c": c}, self.n, min_ndim=0)
        if is_torch(p) and not is_torch(cc):
            cc = to_torch(cc, device=p.device)
        elif is_torch(cc) and not is_torch(p):
            p = to_torch(p, device=cc.device)
        return (p * cc[..., None]) % self.n

    def mul(self, P: Any, Q: Any, method: str = "auto"):
        r"""Exact product :math:`P(x)Q(x)` in :math:`\mathbb{Z}_n[x]`, batched.

        Parameters
        ----------
        P : array-like or torch.Tensor, shape=[..., L_P]
        Q : array-like or torch.Tensor, shape=[..., L_Q]
            Leading dimensions broadcast; degrees may differ.
        method : {"auto", "simd", "fft", "direct"}
            ``"simd"``: compiled schoolbook vectorised across the batch, exact
            (16-bit wrap-around arithmetic for power-of-two moduli
            :math:`n \le 2^{16}`, exact float64 sums on one or two limbs otherwise,
            see the module docstring; CPU; needs the optional extension
            ``geoalign._ringmul``, see :data:`HAVE_COMPILED_KERNEL`); ``"fft"``: limb-split float64 FFT
            over the whole batch (provably exact, see the module docstring);
            ``"direct"``: schoolbook int64 product in NumPy/torch;
            ``"auto"``: ``"simd"`` where it applies and :math:`L_P L_Q \le 2^{18}`
            (beyond, the FFT's :math:`O(L\log L)` wins), else direct when the
            shorter factor has at most 16 coefficients (or the device lacks
            float64, e.g. MPS), else FFT.

        Returns
        -------
        PQ : int64, shape=[..., L_P + L_Q - 1]
            Bit-exact coefficients in ``[0, n)``.

        Raises
        ------
        ValueError
            ``method="simd"`` where it does not apply (device, missing extension,
            or a factor longer than :math:`2^{18}` for a modulus that needs two
            limbs: the message says which).
        """
        check_choice(method, "method", ("auto", "simd", "fft", "direct"))
        # Unreduced: each kernel reduces its cache-sized blocks (or needs no reduction).
        (p, q), xp, device = _coerce({"P": P, "Q": Q}, self.n, reduce=False)
        _check_batch_broadcast(p, q)
        if xp is np:  # other integer dtypes (uint8 images, uint64): int64 residues for every kernel
            p, q = (x if x.dtype == np.int64 else _reduce(x, self.n) for x in (p, q))
        La, Lb = p.shape[-1], q.shape[-1]
        on_cpu = device is None or device.type == "cpu"
        if method == "simd":
            why = self._simd_unavailable(on_cpu)
            if why:
                raise ValueError(f"method='simd' is not available: {why}; use method='fft' or 'auto'")
        if method == "auto":
            no_f64 = device is not None and device.type == "mps"
            if not self._simd_unavailable(on_cpu) and La * Lb <= _SIMD_MAX_WORK:
                method = "simd"
            else:
                method = "direct" if (min(La, Lb) <= _DIRECT_MAX_LENGTH or no_f64) else "fft"
        if method == "simd":
            return self._simd_mul(p, q, xp)
        if method == "direct":
            return _direct_mul(_reduce(p, self.n, copy=False), _reduce(q, self.n, copy=False), self.n)
        return self._fft_mul(p, q, xp)

    def _simd_unavailable(self, on_cpu: bool) -> str:
        """Why the compiled kernel cannot compute this product ('' if it can)."""
        if _ringmul is None:
            return "the compiled extension geoalign._ringmul was not built (no C compiler at install time)"
        if not self._pow2_kernel and not hasattr(_ringmul, "mul_mod"):
            return (f"n={self.n} is not a power of two <= 2^16 and the compiled extension predates "
                    "its general-modulus kernel (rebuild: python setup.py build_ext --inplace)")
        if not on_cpu:
            return "the compiled kernel runs on the CPU only (tensors on an accelerator use the FFT)"
        return ""

    @property
    def _pow2_kernel(self) -> bool:
        """The 16-bit wrap-around kernel applies (n a power of two <= 2^16)."""
        return not self.n & (self.n - 1) and self.n <= _SIMD_MAX_MODULUS

    def _simd_mul(self, p, q, xp):
        La, Lb = p.shape[-1], q.shape[-1]
        batch = _batch_shape(p, q)
        rows = int(np.prod(batch, dtype=np.int64))
        if xp is not np:  # CPU tensors: zero-copy NumPy views
            p, q = p.numpy(), q.numpy()

        # C-contiguous int64 rows; a single row stays one (broadcast in C)
        a, b = (np.ascontiguousarray(_broadcast_rows(x, batch)) for x in (p, q))
        out = np.empty((rows, La + Lb - 1), dtype=np.int64)
        kernel = _ringmul.mul_pow2 if self._pow2_kernel else _ringmul.mul_mod
        # Row chunks (multiples of the 32 SIMD lanes) on threads: the kernel releases the GIL.
        chunk = max(32, -(-rows // (32 * self.num_threads)) * 32)
        starts = range(0, rows, chunk)

        def run(start: int) -> None:
            stop = min(start + chunk, rows)
            kernel(a if a.shape[0] == 1 else a[start:stop], b if b.shape[0] == 1 else b[start:stop],
                   out[start:stop], self.n)

        if len(starts) > 1:
            with ThreadPoolExecutor(min(self.num_threads, len(starts))) as pool:
                list(pool.map(run, starts))
        elif rows:
            run(0)
        out = out.reshape(batch + (La + Lb - 1,))
        return out if xp is np else to_torch(out)


    def _fft_mul(self, p, q, xp):
        torch = torch_module()
        n = self.n
        La, Lb = p.shape[-1], q.shape[-1]
        out_len = La + Lb - 1
        nfft = 1 << max(out_len - 1, 1).bit_length()
        bits, k = _limb_plan(n, La, Lb, nfft)
        batch = _batch_shape(p, q)
        rows = int(np.prod(batch, dtype=np.int64))
        # NumPy inputs run through the same torch kernels on zero-copy CPU views.
        if xp is np:
            out = np.empty((rows, out_len), dtype=np.int64)
            p, q, out_t = (torch.from_numpy(np.ascontiguousarray(p)),
                           torch.from_numpy(np.ascontiguousarray(q)), torch.from_numpy(out))
        else:
            out = out_t = torch.empty((rows, out_len), dtype=torch.int64, device=p.device)
        if rows:
            a, b = _broadcast_rows(p, batch), _broadcast_rows(q, batch)
            on_cpu = out_t.device.type == "cpu"
            with torch_num_threads(self.num_threads) if on_cpu else nullcontext():
                self._fft_mul_blocks(a, b, out_t, rows, nfft, bits, k)
        return out.reshape(batch + (out_len,))

    def _fft_mul_blocks(self, a, b, out, rows, nfft, bits, k):
        torch = torch_module()
        n = self.n
        block = max(1, min(rows, _BLOCK_ELEMENTS // (nfft * k)))
        # A single-row operand is transformed once and broadcast in the frequency domain.
        fa = _limb_spectra(a, n, bits, k, nfft) if a.shape[0] == 1 else None
        fb = _limb_spectra(b, n, bits, k, nfft) if b.shape[0] == 1 else None
        if fa is not None and fb is not None:  # one row times one row
            _fft_mul_rows(n, nfft, bits, k, fa, fb, out)
            return
        own = [x for x, f in ((a, fa), (b, fb)) if f is None]
        # The limbs of both operands share one workspace and one batched transform:
        # operand j, limb i at rows (j*k + i)*block + [0, r).
        buf = torch.zeros((len(own) * k * block, nfft), dtype=torch.float64, device=out.device)
        for start in range(0, rows, block):
            stop = min(start + block, rows)
            r = stop - start
            for j, x in enumerate(own):
                _fill_limbs(x[start:stop], n, bits, k, buf[j * k * block:], block)
            F = torch.fft.rfft(buf[:(len(own) * k - 1) * block + r])
            spectra = [[F[(j * k + i) * block:(j * k + i) * block + r] for i in range(k)]
                       for j in range(len(own))]
            if fa is None and fb is None:
                FA, FB = spectra
            else:  # the block's own spectra come first: they are the ones overwritten
                FA, FB = spectra[0], (fa if fa is not None else fb)
            _fft_mul_rows(n, nfft, bits, k, FA, FB, out[start:stop])

    def truncate(self, P: Any, N: int):
        r"""``P mod x^N``: the first ``N`` coefficients (zero-padded), shape=[..., N]."""
        N = check_int(N, "N", minimum=1)
        (p,), _, _ = _coerce({"P": P}, self.n)
        return _pad_last(p, N)

    def cyclic(self, P: Any, N: int):
        r"""``P mod (x^N - 1)``: coefficient ``i`` folds onto ``i mod N``, shape=[..., N]."""
        N = check_int(N, "N", minimum=1)
        (p,), _, _ = _coerce({"P": P}, self.n)
        L = p.shape[-1]
        m = -(-L // N)
        folded = _pad_last(p, m * N).reshape(*p.shape[:-1], m, N)
        return folded.sum(-2) % self.n

    def mul_truncated(self, P: Any, Q: Any, N: int, method: str = "auto"):
        r"""Product modulo :math:`x^N`, shape=[..., N]."""
        N = check_int(N, "N", minimum=1)
        return self.truncate(self.mul(self.truncate(P, N), self.truncate(Q, N), method=method), N)

    def cyclic_mul(self, P: Any, Q: Any, N: int, method: str = "auto"):
        r"""Product in :math:`\mathbb{Z}_n[x]/(x^N - 1)`, shape=[..., N]."""
        N = check_int(N, "N", minimum=1)
        return self.cyclic(self.mul(self.cyclic(P, N), self.cyclic(Q, N), method=method), N)

    def evaluate(self, P: Any, x: Any):
        r"""Evaluate :math:`P(x) \bmod n` at ring elements by Horner's rule.

        Parameters
        ----------
        P : shape=[..., L]
        x : integer array, shape broadcastable with ``P.shape[:-1]``

        Returns
        -------
        values : int64, shape=broadcast(P.shape[:-1], x.shape)
        """
        (p,), _, _ = _coerce({"P": P}, self.n)
        (xx,), _, _ = _coerce({"x": x}, self.n, min_ndim=0)
        if is_torch(p) and not is_torch(xx):
            xx = to_torch(xx, device=p.device)
        elif is_torch(xx) and not is_torch(p):
            p = to_torch(p, device=xx.device)
        acc = p[..., -1] * (xx * 0 + 1)  # broadcast to the result shape
        for i in range(p.shape[-1] - 2, -1, -1):
            acc = (acc * xx + p[..., i]) % self.n  # acc * x < 2^62
        return acc % self.n

    def degree(self, P: Any):
        """Degree of each polynomial (``-1`` for the zero polynomial), int64 shape=[...]."""
        (p,), xp, _ = _coerce({"P": P}, self.n)
        L = p.shape[-1]
        nz = p != 0
        if xp is np:
            last = L - 1 - np.argmax(nz[..., ::-1], axis=-1)
            return np.where(nz.any(-1), last, -1).astype(np.int64)
        idx = xp.arange(L, device=p.device).expand_as(p)
        return xp.where(nz, idx, xp.full_like(idx, -1)).amax(-1)

    def trim(self, P: Any):
        """Drop trailing coefficients that are zero in every polynomial (keeps >= 1)."""
        (p,), _, _ = _coerce({"P": P}, self.n)
        d = self.degree(p)
        size = d.numel() if is_torch(d) else d.size
        top = int(d.max()) if size else 0
        return p[..., :max(top + 1, 1)]

    # ---------------------------------------------------------------- units
    def is_unit(self, a: Any):
        r"""True where :math:`\gcd(a, n) = 1` (``a`` reduced mod ``n``), same shape as ``a``."""
        (aa,), xp, _ = _coerce({"a": a}, self.n, min_ndim=0)
        return xp.gcd(aa, xp.full_like(aa, self.n)) == 1

    def inverse(self, a: Any):
        r"""Multiplicative inverse :math:`a^{-1} \bmod n` by the extended Euclidean algorithm.

        Raises
        ------
        ValueError
            If some element is not a unit (names the element, its index and the gcd).
        """
        (aa,), _, _ = _coerce({"a": a}, self.n, min_ndim=0)
        an = np.atleast_1d(to_numpy(aa))
        inv, g = _inverse_mod(an, self.n)
        bad = g != 1
        if bad.any():
            i = int(np.flatnonzero(bad.ravel())[0])
            idx = np.unravel_index(i, an.shape) if np.ndim(to_numpy(aa)) else ()
            raise ValueError(f"element {int(an.ravel()[i])} (index {tuple(int(j) for j in idx)}) is not a "
                             f"unit of Z_{self.n}: gcd({int(an.ravel()[i])}, {self.n}) = {int(g.ravel()[i])}")
        inv = inv.reshape(np.shape(to_numpy(aa)))
        return to_torch(inv, device=aa.device) if is_torch(aa) else inv

    # ---------------------------------------------------------------- division
    def divmod(self, A: Any, B: Any) -> PolyDivMod:
        r"""Euclidean division :math:`A = QB + R` with :math:`\deg R < \deg B`.

        Valid over any :math:`\mathbb{Z}_n` when the leading coefficient of ``B``
        (its highest coefficient nonzero mod ``n``) is a unit.  Batched; each
        divisor may have its own degree.  Computed on the CPU (results are
        returned as the input kind and device).

        Parameters
        ----------
        A : shape=[..., L_A]
        B : shape=[..., L_B], broadcastable with ``A``

        Returns
        -------
        PolyDivMod
            ``quotient`` shape=[..., max(L_A - min deg B, 1)], ``remainder``
            shape=[..., max(max deg B, 1)].

        Raises
        ------
        ZeroDivisionError
            ``B`` is the zero polynomial.
        ValueError
            The leading coefficient of ``B`` is not a unit mod ``n``.
        """
        (a, b), xp, device = _coerce({"A": A, "B": B}, self.n)
        an, bn = to_numpy(a), to_numpy(b)
        batch = _batch_shape(an, bn)
        A2 = np.broadcast_to(an, batch + an.shape[-1:]).reshape(-1, an.shape[-1])
        B2 = np.broadcast_to(bn, batch + bn.shape[-1:]).reshape(-1, bn.shape[-1])
        q, r = _divmod_rows(A2, B2, self.n)
        q = q.reshape(batch + q.shape[-1:])
        r = r.reshape(batch + r.shape[-1:])
        if xp is not np:
            q, r = to_torch(q, device=device), to_torch(r, device=device)
        return PolyDivMod(q, r)

    def gcd(self, A: Any, B: Any):
        r"""Monic greatest common divisor, batched; only for prime ``n``.

        For composite ``n``, :math:`\mathbb{Z}_n[x]` is not a Euclidean domain
        (e.g. :math:`2x` and :math:`2x+4` over :math:`\mathbb{Z}_8`), so this
        raises ``ValueError``.  ``gcd(0, 0)`` is the zero polynomial.

        Returns
        -------
        G : int64, shape=[..., max(L_A, L_B)]
            Monic (or zero), zero-padded.
        """
        if not self.is_prime:
            raise ValueError(f"gcd requires a prime modulus: Z_{self.n}[x] is not a Euclidean domain "
                             f"for composite n={self.n}")
        (a, b), xp, device = _coerce({"A": A, "B": B}, self.n)
        an, bn = to_numpy(a), to_numpy(b)
        batch = _batch_shape(an, bn)
        L = max(an.shape[-1], bn.shape[-1])
        A2 = np.broadcast_to(_pad_last(an, L), batch + (L,)).reshape(-1, L)
        B2 = np.broadcast_to(_pad_last(bn, L), batch + (L,)).reshape(-1, L)
        out = np.zeros((A2.shape[0], L), dtype=np.int64)
        for i in range(A2.shape[0]):
            g = _gcd_single(A2[i], B2[i], self.n)
            out[i, :g.shape[0]] = g
        out = out.reshape(batch + (L,))
        return to_torch(out, device=device) if xp is not np else out


def _inverse_mod(a: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised extended Euclid: returns (inverse or garbage, gcd) for a in [0, n)."""
    r0 = np.full(a.shape, n, dtype=np.int64)
    r1 = a.astype(np.int64).copy()
    t0 = np.zeros(a.shape, dtype=np.int64)
    t1 = np.ones(a.shape, dtype=np.int64)
    while (r1 != 0).any():
        live = r1 != 0
        q = np.where(live, r0 // np.where(live, r1, 1), 0)
        r0, r1 = np.where(live, r1, r0), np.where(live, r0 - q * r1, r1)
        t0, t1 = np.where(live, t1, t0), np.where(live, t0 - q * t1, t1)
    return t0 % n, r0


def _row_degrees(x: np.ndarray) -> np.ndarray:
    nz = x != 0
    last = x.shape[-1] - 1 - np.argmax(nz[..., ::-1], axis=-1)
    return np.where(nz.any(-1), last, -1)


def _divmod_rows(A: np.ndarray, B: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    rows, LA = A.shape
    dB = _row_degrees(B)
    if (dB < 0).any():
        i = int(np.flatnonzero(dB < 0)[0])
        raise ZeroDivisionError(f"divisor B is the zero polynomial mod {n} (row {i})")
    lead = B[np.arange(rows), dB]
    inv, g = _inverse_mod(lead, n)
    if (g != 1).any():
        i = int(np.flatnonzero(g != 1)[0])
        raise ValueError(f"leading coefficient {int(lead[i])} of divisor B (row {i}, degree {int(dB[i])}) "
                         f"is not a unit of Z_{n} (gcd = {int(g[i])}); division is undefined")
    q_len = max(LA - int(dB.min()), 1)
    r_len = max(int(dB.max()), 1)
    Q = np.zeros((rows, q_len), dtype=np.int64)
    R = np.zeros((rows, r_len), dtype=np.int64)
    for d in np.unique(dB):  # rows with the same divisor degree divide together
        d = int(d)
        idx = np.flatnonzero(dB == d)
        r = np.zeros((idx.size, max(LA, d)), dtype=np.int64)  # a short A is its own remainder
        r[:, :LA] = A[idx]
        bg = B[idx, :d + 1]
        iv = inv[idx]
        for i in range(LA - 1, d - 1, -1):
            coef = r[:, i] * iv % n
            Q[idx, i - d] = coef
            r[:, i - d:i + 1] = (r[:, i - d:i + 1] - coef[:, None] * bg) % n
        if d > 0:
            R[idx, :d] = r[:, :d]
    return Q, R


def _gcd_single(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    def trim(x):
        d = int(_row_degrees(x[None])[0])
        return x[:d + 1] if d >= 0 else x[:0]

    a, b = trim(a), trim(b)
    while b.shape[0]:
        _, r = _divmod_rows(a[None], b[None], n)
        a, b = b, trim(r[0])
    if a.shape[0] == 0:
        return np.zeros(1, dtype=np.int64)
    inv, _ = _inverse_mod(a[-1:], n)
    return a * inv[0] % n


# --------------------------------------------------------------------------- encoders
_CHANNEL_ORDERS = ("interleaved", "planar")


def _image_layout(shape: tuple, patch_size: int | None, pad_value: int | None):
    """Return (H, W, C, Hp, Wp, p) with padded sizes, or raise for indivisible sizes."""
    H, W = shape[0], shape[1]
    C = shape[2] if len(shape) == 3 else 1
    if patch_size is None:
        return H, W, C, H, W, None
    p = check_int(patch_size, "patch_size", minimum=1)
    if (H % p or W % p) and pad_value is None:
        raise ValueError(f"image size {H}x{W} is not divisible by patch_size={p}; "
                         "pass pad_value=<0..255> to pad bottom/right")
    Hp, Wp = -(-H // p) * p, -(-W // p) * p
    return H, W, C, Hp, Wp, p


def encode_image(img: Any, patch_size: int | None = None, channel_order: str = "interleaved",
                 pad_value: int | None = None):
    r"""Encode a uint8 image as polynomial(s) over :math:`\mathbb{Z}_{256}`.

    Pixels are read in row-major order (row 0 left to right, then row 1, ...).
    With ``channel_order="interleaved"`` the channels of one pixel are adjacent
    (``r0 g0 b0 r1 g1 b1 ...``, the memory order of an ``H x W x C`` array); with
    ``"planar"`` all values of channel 0 come first, then channel 1, ...
    Coefficient :math:`a_i` multiplies :math:`x^i`.

    Parameters
    ----------
    img : uint8 array or tensor, shape=[H, W] or [H, W, C]
    patch_size : int, optional
        ``p``: cut the image into ``p x p`` patches in row-major patch order and
        encode each (pixels row-major within the patch, channels per
        ``channel_order`` within the patch).
    channel_order : {"interleaved", "planar"}
    pad_value : int in [0, 255], optional
        When ``H`` or ``W`` is not divisible by ``p``: ``None`` (default) raises;
        an integer pads the bottom rows and right columns with that value.

    Returns
    -------
    P : int64, shape=[H*W*C] without patches, or [n_patches, p*p*C]
        Same kind (NumPy/torch, device) as ``img``.
    """
    check_choice(channel_order, "channel_order", _CHANNEL_ORDERS)
    if pad_value is not None:
        pad_value = check_int(pad_value, "pad_value", minimum=0, maximum=255)
    if is_torch(img):
        import torch

        if img.dtype != torch.uint8:
            raise TypeError(f"img must have dtype uint8, got {img.dtype}")
    else:
        img = np.asarray(img)
        if img.dtype != np.uint8:
            raise TypeError(f"img must have dtype uint8, got {img.dtype}")
    if img.ndim not in (2, 3):
        raise ValueError(f"img must have shape (H, W) or (H, W, C), got {tuple(img.shape)}")
    if 0 in tuple(img.shape):
        raise ValueError(f"img must not be empty, got shape {tuple(img.shape)}")
    H, W, C, Hp, Wp, p = _image_layout(tuple(img.shape), patch_size, pad_value)
    x = to_numpy(img).reshape(H, W, C).astype(np.int64)
    if (Hp, Wp) != (H, W):
        x = np.pad(x, ((0, Hp - H), (0, Wp - W), (0, 0)), constant_values=pad_value)
    if p is None:
        out = (x.transpose(2, 0, 1) if channel_order == "planar" else x).reshape(-1)
    else:
        t = x.reshape(Hp // p, p, Wp // p, p, C).transpose(0, 2, 1, 3, 4)  # (gh, gw, p, p, C)
        if channel_order == "planar":
            t = t.transpose(0, 1, 4, 2, 3)
        out = t.reshape((Hp // p) * (Wp // p), p * p * C)
    out = np.ascontiguousarray(out)
    return to_torch(out, device=img.device) if is_torch(img) else out


def decode_image(P: Any, shape: Sequence[int], patch_size: int | None = None,
                 channel_order: str = "interleaved"):
    """Inverse of :func:`encode_image`: rebuild the uint8 image of the given shape.

    Parameters
    ----------
    P : int array, shape=[H*W*C] or [n_patches, p*p*C]
        Coefficients in ``[0, 256)``.
    shape : tuple
        The original image shape ``(H, W)`` or ``(H, W, C)``; padding added by
        ``pad_value`` is cropped away.
    patch_size, channel_order
        As given to :func:`encode_image`.

    Returns
    -------
    img : uint8, shape=``shape``
    """
    check_choice(channel_order, "channel_order", _CHANNEL_ORDERS)
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"shape must be (H, W) or (H, W, C) with positive sizes, got {shape}")
    v = PolyRing(256).element(P, "P")
    H, W, C, Hp, Wp, p = _image_layout(shape, patch_size, 0)
    x = to_numpy(v)
    if p is None:
        if x.shape != (H * W * C,):
            raise ValueError(f"P must have shape ({H * W * C},) for an image of shape {shape}, got {x.shape}")
        img = x.reshape(C, H, W).transpose(1, 2, 0) if channel_order == "planar" else x.reshape(H, W, C)
    else:
        want = ((Hp // p) * (Wp // p), p * p * C)
        if x.shape != want:
            raise ValueError(f"P must have shape {want} for an image of shape {shape} with patch_size={p}, "
                             f"got {x.shape}")
        if channel_order == "planar":
            t = x.reshape(Hp // p, Wp // p, C, p, p).transpose(0, 1, 3, 4, 2)
        else:
            t = x.reshape(Hp // p, Wp // p, p, p, C)
        img = t.transpose(0, 2, 1, 3, 4).reshape(Hp, Wp, C)[:H, :W]
    img = np.ascontiguousarray(img.reshape(shape).astype(np.uint8))
    return to_torch(img, device=v.device) if is_torch(v) else img


def encode_tokens(ids: Any, vocab_size: int, length: int | None = None, pad_id: int = 0):
    r"""Encode token id sequences as polynomials over :math:`\mathbb{Z}_{|V|}`.

    Sequence :math:`t_0..t_m` becomes :math:`Q(x) = \sum_i t_i x^i`.  Shorter
    sequences are padded at the end (high degrees) with ``pad_id``; with the
    default ``pad_id=0`` padding does not change the polynomial.

    Parameters
    ----------
    ids : sequence of int, list of lists (ragged allowed), or 1-D/2-D integer array/tensor
    vocab_size : int
        :math:`|V|`, the modulus (``2 <= |V| < 2^31``).
    length : int, optional
        Number of coefficients; default the longest sequence (at least 1).
        A sequence longer than ``length`` raises (no silent truncation).
    pad_id : int
        Padding id in ``[0, |V|)``.

    Returns
    -------
    Q : int64, shape=[length] for one sequence, [batch, length] for a batch
        A tensor on the input's device if ``ids`` is a tensor.

    Raises
    ------
    ValueError
        An id outside ``[0, |V|)`` (names the sequence and position), a sequence
        longer than ``length``, or a bad ``pad_id``.
    """
    V = _check_modulus(vocab_size, "vocab_size")
    pad_id = check_int(pad_id, "pad_id", minimum=0, maximum=V - 1)
    ref = ids if is_torch(ids) else None
    if is_torch(ids) or isinstance(ids, np.ndarray):
        arr = _as_integer(ids, "ids")
        if arr.ndim not in (1, 2):
            raise ValueError(f"ids must be one sequence (1-D) or a batch (2-D), got shape {tuple(arr.shape)}")
        single = arr.ndim == 1
        seqs = [to_numpy(arr).reshape(1, -1)[0]] if single else list(to_numpy(arr))
    else:
        if not isinstance(ids, (list, tuple)):
            raise TypeError(f"ids must be a sequence of ints or a list of sequences, got {type(ids).__name__}")
        single = len(ids) > 0 and all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in ids)
        raw = [ids] if single else list(ids)
        seqs = []
        for j, s in enumerate(raw):
            if is_torch(s):
                s = to_numpy(s)
            if not isinstance(s, (list, tuple, np.ndarray)):
                raise TypeError(f"ids[{j}] must be a sequence of token ids, got {type(s).__name__}")
            arr = np.asarray(s) if len(s) else np.zeros(0, dtype=np.int64)
            seqs.append(_as_integer(arr, f"ids[{j}]").reshape(-1))
    longest = max((len(s) for s in seqs), default=0)
    if length is None:
        length = max(longest, 1)
    length = check_int(length, "length", minimum=1)
    out = np.full((len(seqs), length), pad_id, dtype=np.int64)
    for j, s in enumerate(seqs):
        if len(s) > length:
            raise ValueError(f"sequence {j} has {len(s)} tokens, more than length={length}")
        bad = (s < 0) | (s >= V)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise ValueError(f"token id {int(s[pos])} at sequence {j}, position {pos} is outside "
                             f"[0, vocab_size={V})")
        out[j, :len(s)] = s
    if single:
        out = out[0]
    return to_torch(out, device=ref.device) if ref is not None else out


def decode_tokens(Q: Any, lengths: Any = None, pad_id: int | None = None):
    """Inverse of :func:`encode_tokens`: polynomials back to lists of token ids.

    Parameters
    ----------
    Q : int array, shape=[length] or [batch, length]
    lengths : int or sequence of int, optional
        Exact sequence lengths (the unambiguous way to undo padding).
    pad_id : int, optional
        Without ``lengths``: strip trailing ``pad_id`` values.  Note that a
        sequence that itself ends in ``pad_id`` loses those tokens; pass
        ``lengths`` when that can happen.

    Returns
    -------
    list of int (one sequence) or list of lists of int
    """
    q = to_numpy(_as_integer(Q, "Q", min_ndim=1))
    if q.ndim not in (1, 2):
        raise ValueError(f"Q must have shape (length,) or (batch, length), got {q.shape}")
    single = q.ndim == 1
    rows = q.reshape(1, -1) if single else q
    if lengths is not None:
        lens = np.atleast_1d(np.asarray(lengths))
        if not np.issubdtype(lens.dtype, np.integer) or lens.shape != (rows.shape[0],):
            raise ValueError(f"lengths must hold {rows.shape[0]} integer(s), got {lengths!r}")
        if (lens < 0).any() or (lens > rows.shape[1]).any():
            raise ValueError(f"lengths must lie in [0, {rows.shape[1]}], got {lens.tolist()}")
        out = [r[:int(m)].tolist() for r, m in zip(rows, lens)]
    elif pad_id is not None:
        out = []
        for r in rows:
            keep = np.flatnonzero(r != pad_id)
            out.append(r[:int(keep[-1]) + 1 if keep.size else 0].tolist())
    else:
        out = [r.tolist() for r in rows]
    return out[0] if single else out


# --------------------------------------------------------------------------- embeddings
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
