r"""Approximate fiber products: exact blocked ε-joins, N(ε) curves, sampled densities.

For two finite point sets embedded in :math:`Z = \mathbb{R}^d`, rows of
``X`` (shape ``[n, d]``) and ``Y`` (shape ``[m, d]``), the approximate fiber
product at tolerance :math:`\varepsilon \ge 0` is the closed-ball join

.. math::

    F_\varepsilon = \{(i, j) : \operatorname{dist}(x_i, y_j) \le \varepsilon\},
    \qquad N(\varepsilon) = |F_\varepsilon|, \qquad
    \rho(\varepsilon) = \frac{N(\varepsilon)}{n\,m}.

Metrics
-------
``"euclidean"``
    :math:`\|x - y\|_2`.
``"cosine"``
    :math:`1 - \langle x, y\rangle / (\|x\|\|y\|)`, in :math:`[0, 2]`.
``"geodesic"``
    the angle :math:`\arccos(\langle x, y\rangle / (\|x\|\|y\|))`, in :math:`[0, \pi]`
    (great-circle distance on the unit sphere).  Inputs need **not** be unit
    vectors: rows are normalised internally, so the result only depends on the
    directions.  Zero rows have no direction and raise ``ValueError`` for both
    angular metrics.

Both angular metrics are evaluated through the well-conditioned chord form of
the float64-normalised rows :math:`\hat x = x/\|x\|`:
:math:`1-\cos = \tfrac12\|\hat x-\hat y\|^2` and
:math:`\theta = 2\arcsin(\|\hat x-\hat y\|/2)`.  They equal the textbook
formulas mathematically, are accurate at small angles (where :math:`\arccos`
loses half the digits), and give exactly 0 for identical directions, so
``eps=0`` returns exactly the pairs with the same direction.

Exactness
---------
The defining distance of a pair is the float64 evaluation of the metric on the
pair's difference vector (``sqrt(sum((x - y)**2))`` for Euclidean; that is what
``scipy.spatial.distance.cdist`` computes in float64, up to summation order).
On the CPU the order is NumPy's pairwise summation, so a Euclidean distance
equals ``np.linalg.norm(x - y)`` of the float64 rows bit for bit; the compiled
kernel and the NumPy fallback both sum in this order, so they return
bit-identical distances and the same pairs at ``dist == eps``.
The fast path is a float32 GEMM of the expansion
:math:`\|x\|^2 + \|y\|^2 - 2\langle x, y\rangle`, which rounds.  Candidates are
selected with the squared threshold enlarged by a rigorous a-priori bound on
every rounding error involved (the float32 rounding of the inputs, the GEMM
accumulation :math:`\gamma_{d+2} = (d+2)u/(1-(d+2)u)` and the float64 error of
the defining distance), so no true pair can be missed; every candidate's
distance is then recomputed from the differences in float64 and tested with
``<= eps``.  When the matmul precision of torch has been lowered (TF32 /
bfloat16 via ``torch.set_float32_matmul_precision``) the bound uses the
corresponding unit roundoff; when it would be useless, or norms are too large
for float32, the filter runs in float64.

Memory
------
The :math:`n \times m` distance matrix is never formed.  ``X`` is processed in
row blocks and ``Y`` in column blocks; one float32 block buffer plus a boolean
mask of the same shape are reused (one pair per worker thread on the CPU; with
the compiled kernel, an index buffer for the hits of one block replaces the mask).
``memory_budget`` (bytes, default 256 MiB) bounds all these buffers together
and the float64 candidate recomputation; the default block shape is also kept
moderate on the CPU (1024 x 512) so that each buffer stays in cache.
Outputs (pairs and distances) are of course proportional to
:math:`N(\varepsilon)`: :func:`fiber_product` refuses (``max_pairs``, default
from the available memory) a join whose pairs would not fit, estimating the
output size from a sample of rows first, and :func:`iter_fiber_product` yields
the pairs one block of rows at a time.

Range
-----
Magnitudes beyond :math:`2^{\pm 400}` would overflow or underflow when
squared.  Such inputs are divided by a power of two first (exact in binary
floating point): globally for the Euclidean metric, whose distances are
multiplied back, and per row for the angular metrics, whose directions do not
change.  Inputs within that range are used as given.

Speed
-----
Per block on the CPU, with the optional compiled extension ``geoalign._fiber``
(built with the package where a C compiler exists): one ``torch.mm`` (MKL or
OpenBLAS sgemm) into a reused buffer, then ONE compiled pass over the block while
it is still in cache that evaluates :math:`\|y\|^2 - 2\langle x, y\rangle` (the
same float32 operations as the GEMM epilogue of ``torch.addmm``, so the error
bound above holds unchanged), compares it with the per-row threshold and appends
the indices of the hits -- no mask is written.  The hits' float64 distances
are then computed in compiled code too.  Without the extension (and on GPUs):
one ``torch.addmm`` (GEMM with the column norms fused in), one comparison with a
per-row threshold into a reused boolean mask, and a flat-nonzero on the mask;
only the (rare) hits are gathered and recomputed.
On the CPU, row blocks are distributed over worker threads that each run
single-threaded kernels on cache-sized buffers (``num_threads``), which avoids
per-operation thread barriers; see the ``fiber`` benchmark of ``benchmarks/run.py``.

Distributed use
---------------
``row_offset`` / ``col_offset`` shift the reported indices, so that a worker can
join ``X[i0:i1]`` against ``Y[j0:j1]`` and the caller merges the parts with
:meth:`FiberProduct.concatenate` (or sums :class:`FiberCounts` with
:meth:`FiberCounts.combine`).
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ._adapter import compute_dtype
from ._backend import check_same_device, is_torch, like, resolve_device, to_numpy, torch_num_threads
from ._validation import check_array, check_choice, check_finite, check_int, check_nonnegative_scalar

try:  # optional compiled kernels (built by `pip install` where a C compiler exists)
    from . import _fiber
except ImportError:  # pragma: no cover - depends on the build
    _fiber = None

__all__ = [
    "METRICS",
    "DEFAULT_MEMORY_BUDGET",
    "FiberProduct",
    "FiberCounts",
    "DensityEstimate",
    "PrecisionRecall",
    "fiber_product",
    "iter_fiber_product",
    "TooManyPairsError",
    "BYTES_PER_PAIR",
    "available_memory",
    "fiber_counts",
    "estimate_density",
    "pair_distances",
]

METRICS = ("euclidean", "cosine", "geodesic")
DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes for the distance block + mask + recomputation

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))  # row dtypes the compiled kernels read
_U32 = 2.0**-24  # float32 unit roundoff
_U64 = 2.0**-53
_TINY32 = 2.0**-149  # float32 subnormal spacing: absolute error of an underflowing operation
# magnitudes whose squares, summed over any realistic d, neither overflow nor lose precision to
# underflow in float64; outside, rows are rescaled by a power of two first
_SAFE_HI = 2.0**400
_SAFE_LO = 2.0**-400
# 5 MB of buffers per thread.  Measured (n = m = 10^4, d = 256, float32, 1 thread, CPU
# time): blocks of 1024 x 1024 run the GEMM at 1.06x the time of one unblocked GEMM,
# 256 x 2048 at 1.20x (short row blocks repack the column panel too often); the compare
# then reads the block from L2/L3, which costs less than the GEMM lost to small blocks.
# With the compiled pass (same problem, block GEMM + select, 1 thread, best CPU time of 5
# interleaved runs over one unblocked GEMM, machine shared, load average ~4.8):
# 1024 x 512 1.025x, 1536 x 512 1.023x, 2048 x 512 1.035x, 768 x 512 1.036x, 1024 x 256
# 1.047x, 512 x 512 1.061x, 1024 x 1024 1.064-1.087x, 2048 x 2048 1.108x: a column panel
# of 512 rows of Y (512 KB at d = 256) and a 2 MB block stay in the L2 / L3 cache.
_CPU_BLOCK = (1024, 512)


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class PrecisionRecall:
    """Precision and recall of a set of predicted pairs against true pairs.

    ``precision = tp / |F|`` and ``recall = tp / |T|``; an empty denominator
    gives NaN (undefined, never a made-up 0 or 1).
    """

    precision: float
    recall: float
    f1: float
    true_positives: int
    n_predicted: int
    n_true: int


@dataclass(frozen=True, eq=False)
class FiberProduct:
    r"""Result of :func:`fiber_product`: the pairs of :math:`F_\varepsilon`.

    Attributes
    ----------
    pairs : array, shape=[k, 2], int64
        ``(i, j)`` row indices (plus offsets), sorted lexicographically.
    distances : array, shape=[k], float64
        Exact float64 distance of each pair (``<= eps``).
    eps : float
    metric : str
    shape : tuple of int
        ``(n, m)``: the numbers of rows of ``X`` and ``Y`` that were joined.
    offset : tuple of int
        ``(row_offset, col_offset)`` added to the indices in ``pairs``.
    n_blocks : int
        Row blocks the join was split into by
        :func:`geoalign.fiber_distributed.distributed_fiber_product` (1 otherwise;
        0 for an empty distributed join).
    """

    pairs: Any
    distances: Any
    eps: float
    metric: str
    shape: tuple
    offset: tuple = (0, 0)
    n_blocks: int = 1

    @property
    def count(self) -> int:
        r""":math:`N(\varepsilon) = |F_\varepsilon|`."""
        return int(self.pairs.shape[0])

    @property
    def rho(self) -> float:
        r""":math:`\rho(\varepsilon) = N(\varepsilon)/(nm)` (NaN when ``n*m == 0``)."""
        total = self.shape[0] * self.shape[1]
        return self.count / total if total else float("nan")

    def __len__(self) -> int:
        return self.count

    def to_sparse(self, format: str = "csr"):
        """Sparse distance matrix of shape ``(row_offset + n, col_offset + m)``.

        Pairs at distance exactly 0 are stored as EXPLICIT zeros (so ``nnz ==
        count``), unlike SciPy's ``sparse_distance_matrix`` which drops them:
        membership is the sparsity pattern, never the value.

        Parameters
        ----------
        format : {"csr", "coo", "csc"}
        """
        import scipy.sparse as sp

        check_choice(format, "format", ("csr", "coo", "csc"))
        pairs = to_numpy(self.pairs).reshape(-1, 2)
        dist = to_numpy(self.distances).astype(np.float64, copy=False)
        shape = (self.offset[0] + self.shape[0], self.offset[1] + self.shape[1])
        coo = sp.coo_array((dist, (pairs[:, 0], pairs[:, 1])), shape=shape)
        if format == "coo":
            return coo
        # coo -> csr/csc sums duplicates (there are none) and keeps explicit zeros
        return coo.tocsr() if format == "csr" else coo.tocsc()

    def precision_recall(self, true_pairs: Any) -> PrecisionRecall:
        """Compare with ground-truth pairs.

        Parameters
        ----------
        true_pairs : array-like, shape=[t, 2], int
            Global ``(i, j)`` indices (same convention as :attr:`pairs`), within
            ``[offset, offset + shape)``; duplicates are counted once.
        """
        true = check_array(true_pairs, "true_pairs", ndim=2, shape=(None, 2))
        true = to_numpy(true)
        if true.size and not np.issubdtype(true.dtype, np.integer):
            if not np.array_equal(true, np.round(true)):
                raise ValueError("true_pairs must hold integer indices")
        true = true.astype(np.int64, copy=False)
        width = self.offset[1] + self.shape[1] + 1
        if true.size and (true.min() < 0):
            raise ValueError("true_pairs must hold non-negative indices")
        lo = np.asarray(self.offset, dtype=np.int64)
        hi = lo + np.asarray(self.shape, dtype=np.int64)
        outside = ((true < lo) | (true >= hi)).any(axis=1) if true.size else np.zeros(0, bool)
        if outside.any():
            k = int(np.argmax(outside))
            raise ValueError(
                f"true_pairs[{k}] = {true[k].tolist()} lies outside the joined index range: rows "
                f"[{lo[0]}, {hi[0]}) x columns [{lo[1]}, {hi[1]}) (offset + shape); {int(outside.sum())} "
                "pair(s) outside -- were they computed for other data or without the offsets?")
        if true.size:
            width = max(width, int(true[:, 1].max()) + 1)
        pred = to_numpy(self.pairs).reshape(-1, 2).astype(np.int64, copy=False)
        pred_keys = pred[:, 0] * width + pred[:, 1]
        true_keys = np.unique(true[:, 0] * width + true[:, 1])
        tp = int(np.isin(pred_keys, true_keys, assume_unique=True).sum())
        n_pred, n_true = len(pred_keys), len(true_keys)
        precision = tp / n_pred if n_pred else float("nan")
        recall = tp / n_true if n_true else float("nan")
        if n_pred and n_true and precision + recall > 0:
            f1 = 2 * precision * recall / (precision + recall)
        elif n_pred and n_true:
            f1 = 0.0
        else:
            f1 = float("nan")
        return PrecisionRecall(precision, recall, f1, tp, n_pred, n_true)

    @classmethod
    def concatenate(cls, parts: Sequence["FiberProduct"]) -> "FiberProduct":
        """Merge results of disjoint blocks ``X[i0:i1] x Y[j0:j1]`` into one.

        The blocks (``offset`` + ``shape`` rectangles) must not overlap and must
        tile their bounding box, so that ``count`` and ``rho`` stay meaningful;
        all parts must share ``eps`` and ``metric``.  The merged result covers
        the bounding box: ``offset`` is its corner and ``shape`` its size.
        """
        parts = list(parts)
        if not parts:
            raise ValueError("parts must contain at least one FiberProduct")
        for k, p in enumerate(parts):
            if not isinstance(p, FiberProduct):
                raise TypeError(f"parts[{k}] must be a FiberProduct, got {type(p).__name__}")
            if p.eps != parts[0].eps or p.metric != parts[0].metric:
                raise ValueError(
                    f"parts must share eps and metric: parts[0] has ({parts[0].eps}, "
                    f"{parts[0].metric!r}), parts[{k}] has ({p.eps}, {p.metric!r})"
                )
        rect = np.array([[p.offset[0], p.offset[0] + p.shape[0],
                          p.offset[1], p.offset[1] + p.shape[1]] for p in parts], dtype=np.int64)
        r0, r1, c0, c1 = rect[:, 0].min(), rect[:, 1].max(), rect[:, 2].min(), rect[:, 3].max()
        nonempty = (rect[:, 1] > rect[:, 0]) & (rect[:, 3] > rect[:, 2])
        nz = rect[nonempty]
        overlap = ((np.maximum(nz[:, None, 0], nz[None, :, 0]) < np.minimum(nz[:, None, 1], nz[None, :, 1]))
                   & (np.maximum(nz[:, None, 2], nz[None, :, 2]) < np.minimum(nz[:, None, 3], nz[None, :, 3])))
        np.fill_diagonal(overlap, False)
        if overlap.any():
            a, b = np.argwhere(overlap)[0]
            raise ValueError(f"parts overlap: blocks {a} and {b} (among the non-empty parts) share pairs")
        area = int(((nz[:, 1] - nz[:, 0]) * (nz[:, 3] - nz[:, 2])).sum())
        if nz.size and area != int((r1 - r0) * (c1 - c0)):
            raise ValueError(
                f"parts must tile their bounding box rows [{r0}, {r1}) x cols [{c0}, {c1}); "
                f"they cover {area} of {(r1 - r0) * (c1 - c0)} pairs"
            )
        ref = parts[0].pairs
        if is_torch(ref):
            pairs = torch.cat([p.pairs.to(ref.device) for p in parts])
            dist = torch.cat([p.distances.to(ref.device) for p in parts])
            width = int(c1) + 1
            order = torch.argsort(pairs[:, 0] * width + pairs[:, 1])
            pairs, dist = pairs[order], dist[order]
        else:
            pairs = np.concatenate([to_numpy(p.pairs).reshape(-1, 2) for p in parts]).astype(np.int64)
            dist = np.concatenate([to_numpy(p.distances) for p in parts]).astype(np.float64)
            order = np.lexsort((pairs[:, 1], pairs[:, 0]))
            pairs, dist = pairs[order], dist[order]
        if not nz.size:
            r0 = r1 = c0 = c1 = 0
        return cls(pairs, dist, parts[0].eps, parts[0].metric,
                   (int(r1 - r0), int(c1 - c0)), (int(r0), int(c0)))


@dataclass(frozen=True, eq=False)
class FiberCounts:
    r"""Result of :func:`fiber_counts`: the curve :math:`N(\varepsilon)`.

    Attributes
    ----------
    eps : array, shape=[g], float64
        The grid, in the order given.
    counts : array, shape=[g], int64
        :math:`N(\varepsilon_k)` (exact).
    n_pairs : int
        :math:`nm`, the number of pairs examined.
    metric : str
    """

    eps: Any
    counts: Any
    n_pairs: int
    metric: str

    @property
    def rho(self):
        r""":math:`\rho(\varepsilon_k) = N(\varepsilon_k)/(nm)` (NaN when ``nm == 0``)."""
        if self.n_pairs == 0:
            return self.counts * float("nan")
        return self.counts / self.n_pairs

    @classmethod
    def combine(cls, parts: Sequence["FiberCounts"]) -> "FiberCounts":
        """Sum the counts of disjoint blocks (same grid and metric)."""
        parts = list(parts)
        if not parts:
            raise ValueError("parts must contain at least one FiberCounts")
        grid = to_numpy(parts[0].eps)
        for k, p in enumerate(parts):
            if p.metric != parts[0].metric or not np.array_equal(to_numpy(p.eps), grid):
                raise ValueError(f"parts[{k}] has a different eps grid or metric than parts[0]")
        total = sum(to_numpy(p.counts).astype(np.int64) for p in parts)
        return cls(like(grid, parts[0].eps), like(total, parts[0].counts),
                   int(sum(p.n_pairs for p in parts)), parts[0].metric)


@dataclass(frozen=True, eq=False)
class DensityEstimate:
    r"""Result of :func:`estimate_density`: sampled :math:`\hat\rho(\varepsilon)` with a CI.

    Attributes
    ----------
    eps, rho, lower, upper : array, shape=[g], float64
        Grid, unbiased estimate ``hits / n_samples`` and the two-sided
        confidence interval ``[lower, upper]`` (pointwise in ``eps``).
    hits : array, shape=[g], int64
    n_samples : int
    confidence : float
    method : str
        ``"wilson"`` or ``"clopper-pearson"``.
    """

    eps: Any
    rho: Any
    lower: Any
    upper: Any
    hits: Any
    n_samples: int
    confidence: float
    method: str


# --------------------------------------------------------------------------- preparation
@dataclass
class _Prepared:
    exact_x: torch.Tensor  # rows whose float64 differences define the distance
    exact_y: torch.Tensor
    filt_x: torch.Tensor  # filter copies (float32, or float64 in the fallback)
    filt_y: torch.Tensor
    sq_x: torch.Tensor  # float64 squared norms of the filter rows
    sq_y: torch.Tensor
    norm_exact_max: float  # max norm of the exact rows (X and Y together)
    metric: str
    device: torch.device
    d: int
    u_gemm: float  # unit roundoff of the filter GEMM
    u_in: float  # unit roundoff of the cast exact -> filter rows
    tiny: float  # absolute error of an underflowing filter operation
    extra: dict = field(default_factory=dict)
    scale: float = 1.0  # Euclidean rows were divided by this power of two (overflow/underflow)


def _matmul_unit_roundoff(device: torch.device) -> float:
    """Unit roundoff of float32 matmul under the current torch precision setting."""
    precision = torch.get_float32_matmul_precision()
    if device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        precision = "high" if precision == "highest" else precision
    return {"highest": _U32, "high": 2.0**-10, "medium": 2.0**-7}.get(precision, 2.0**-7)


def _check_projector(P: Any, d: int, device: torch.device) -> torch.Tensor:
    """Return a float64 d x k matrix B with ``Pi_s z = B B^T z`` (or the d x d projector)."""
    P = check_array(P, "shared_projector", ndim=2)
    Pt = torch.as_tensor(to_numpy(P, dtype=np.float64)) if not is_torch(P) else P.detach().to("cpu", torch.float64)
    if Pt.shape[0] != d:
        raise ValueError(f"shared_projector must have {d} rows (the embedding dimension), got shape {tuple(Pt.shape)}")
    k = Pt.shape[1]
    tol = 1e-8 * max(1, d)
    if k == d and torch.allclose(Pt, Pt.T, atol=tol) and torch.allclose(Pt @ Pt, Pt, atol=tol):
        return Pt.to(device)  # orthogonal projector: features P x keep distances ||P(x - y)||
    if k <= d and torch.allclose(Pt.T @ Pt, torch.eye(k, dtype=torch.float64), atol=tol):
        return Pt.to(device)  # orthonormal basis: features B^T x, ||B^T(x - y)|| = ||Pi(x - y)||
    raise ValueError(
        "shared_projector must be an orthonormal basis (d x k with B^T B = I) or an orthogonal "
        f"projector (d x d, symmetric, P @ P = P); got shape {tuple(Pt.shape)} that is neither"
    )


def _as_tensor(x: Any, name: str, device: torch.device) -> torch.Tensor:
    """``x`` (detached) on ``device`` in its own compute dtype (:func:`geoalign._adapter.compute_dtype`)."""
    if x.is_complex() if is_torch(x) else np.iscomplexobj(x):
        raise TypeError(f"{name} must be real, got dtype {x.dtype}")
    dtype = compute_dtype(x)
    if is_torch(x):
        return x.detach().to(device=device, dtype=dtype)
    arr = np.asarray(x).astype(np.float32 if dtype == torch.float32 else np.float64, copy=False)
    return torch.from_numpy(np.ascontiguousarray(arr)).to(device)


def _sq_norms64(t: torch.Tensor) -> torch.Tensor:
    """Squared row norms accumulated in float64 (NumPy on CPU: single pass, no thread barriers)."""
    if t.device.type == "cpu":
        a = t.numpy()
        if _fiber is not None and a.dtype in _FLOATS:  # compiled: no float64 copy of the rows
            out = np.empty(a.shape[0], dtype=np.float64)
            _fiber.sqdist(a, np.zeros((1, a.shape[1]), a.dtype), np.arange(a.shape[0], dtype=np.int64),
                          np.zeros(a.shape[0], dtype=np.int64), out)
            return torch.from_numpy(out)
        a64 = a if a.dtype == np.float64 else a.astype(np.float64)
        return torch.from_numpy(np.einsum("ij,ij->i", a64, a64))
    t64 = t.to(torch.float64)
    return (t64 * t64).sum(1)


def _max_abs(t: torch.Tensor) -> float:
    if not t.numel():
        return 0.0
    lo, hi = torch.aminmax(t)  # one pass, no |t| temporary
    return max(-float(lo), float(hi))


def _out_of_range(a):
    """Whether magnitudes ``a`` would overflow or underflow when squared and summed in float64."""
    return (a > _SAFE_HI) | ((a < _SAFE_LO) & (a > 0))


def _rescale_euclidean(ex: torch.Tensor, ey: torch.Tensor):
    """Divide both point sets by a power of two when their squares would over/underflow.

    A power of two is exact in binary floating point, so the distances of the
    scaled rows times the scale are the distances of the rows (up to the
    underflow of components ~2^-1000 smaller than the largest one).  Data
    within the safe range are left untouched (scale 1).
    """
    biggest = max(_max_abs(ex), _max_abs(ey))
    if not bool(_out_of_range(np.float64(biggest))):
        return ex, ey, 1.0
    scale = math.ldexp(1.0, math.frexp(biggest)[1])
    return ex / scale, ey / scale, scale


def _rescale_rows(t: torch.Tensor) -> torch.Tensor:
    """Angular metrics: scale each out-of-range row by a power of two (its direction is unchanged)."""
    if t.numel() == 0:
        return t
    big = t.abs().amax(1)
    bad = _out_of_range(big)
    if not bool(bad.any()):
        return t
    factor = torch.where(bad, torch.ldexp(torch.ones_like(big), -torch.frexp(big).exponent),
                         torch.ones_like(big))
    return t * factor.unsqueeze(1)


def _prepare(X, Y, metric, shared_projector, device, name_x="X", name_y="Y") -> _Prepared:
    check_choice(metric, "metric", METRICS)
    X = check_array(X, name_x, ndim=2, finite=False)
    Y = check_array(Y, name_y, ndim=2, finite=False)
    if X.shape[1] != Y.shape[1]:
        raise ValueError(
            f"{name_x} and {name_y} must have the same dimension d: {name_x} has shape "
            f"{tuple(X.shape)}, {name_y} has shape {tuple(Y.shape)}"
        )
    check_same_device(**{name_x: X, name_y: Y})
    check_finite(X, name_x)
    check_finite(Y, name_y)
    dev = torch.device(resolve_device(device, X, Y))
    ex, ey = _as_tensor(X, name_x, dev), _as_tensor(Y, name_y, dev)
    # huge (>= 2^400) or tiny (<= 2^-400) magnitudes: rescale by a power of two so that no
    # squared norm overflows or underflows (Euclidean: globally, distances scaled back exactly;
    # angular metrics: per row, the direction is unchanged)
    scale = 1.0
    if metric == "euclidean":
        ex, ey, scale = _rescale_euclidean(ex, ey)
    else:
        ex, ey = _rescale_rows(ex), _rescale_rows(ey)
    if shared_projector is not None:
        B = _check_projector(shared_projector, ex.shape[1], dev)
        ex, ey = ex.to(torch.float64) @ B, ey.to(torch.float64) @ B
    if metric != "euclidean":
        ex, ey = _rescale_rows(ex.to(torch.float64)), _rescale_rows(ey.to(torch.float64))
        for t, name in ((ex, name_x), (ey, name_y)):
            zero = torch.linalg.vector_norm(t, dim=1) == 0
            if bool(zero.any()):
                what = "projected row" if shared_projector is not None else "row"
                raise ValueError(
                    f"{name} has {int(zero.sum())} zero {what}(s) (first: {int(zero.nonzero()[0, 0])}); "
                    f"metric={metric!r} needs a direction for every row"
                )
        ex = ex / torch.linalg.vector_norm(ex, dim=1, keepdim=True)
        ey = ey / torch.linalg.vector_norm(ey, dim=1, keepdim=True)
    d = ex.shape[1]
    sq_ex, sq_ey = _sq_norms64(ex), _sq_norms64(ey)
    norm_max = math.sqrt(max([float(t.max()) for t in (sq_ex, sq_ey) if t.numel()], default=0.0))
    u_gemm = _matmul_unit_roundoff(dev)
    # float32 filter unless the norms overflow float32 or the roundoff makes the bound useless
    use32 = norm_max < 1e17 and (d + 2) * u_gemm < 0.01
    if use32:
        fx, fy = ex.to(torch.float32), ey.to(torch.float32)
        u_in = _U32 if (ex.dtype == torch.float64 or ey.dtype == torch.float64) else 0.0
        tiny = _TINY32
    else:
        fx, fy = ex.to(torch.float64), ey.to(torch.float64)
        u_gemm, u_in, tiny = _U64, 0.0, 2.0**-1074
    sq_x = sq_ex if fx.dtype == ex.dtype else _sq_norms64(fx)
    sq_y = sq_ey if fy.dtype == ey.dtype else _sq_norms64(fy)
    # max filter-row norms, rounded up (inputs to the a-priori error bound)
    max_norms = tuple(float(t.max()) ** 0.5 * (1 + 1e-12) if t.numel() else 0.0 for t in (sq_x, sq_y))
    return _Prepared(ex, ey, fx.contiguous(), fy.contiguous(), sq_x, sq_y, norm_max,
                     metric, dev, d, u_gemm, u_in, tiny, {"max_norms": max_norms}, scale)


# --------------------------------------------------------------------------- thresholds
def _defining_sq_threshold(eps: float, metric: str, d: int) -> float:
    """Bound on the exact squared difference norm of any pair whose float64 distance is <= eps."""
    rel = max(1e-9, 8.0 * (d + 8) * _U64)  # covers every float64 rounding of the defining formula
    if metric == "euclidean":
        base = eps * eps
    elif metric == "cosine":
        base = 2.0 * eps
    else:
        base = 4.0 if eps >= math.pi else 4.0 * math.sin(min(eps * (1 + rel) / 2, math.pi / 2)) ** 2
    return base * (1.0 + rel) + 1e-300


def _filter_row_thresholds(prep: _Prepared, sq_threshold: float, rows: slice) -> torch.Tensor:
    """Per-row threshold on ``||y||^2 - 2<x, y>`` (computed in the filter dtype) that no pair
    with exact squared difference norm ``<= sq_threshold`` can exceed."""
    d, u, ui, tiny = prep.d, prep.u_gemm, prep.u_in, prep.tiny
    mx, my = prep.extra["max_norms"]
    # distance between the filter copies vs the exact rows (input rounding, incl. underflow)
    radius = math.sqrt(sq_threshold) + ui * 1.0001 * 2 * prep.norm_exact_max + 2 * math.sqrt(d) * tiny
    gamma = (d + 2) * u / (1 - (d + 2) * u)
    # GEMM accumulation over d+1 terms bounded by 2|x||y| + ||y||^2 <= mx^2 + 2 my^2, plus the
    # rounding of ||y||^2 to the filter dtype, plus absolute error of underflowing products
    err = gamma * (mx * mx + 2.0001 * my * my) + 2.0001 * u * my * my + 4 * (d + 4) * tiny
    t = radius * radius + err - prep.sq_x[rows]
    if prep.filt_x.dtype == torch.float32:
        t32 = t.to(torch.float32)
        low = t32.to(torch.float64) < t
        t32 = torch.where(low, torch.nextafter(t32, torch.full_like(t32, math.inf)), t32)
        return t32.unsqueeze(1)
    return t.unsqueeze(1)


# --------------------------------------------------------------------------- exact distances
def _exact_distances(prep: _Prepared, ii: torch.Tensor, jj: torch.Tensor, chunk: int) -> torch.Tensor:
    """Float64 defining distance of the pairs (ii, jj), in chunks of ``chunk`` pairs."""
    if prep.device.type == "cpu":
        # NumPy / compiled code on CPU: these gathers are small and torch's thread-pool
        # barriers dominate them (badly so on a loaded machine)
        ex, ey = prep.exact_x.numpy(), prep.exact_y.numpy()
        ii_np, jj_np = ii.numpy(), jj.numpy()
        out_np = np.empty(ii_np.shape[0], dtype=np.float64)
        if _fiber is not None and ex.dtype in _FLOATS and ey.dtype in _FLOATS:
            _fiber.sqdist(ex, ey, np.ascontiguousarray(ii_np, np.int64),
                          np.ascontiguousarray(jj_np, np.int64), out_np)
        else:
            # float64 temporaries of ~1 MB stay in the L2 cache (measured: 49k pairs, d = 256,
            # 2.5x faster than 90 MB chunks); each row's sum is the same whatever the chunking
            chunk = min(chunk, max(1, 2**20 // (8 * max(prep.d, 1))))
            for s in range(0, ii_np.shape[0], chunk):
                _sqdist_numpy(ex, ey, ii_np[s:s + chunk], jj_np[s:s + chunk], out_np[s:s + chunk])
        out_np = _sq_to_metric(out_np, prep.metric, np)
        if prep.scale != 1.0:
            out_np *= prep.scale
        return torch.from_numpy(out_np)
    out = torch.empty(ii.shape[0], dtype=torch.float64, device=prep.device)
    for s in range(0, ii.shape[0], chunk):
        diff = prep.exact_x[ii[s:s + chunk]].to(torch.float64)
        diff.sub_(prep.exact_y[jj[s:s + chunk]])
        out[s:s + chunk] = _sq_to_metric((diff * diff).sum(1), prep.metric, torch)
    if prep.scale != 1.0:
        out *= prep.scale
    return out


def _sqdist_numpy(ex: np.ndarray, ey: np.ndarray, ii: np.ndarray, jj: np.ndarray,
                  out: np.ndarray) -> None:
    """``out[p] = sum_k (ex[ii[p], k] - ey[jj[p], k])^2`` in float64, NumPy's pairwise sum
    (what ``np.linalg.norm(x - y)`` squares; ``_fiber.sqdist`` sums in the same order)."""
    diff = ex[ii].astype(np.float64)
    diff -= ey[jj]
    diff *= diff
    np.add.reduce(diff, axis=1, out=out)


def _sq_to_metric(sq, metric: str, xp):
    """Metric value from the float64 squared norm of the difference (chord form for angles)."""
    if metric == "euclidean":
        return xp.sqrt(sq)
    if metric == "cosine":
        return 0.5 * sq
    return 2.0 * xp.arcsin(xp.minimum(xp.sqrt(sq) * 0.5, 1.0) if xp is np else
                           xp.clamp(xp.sqrt(sq) * 0.5, max=1.0))


def pair_distances(X: Any, Y: Any, metric: str = "euclidean", *, shared_projector: Any = None,
                   device: Any = None):
    r"""Defining float64 distance of row-aligned pairs ``(X[k], Y[k])``.

    This is the brute-force reference that :func:`fiber_product` agrees with
    exactly (see the module docstring for the formulas).

    Parameters
    ----------
    X, Y : array-like, shape=[k, d]
    metric : {"euclidean", "cosine", "geodesic"}

    Returns
    -------
    distances : array, shape=[k], float64, same kind as ``X``
    """
    prep = _prepare(X, Y, metric, shared_projector, device)
    if prep.exact_x.shape[0] != prep.exact_y.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows, got {prep.exact_x.shape[0]} "
                         f"and {prep.exact_y.shape[0]}")
    idx = torch.arange(prep.exact_x.shape[0], device=prep.device)
    return like(_exact_distances(prep, idx, idx, 1 << 16), X if is_torch(X) else Y)


# --------------------------------------------------------------------------- blocked engine
def _block_shape(block_size, memory_budget: int, n: int, m: int, d: int, filt_bytes: int,
                 device: torch.device) -> tuple[int, int]:
    per_elem = filt_bytes + 1  # distance buffer + boolean mask
    if block_size is None:
        if device.type == "cpu":
            bx, by = _CPU_BLOCK
        else:
            bx, by = 4096, 16384
        bx, by = max(1, min(bx, n)), max(1, min(by, m))
        while bx * by * per_elem > memory_budget and (bx > 1 or by > 1):
            if by >= bx and by > 1:
                by = (by + 1) // 2
            else:
                bx = (bx + 1) // 2
    else:
        if isinstance(block_size, (tuple, list)):
            if len(block_size) != 2:
                raise ValueError(f"block_size must be an int or a pair (rows, cols), got {block_size!r}")
            bx = check_int(block_size[0], "block_size[0]", minimum=1)
            by = check_int(block_size[1], "block_size[1]", minimum=1)
        else:
            bx = by = check_int(block_size, "block_size", minimum=1)
        bx, by = max(1, min(bx, n)), max(1, min(by, m))
    if bx * by * per_elem > memory_budget:
        raise ValueError(
            f"block_size {bx}x{by} needs {bx * by * per_elem} bytes, more than "
            f"memory_budget={memory_budget}; give a smaller block_size or a larger memory_budget"
        )
    return bx, by


def _scan(prep: _Prepared, sq_threshold: float, block_size, memory_budget: int, progress,
          desc: str, reduce_block, num_threads: int | None = None) -> list:
    """Run the blocked filter + exact recomputation over all pairs.

    ``reduce_block(ii, jj, dist)`` receives the candidates of one block (global indices, no
    offsets, exact float64 distances) and returns what to keep; the kept values are returned
    in row-block-major, column-block-minor order.

    On the CPU the row blocks are spread over ``num_threads`` (default
    ``torch.get_num_threads()``) worker threads,
    each running single-threaded kernels on its own buffers: no barrier per small operation,
    which keeps the join close to GEMM speed even when the cores are shared.
    """
    n, m, d = prep.filt_x.shape[0], prep.filt_y.shape[0], prep.d
    if n == 0 or m == 0:
        return []
    on_cpu = prep.device.type == "cpu"
    if num_threads is None:
        num_threads = torch.get_num_threads()
    workers = max(1, min(num_threads, 64)) if on_cpu else 1
    fbytes = prep.filt_x.element_size()
    bx, by = _block_shape(block_size, memory_budget // workers, n, m, d, fbytes, prep.device)
    chunk = max(1, memory_budget // workers // (3 * 8 * max(d, 1)))
    ny = prep.sq_y.to(prep.filt_y.dtype)
    fy = prep.filt_y
    # compiled threshold pass: CPU, float32 filter, the extension built
    fused = on_cpu and _fiber is not None and fy.dtype == torch.float32
    ny_np = ny.numpy() if fused else None
    local = threading.local()

    abort = threading.Event()  # set by the first failing block: the others stop at once

    def run_row_block(r0: int) -> list:
        if abort.is_set():
            return []
        try:
            return _run_row_block(r0)
        except BaseException:
            abort.set()
            raise

    def _fused_row_block(r0: int, r1: int, xs: torch.Tensor, thr: np.ndarray) -> list:
        # g = <x, y> per block; one compiled pass over it while it is in cache selects
        # ||y||^2 - 2 g <= thr (the epilogue of torch.addmm, same roundings).  The candidates
        # of consecutive column blocks are recomputed together (fewer, larger calls), at most
        # `chunk` pairs plus one block's hits at a time.
        rb, kept, pend_i, pend_j, pending = r1 - r0, [], [], [], 0

        def flush():
            ii, jj = torch.from_numpy(np.concatenate(pend_i)), torch.from_numpy(np.concatenate(pend_j))
            pend_i.clear()
            pend_j.clear()
            kept.append(reduce_block(ii, jj, _exact_distances(prep, ii, jj, chunk)))

        for c0 in range(0, m, by):
            if abort.is_set():
                break
            c1 = min(m, c0 + by)
            cb = c1 - c0
            g = local.buf[: rb * cb].view(rb, cb)
            torch.mm(xs, fy[c0:c1].T, out=g)
            k = _fiber.select(g.numpy(), ny_np[c0:c1], thr, local.hits)
            if k > local.hits.shape[0]:  # more hits than room: grow, select again
                local.hits = np.empty(1 << (k - 1).bit_length(), dtype=np.int64)
                _fiber.select(g.numpy(), ny_np[c0:c1], thr, local.hits)
            if k:
                ii, jj = np.divmod(local.hits[:k], cb)
                ii += r0
                jj += c0
                pend_i.append(ii)
                pend_j.append(jj)
                pending += k
                if pending >= chunk:
                    flush()
                    pending = 0
        if pending and not abort.is_set():
            flush()
        return kept

    def _run_row_block(r0: int) -> list:
        if not hasattr(local, "buf"):
            local.buf = torch.empty(bx * by, dtype=prep.filt_x.dtype, device=prep.device)
            # the compiled pass needs no mask, only room for the hits' indices (grown on demand)
            local.mask = None if fused else torch.empty(bx * by, dtype=torch.bool, device=prep.device)
            local.hits = np.empty(1 << 12, dtype=np.int64)
        buf, mask = local.buf, local.mask
        r1 = min(n, r0 + bx)
        rb = r1 - r0
        xs = prep.filt_x[r0:r1]
        thr = _filter_row_thresholds(prep, sq_threshold, slice(r0, r1))
        thr_np = thr.numpy() if on_cpu else None
        if fused:
            return _fused_row_block(r0, r1, xs, thr_np[:, 0])
        kept = []
        for c0 in range(0, m, by):
            if abort.is_set():
                break
            c1 = min(m, c0 + by)
            cb = c1 - c0
            g = buf[: rb * cb].view(rb, cb)
            mk = mask[: rb * cb].view(rb, cb)
            # g = ||y||^2 - 2 <x, y>  (the GEMM with the column norms fused in)
            torch.addmm(ny[c0:c1], xs, fy[c0:c1].T, beta=1, alpha=-2, out=g)
            if on_cpu:  # NumPy's comparison into a bool buffer and SIMD flatnonzero are ~15x
                # and ~3x faster than torch.le(out=) and torch.nonzero on CPU
                flat = np.flatnonzero(np.less_equal(g.numpy(), thr_np, out=mk.numpy()))
                if flat.size == 0:
                    continue
                flat = torch.from_numpy(flat)
                ii, jj = flat // cb + r0, flat % cb + c0
            else:
                torch.le(g, thr, out=mk)
                hit = mk.nonzero()
                if hit.shape[0] == 0:
                    continue
                ii, jj = hit[:, 0] + r0, hit[:, 1] + c0
            kept.append(reduce_block(ii, jj, _exact_distances(prep, ii, jj, chunk)))
        return kept

    if progress is None:
        progress = n * m >= 10**9
    from tqdm.auto import tqdm

    starts = range(0, n, bx)
    bar = tqdm(total=len(starts), desc=desc, disable=not progress, unit="block")
    out: list = []
    try:
        if on_cpu:
            with torch_num_threads(1):
                if workers == 1:
                    for r0 in starts:
                        out.extend(run_row_block(r0))
                        bar.update()
                else:
                    with ThreadPoolExecutor(workers) as pool:
                        for kept in pool.map(run_row_block, starts):
                            out.extend(kept)
                            bar.update()
        else:
            for r0 in starts:
                out.extend(run_row_block(r0))
                bar.update()
    finally:
        bar.close()
    return out


def _check_threads(num_threads):
    return None if num_threads is None else check_int(num_threads, "num_threads", minimum=1)


def _check_offsets(row_offset, col_offset):
    return (check_int(row_offset, "row_offset", minimum=0), check_int(col_offset, "col_offset", minimum=0))


def _setup_join(X, Y, eps, metric, memory_budget, row_offset, col_offset, num_threads,
                shared_projector, device):
    """Validated arguments and the preparation shared by the joins."""
    eps = check_nonnegative_scalar(eps, "eps")
    memory_budget = check_int(memory_budget, "memory_budget", minimum=1024)
    offsets = _check_offsets(row_offset, col_offset)
    num_threads = _check_threads(num_threads)
    prep = _prepare(X, Y, metric, shared_projector, device)
    return eps, memory_budget, offsets, num_threads, prep


def fiber_product(
    X: Any,
    Y: Any,
    eps: float,
    metric: str = "euclidean",
    *,
    block_size: int | tuple[int, int] | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    device: Any = None,
    shared_projector: Any = None,
    row_offset: int = 0,
    col_offset: int = 0,
    progress: bool | None = None,
    num_threads: int | None = None,
    max_pairs: int | str | None = "auto",
) -> FiberProduct:
    r"""Exact ε-join :math:`F_\varepsilon = \{(i,j) : \operatorname{dist}(x_i, y_j) \le \varepsilon\}`.

    Parameters
    ----------
    X : array-like or torch.Tensor, shape=[n, d]
    Y : array-like or torch.Tensor, shape=[m, d]
        Same kind of device as ``X`` when tensors.  Integer inputs are
        converted to float64.  Empty ``X`` or ``Y`` gives an empty result.
    eps : float
        Tolerance, finite and ``>= 0`` (closed ball; ``eps=0`` gives
        :math:`F_0`, the exact fiber product).
    metric : {"euclidean", "cosine", "geodesic"}
    block_size : int or (int, int), optional
        Rows of ``X`` and of ``Y`` per block (default: cache-sized on CPU,
        large on GPU, always within ``memory_budget``).
    memory_budget : int
        Bytes for the block buffer, its mask and the float64 recomputation
        (default 256 MiB).
    device : str or torch.device, optional
        Where to compute (default: the tensors' device, CPU for NumPy).
    shared_projector : array-like, optional
        Orthonormal basis ``B`` (shape ``[d, k]``) or orthogonal projector
        ``P`` (shape ``[d, d]``) of the shared subspace :math:`Z_s`: the join is
        computed on :math:`\Pi_s(x - y)` only, i.e. on the float64 features
        ``X @ B`` / ``X @ P`` (docs/design/mathematics.md, Statement 4).
    row_offset, col_offset : int
        Added to the reported indices (for block-wise distributed joins; see
        :meth:`FiberProduct.concatenate`).
    progress : bool, optional
        tqdm progress over row blocks (default: only for ``n*m >= 1e9``).
    num_threads : int, optional
        CPU only: worker threads over row blocks, each running single-threaded
        kernels (default ``torch.get_num_threads()``; use 1 inside a Dask or
        multiprocessing worker that is already parallel).  While they run,
        torch's intra-op thread count is set to 1 and restored afterwards.
    max_pairs : int, "auto" or None
        Most pairs to return.  ``"auto"`` (default): half the memory available
        now (``MemAvailable``, a cgroup limit, or free pages; the free memory of
        the GPU too when computing there) divided by :data:`BYTES_PER_PAIR`
        (the peak bytes the join needs per returned pair), at least
        :math:`2^{20}` pairs.  When ``n*m`` exceeds it, the output size is
        first estimated from a seeded sample of rows of ``X`` (256, fewer for
        a large ``m``: about :math:`2^{22}` pairs are examined); a join
        estimated at more than twice the limit, or found to exceed it while
        running, raises :class:`TooManyPairsError`
        (suggesting :func:`fiber_counts`, a smaller ``eps``,
        :func:`iter_fiber_product` or the Dask join) instead of exhausting the
        memory.  ``None``: no limit.

    Returns
    -------
    FiberProduct
        ``pairs`` (int64, sorted) and float64 ``distances`` as tensors on the
        input device when ``X`` or ``Y`` is a tensor, NumPy arrays otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> fp = fiber_product(np.array([[0., 0.]]), np.array([[3., 4.], [3., 5.]]), eps=5)
    >>> fp.pairs.tolist(), fp.distances.tolist()
    ([[0, 0]], [5.0])
    """
    eps, memory_budget, offsets, num_threads, prep = _setup_join(
        X, Y, eps, metric, memory_budget, row_offset, col_offset, num_threads, shared_projector,
        device)
    n, m = int(prep.filt_x.shape[0]), int(prep.filt_y.shape[0])
    limit = _resolve_max_pairs(max_pairs, prep.device, n * m)
    sq_thr = _defining_sq_threshold(eps / prep.scale, metric, prep.d)
    if limit is not None and n * m > limit:
        _check_sampled_size(prep, eps, sq_thr, limit, block_size, memory_budget, num_threads)
    kept = _scan(prep, sq_thr, block_size, memory_budget, progress, "fiber_product",
                 _within(eps, limit, n, m), num_threads)
    return _assemble(kept, prep, offsets, X if is_torch(X) else Y, eps, metric)


class TooManyPairsError(ValueError, MemoryError):
    """A join would return more pairs than ``max_pairs`` allows (raised before memory runs out)."""


#: peak bytes :func:`fiber_product` needs per returned pair: the kept (i, j, distance) of the
#: blocks (24), their concatenation (24), the sort keys and order (16), the sorted output (24)
BYTES_PER_PAIR = 88
_MIN_AUTO_PAIRS = 1 << 20  # max_pairs="auto" never allows fewer pairs than this


def available_memory(device: Any = None) -> int:
    """Bytes of memory available now: ``MemAvailable`` (Linux), capped by a cgroup limit, else
    free physical pages; on a CUDA ``device`` also at most its free memory."""
    avail = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    if avail is None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        with contextlib.suppress(OSError, ValueError):
            limit = int(Path(limit_file).read_text(encoding="ascii").strip())
            usage = int(Path(usage_file).read_text(encoding="ascii").strip())
            if limit < 2**60:
                avail = min(avail if avail is not None else limit, max(0, limit - usage))
            break
    if avail is None:
        avail = 4 * 2**30  # unknown platform: assume a modest 4 GiB
    if device is not None and torch.device(device).type == "cuda":
        with contextlib.suppress(RuntimeError):
            avail = min(avail, int(torch.cuda.mem_get_info(torch.device(device))[0]))
    return int(avail)


def _resolve_max_pairs(max_pairs: Any, device, n_pairs: int) -> int | None:
    if max_pairs is None:
        return None
    if isinstance(max_pairs, str):
        check_choice(max_pairs, "max_pairs", ("auto",))
        if n_pairs <= _MIN_AUTO_PAIRS:  # cannot exceed the floor: no need to ask the OS
            return _MIN_AUTO_PAIRS
        return max(_MIN_AUTO_PAIRS, available_memory(device) // 2 // BYTES_PER_PAIR)
    return check_int(max_pairs, "max_pairs", minimum=0)


def _too_many(what: str, limit: int, eps: float, n: int, m: int) -> TooManyPairsError:
    return TooManyPairsError(
        f"fiber_product: {what}, more than max_pairs={limit} "
        f"(~{limit * BYTES_PER_PAIR / 2**30:.2g} GiB at {BYTES_PER_PAIR} bytes per pair; "
        f"max_pairs='auto' allows half the available memory) for eps={eps} over {n} x {m} pairs. "
        "Use fiber_counts(X, Y, eps_grid) if N(eps) is enough, a smaller eps, "
        "iter_fiber_product(...) to stream the pairs block by block, or "
        "geoalign.distributed_fiber_product (Dask) to spread them over workers; "
        "max_pairs=None lifts the limit")


def _within(eps: float, limit: int | None, n: int, m: int):
    """``reduce_block`` keeping the pairs within ``eps``, raising once more than ``limit`` are kept."""
    lock = threading.Lock()
    total = [0]

    def keep_within(ii, jj, dist):
        if dist.device.type == "cpu":  # NumPy: boolean indexing of small tensors is slow in torch
            keep = dist.numpy() <= eps
            ii, jj, dist = (torch.from_numpy(t.numpy()[keep]) for t in (ii, jj, dist))
        else:
            keep = dist <= eps
            ii, jj, dist = ii[keep], jj[keep], dist[keep]
        if limit is not None:
            with lock:
                total[0] += int(ii.shape[0])
                if total[0] > limit:
                    raise _too_many(f"{total[0]} pairs found before stopping (join unfinished)", limit,
                                    eps, n, m)
        return ii, jj, dist

    return keep_within


def _rows_of(prep: _Prepared, rows) -> _Prepared:
    """The same preparation restricted to some rows of ``X`` (slice or sorted index tensor)."""
    return replace(prep, exact_x=prep.exact_x[rows], filt_x=prep.filt_x[rows].contiguous(),
                   sq_x=prep.sq_x[rows])


def _check_sampled_size(prep: _Prepared, eps: float, sq_thr: float, limit: int, block_size,
                        memory_budget: int, num_threads) -> None:
    """Estimate ``N(eps)`` from a seeded sample of rows of ``X``; raise if it exceeds ``limit``."""
    n, m = int(prep.filt_x.shape[0]), int(prep.filt_y.shape[0])
    n_sample = min(n, 256, max(16, (1 << 22) // max(m, 1)))  # at most ~4M pairs examined
    rows = np.sort(np.random.default_rng(0).choice(n, n_sample, replace=False))
    sub = _rows_of(prep, torch.as_tensor(rows, device=prep.device))

    def count(ii, jj, dist):
        return int((dist <= eps).sum())

    hits = sum(_scan(sub, sq_thr, block_size, memory_budget, False, "fiber_product sample",
                     count, num_threads))
    estimate = hits * n / n_sample
    # refuse up front only when the estimate is clearly above the limit (exact when the sample is
    # all of X); a join near the limit runs and the running count stops it exactly at the limit
    if hits > limit or estimate > (1.0 if n_sample == n else 2.0) * limit:
        raise _too_many(f"about {estimate:.3g} pairs expected ({hits} in {n_sample} sampled "
                        f"rows of X)", limit, eps, n, m)


def _assemble(kept: list, prep: _Prepared, offsets: tuple, ref: Any, eps: float,
              metric: str) -> FiberProduct:
    """Sorted :class:`FiberProduct` from the kept ``(ii, jj, dist)`` of the blocks (consumes ``kept``)."""
    ii_all, jj_all, d_all = [k[0] for k in kept], [k[1] for k in kept], [k[2] for k in kept]
    kept.clear()
    width = max(1, prep.filt_y.shape[0])
    if prep.device.type == "cpu":  # NumPy: the sort of a few int64 keys, no thread barriers
        ii = np.concatenate([a.numpy() for a in ii_all]) if ii_all else np.empty(0, np.int64)
        jj = np.concatenate([a.numpy() for a in jj_all]) if jj_all else np.empty(0, np.int64)
        dist = np.concatenate([a.numpy() for a in d_all]) if d_all else np.empty(0, np.float64)
        del ii_all, jj_all, d_all
        order = np.argsort(ii * width + jj, kind="stable")
        pairs = np.empty((order.size, 2), dtype=np.int64)
        pairs[:, 0] = ii[order] + offsets[0]
        pairs[:, 1] = jj[order] + offsets[1]
        dist = dist[order]
        if is_torch(ref):
            pairs, dist = torch.from_numpy(pairs).to(ref.device), torch.from_numpy(dist).to(ref.device)
    else:
        dev = prep.device
        if ii_all:
            ii, jj, dist = torch.cat(ii_all), torch.cat(jj_all), torch.cat(d_all)
            del ii_all, jj_all, d_all
            order = torch.argsort(ii * width + jj)
            pairs = torch.stack([ii[order] + offsets[0], jj[order] + offsets[1]], dim=1)
            dist = dist[order]
        else:
            pairs = torch.empty((0, 2), dtype=torch.int64, device=dev)
            dist = torch.empty(0, dtype=torch.float64, device=dev)
        if is_torch(ref):
            pairs, dist = pairs.to(ref.device), dist.to(ref.device)
        else:
            pairs, dist = pairs.cpu().numpy(), dist.cpu().numpy()
    shape = (int(prep.filt_x.shape[0]), int(prep.filt_y.shape[0]))
    return FiberProduct(pairs, dist, eps, metric, shape, offsets)


def iter_fiber_product(
    X: Any,
    Y: Any,
    eps: float,
    metric: str = "euclidean",
    *,
    block_rows: int | None = None,
    block_size: int | tuple[int, int] | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    device: Any = None,
    shared_projector: Any = None,
    row_offset: int = 0,
    col_offset: int = 0,
    progress: bool | None = None,
    num_threads: int | None = None,
) -> Iterator[FiberProduct]:
    r"""Stream :math:`F_\varepsilon` as one :class:`FiberProduct` per block of rows of ``X``.

    Block ``k`` holds the pairs of rows ``[r_k, r_{k+1})`` of ``X`` against all
    of ``Y`` (``offset = (row_offset + r_k, col_offset)``, ``shape = (r_{k+1} -
    r_k, m)``), with exactly the pairs and distances of :func:`fiber_product`;
    ``FiberProduct.concatenate(list(iter_fiber_product(...)))`` equals
    ``fiber_product(...)``.  Only one block is held at a time, so a join of
    any size runs in bounded memory: at most ``block_rows * m`` pairs per block.

    Parameters
    ----------
    X : array-like or torch.Tensor, shape=[n, d]
    Y : array-like or torch.Tensor, shape=[m, d]
    eps : float
    metric : {"euclidean", "cosine", "geodesic"}
    block_rows : int, optional
        Rows of ``X`` per yielded block (default: ``max(1, 2**22 // m)``, so that
        even a block where every pair qualifies stays below ~370 MB).
    block_size, memory_budget, device, shared_projector, row_offset, col_offset, num_threads
        As in :func:`fiber_product`.
    progress : bool, optional
        tqdm progress over the yielded blocks (default: only for ``n*m >= 1e9``).

    Yields
    ------
    FiberProduct

    Examples
    --------
    >>> import numpy as np
    >>> X, Y = np.arange(6.0).reshape(6, 1), np.array([[0.5], [4.0]])
    >>> [(b.offset, b.pairs.tolist()) for b in iter_fiber_product(X, Y, eps=0.5, block_rows=4)]
    [((0, 0), [[0, 0], [1, 0]]), ((4, 0), [[4, 1]])]
    """
    eps, memory_budget, offsets, num_threads, prep = _setup_join(
        X, Y, eps, metric, memory_budget, row_offset, col_offset, num_threads, shared_projector,
        device)
    n, m = int(prep.filt_x.shape[0]), int(prep.filt_y.shape[0])
    rows = max(1, (1 << 22) // max(m, 1)) if block_rows is None else \
        check_int(block_rows, "block_rows", minimum=1)
    sq_thr = _defining_sq_threshold(eps / prep.scale, metric, prep.d)
    ref = X if is_torch(X) else Y
    if progress is None:
        progress = n * m >= 10**9
    return _iter_blocks(prep, rows, sq_thr, eps, metric, offsets, ref, block_size, memory_budget,
                        bool(progress), num_threads)


def _iter_blocks(prep, rows, sq_thr, eps, metric, offsets, ref, block_size, memory_budget,
                 progress, num_threads) -> Iterator[FiberProduct]:
    # a generator of its own, so that bad arguments raise when iter_fiber_product is called
    from tqdm.auto import tqdm

    n = int(prep.filt_x.shape[0])
    starts = range(0, n, rows)
    with tqdm(total=len(starts), desc="iter_fiber_product", unit="block",
              disable=not progress) as bar:
        for r0 in starts:
            sub = _rows_of(prep, slice(r0, min(n, r0 + rows)))
            kept = _scan(sub, sq_thr, block_size, memory_budget, False, "", _within(eps, None, 0, 0),
                         num_threads)
            bar.update()
            yield _assemble(kept, sub, (offsets[0] + r0, offsets[1]), ref, eps, metric)


def _check_grid(eps_grid: Any, name: str = "eps_grid") -> np.ndarray:
    grid = check_array(eps_grid, name, ndim=(0, 1))
    grid = np.array(to_numpy(grid, dtype=np.float64).reshape(-1))  # own contiguous copy
    if grid.size == 0:
        raise ValueError(f"{name} must contain at least one tolerance")
    if (grid < 0).any():
        raise ValueError(f"{name} must be >= 0, got min {grid.min()}")
    return grid


def fiber_counts(
    X: Any,
    Y: Any,
    eps_grid: Any,
    metric: str = "euclidean",
    *,
    block_size: int | tuple[int, int] | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    device: Any = None,
    shared_projector: Any = None,
    progress: bool | None = None,
    num_threads: int | None = None,
) -> FiberCounts:
    r"""Exact :math:`N(\varepsilon_k) = |F_{\varepsilon_k}|` for a whole grid in ONE pass.

    One blocked GEMM pass filters with the largest tolerance; only its
    candidates get an exact float64 distance, which is bucketed into the
    sorted grid (a cumulative count), so the cost barely depends on the number
    of thresholds.

    Parameters
    ----------
    X : array-like or torch.Tensor, shape=[n, d]
    Y : array-like or torch.Tensor, shape=[m, d]
    eps_grid : array-like, shape=[g]
        Tolerances ``>= 0`` in any order (results follow the given order).
    metric, block_size, memory_budget, device, shared_projector, progress, num_threads
        As in :func:`fiber_product`.

    Returns
    -------
    FiberCounts
        ``counts`` (int64) and ``rho = counts / (n m)``, same kind as ``X``.
    """
    grid = _check_grid(eps_grid)
    memory_budget = check_int(memory_budget, "memory_budget", minimum=1024)
    prep = _prepare(X, Y, metric, shared_projector, device)
    order = np.argsort(grid, kind="stable")
    sorted_grid = torch.as_tensor(grid[order], device=prep.device)
    hist = torch.zeros(grid.size + 1, dtype=torch.int64, device=prep.device)
    sq_thr = _defining_sq_threshold(float(grid.max()) / prep.scale, metric, prep.d)

    def histogram(ii, jj, dist):
        # number of grid values strictly below d = first grid index whose ball contains the pair
        pos = torch.searchsorted(sorted_grid, dist.to(sorted_grid.device), side="left")
        return torch.bincount(pos, minlength=grid.size + 1)

    for h in _scan(prep, sq_thr, block_size, memory_budget, progress, "fiber_counts", histogram,
                   _check_threads(num_threads)):
        hist += h
    counts_sorted = torch.cumsum(hist, 0)[: grid.size].cpu().numpy()
    counts = np.empty(grid.size, dtype=np.int64)
    counts[order] = counts_sorted
    ref = X if is_torch(X) else Y
    n_pairs = int(prep.filt_x.shape[0]) * int(prep.filt_y.shape[0])
    return FiberCounts(like(grid, ref), like(counts, ref), n_pairs, metric)


def estimate_density(
    X: Any,
    Y: Any,
    eps: Any,
    n_samples: int,
    metric: str = "euclidean",
    *,
    confidence: float = 0.95,
    method: str = "wilson",
    seed: int | np.random.Generator | None = None,
    device: Any = None,
    shared_projector: Any = None,
) -> DensityEstimate:
    r"""Unbiased sampled estimate of :math:`\rho(\varepsilon)` with a confidence interval.

    ``n_samples`` pairs :math:`(I_s, J_s)` are drawn uniformly and
    independently from :math:`\{0..n-1\}\times\{0..m-1\}` (with replacement),
    so the hits :math:`H = \sum_s 1[\operatorname{dist}(x_{I_s}, y_{J_s}) \le
    \varepsilon]` are :math:`\mathrm{Binomial}(S, \rho(\varepsilon))` and
    :math:`\hat\rho = H/S` is unbiased.  The interval is

    * ``"wilson"`` (default): the Wilson score interval
      :math:`\frac{\hat\rho + z^2/2S \pm z\sqrt{\hat\rho(1-\hat\rho)/S + z^2/4S^2}}{1 + z^2/S}`,
      :math:`z = \Phi^{-1}(1 - \alpha/2)`; close to nominal coverage, never
      outside [0, 1], non-degenerate at :math:`H = 0`;
    * ``"clopper-pearson"``: the exact (conservative) Beta-quantile interval.

    The same samples serve every tolerance of a grid (pointwise intervals).

    Parameters
    ----------
    X : array-like or torch.Tensor, shape=[n, d]  (non-empty)
    Y : array-like or torch.Tensor, shape=[m, d]  (non-empty)
    eps : float or array-like, shape=[g]
    n_samples : int
    metric : {"euclidean", "cosine", "geodesic"}
    confidence : float in (0, 1)
    method : {"wilson", "clopper-pearson"}
    seed : int or numpy.random.Generator, optional

    Returns
    -------
    DensityEstimate
        Arrays of shape ``[g]`` (``g = 1`` for a scalar ``eps``), same kind as ``X``.
    """
    from scipy import stats

    grid = _check_grid(eps, "eps")
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    check_choice(method, "method", ("wilson", "clopper-pearson"))
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    prep = _prepare(X, Y, metric, shared_projector, device)
    n, m = prep.exact_x.shape[0], prep.exact_y.shape[0]
    if n == 0 or m == 0:
        raise ValueError(f"X and Y must be non-empty to sample pairs, got {n} and {m} rows")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    ii = torch.as_tensor(rng.integers(0, n, n_samples), device=prep.device)
    jj = torch.as_tensor(rng.integers(0, m, n_samples), device=prep.device)
    dist = _exact_distances(prep, ii, jj, max(1, DEFAULT_MEMORY_BUDGET // (24 * max(prep.d, 1))))
    dist = dist.cpu().numpy()
    hits = (dist[None, :] <= grid[:, None]).sum(1).astype(np.int64)
    S = n_samples
    p = hits / S
    alpha = 1.0 - confidence
    if method == "wilson":
        z = stats.norm.ppf(1 - alpha / 2)
        denom = 1 + z * z / S
        center = (p + z * z / (2 * S)) / denom
        half = z / denom * np.sqrt(p * (1 - p) / S + z * z / (4 * S * S))
        lower, upper = np.clip(center - half, 0, 1), np.clip(center + half, 0, 1)
        lower = np.where(hits == 0, 0.0, lower)
        upper = np.where(hits == S, 1.0, upper)
    else:
        lower = np.where(hits == 0, 0.0, stats.beta.ppf(alpha / 2, np.maximum(hits, 1), S - hits + 1))
        upper = np.where(hits == S, 1.0, stats.beta.ppf(1 - alpha / 2, hits + 1, np.maximum(S - hits, 1)))
    ref = X if is_torch(X) else Y
    return DensityEstimate(like(grid, ref), like(p, ref), like(lower, ref), like(upper, ref),
                           like(hits, ref), S, confidence, method)
