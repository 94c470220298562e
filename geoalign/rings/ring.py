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

import numbers
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any, NamedTuple, Sequence

import numpy as np

from .._backend import default_num_threads, is_torch, to_numpy, to_torch, torch_module, torch_num_threads
from .._validation import check_choice, check_int
from ._common import (_as_integer, _batch_shape, _broadcast_rows, _check_modulus, _check_poly_shape, _coerce,
                      _is_prime, _pad_last, _reduce)
from .kernels import (_BLOCK_ELEMENTS, _DIRECT_MAX_LENGTH, _SIMD_MAX_MODULUS, _SIMD_MAX_WORK, _direct_mul,
                      _fft_mul_rows, _fill_limbs, _limb_plan, _limb_spectra, _ringmul)

__all__ = ["PolyRing", "PolyDivMod"]


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
