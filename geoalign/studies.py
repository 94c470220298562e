r"""Built-in studies of the sweep engine: one call (or one ``geoalign sweep`` command) each.

Every study is a plain function ``study(**params, seed=...) -> dict`` of
scores, fast per cell at its default sizes, registered in :data:`STUDIES` (a
:class:`~geoalign._registry.Registry` of :class:`Study`) with
:func:`register_study`; :func:`get_study`, :func:`list_studies` and
:func:`run_study` read it.  Run one with

.. code-block:: python

    from geoalign.studies import run_study
    result = run_study("epsilon", out="sweep-results/epsilon")   # resumable
    result.wide()                                                # scores as columns

or ``geoalign sweep epsilon --param eps=0.5,1,2 --seeds 0,1,2``.

=================  ==========================================================
``concentration``  true-pair distances of :math:`f = s + \sigma\xi`,
                   :math:`g = s + \sigma\zeta` concentrate at :math:`\sigma\sqrt{2d}`.
``epsilon``        N(ε), ρ(ε) and precision/recall of :math:`F_\varepsilon`
                   against the true pairs of planted data (docs/design/mathematics.md, Approximate fiber products).
``dimension``      Johnson–Lindenstrauss projections to k dimensions (fraction
                   of :math:`F_\varepsilon` preserved, sandwich check) and the
                   :math:`\sigma\sqrt{2d}` scaling of true-pair distances.
``perturbation``   observed tolerance against the robustness bound
                   :math:`\varepsilon + \delta_f + \delta_g` (statement 2),
                   random and adversarial perturbation directions.
``decomposition``  :class:`~geoalign.subspace.SharedPrivateDecomposition`
                   over SNR and sample size: principal angles to the planted
                   subspaces and chosen ranks against the truth.
``training``       a sweep over the loss weights of
                   :class:`geoalign.models.qsma.QSMA` (over the parameters of
                   :class:`~geoalign.models.LinearContrastive` when QSMA is
                   not installed), scored on held-out planted pairs.
``semi_paired``    few pairs plus unpaired samples of each view: QSMA (all
                   terms, alignment weight swept) against QSMA contrastive-only
                   and CCA, on unseen classes (needs QSMA).
``transductive``   every seen pair plus the unseen-class inputs, unpaired
                   (disjoint halves or full): same arms (needs QSMA).
=================  ==========================================================

Heavy modules (torch, the fiber engine, the models) are imported inside the
study functions, so listing the studies stays fast.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import inspect
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ._validation import check_choice, check_int, check_nonnegative_scalar, check_positive_scalar
from ._registry import Registry
from .sweep import Grid, SweepResult, run_sweep
from .sweep.cache import _check_signature

__all__ = [
    "STUDIES",
    "Study",
    "register_study",
    "get_study",
    "list_studies",
    "run_study",
    "concentration_study",
    "epsilon_study",
    "dimension_study",
    "perturbation_study",
    "decomposition_study",
    "qsma_training_study",
    "contrastive_training_study",
    "qsma_available",
    "semi_paired_study",
    "transductive_study",
    "SEMI_PAIRED_GRID",
    "TRANSDUCTIVE_GRID",
    "REGIME_ARMS",
    "EPSILON_GRID",
    "DIMENSION_GRID",
    "PERTURBATION_GRID",
    "DECOMPOSITION_GRID",
    "QSMA_TRAINING_GRID",
    "CONTRASTIVE_TRAINING_GRID",
]

EPS_UNITS = ("true_median", "absolute")
DIRECTIONS = ("random", "adversarial")
# relative slack for comparing two float64 evaluations of the same distance bound
_ROUNDING = 1e-9


# --------------------------------------------------------------------------- the study registry
@dataclasses.dataclass(frozen=True)
class Study:
    """A registered study: a function, its default grid and its label columns."""

    name: str
    func: Callable
    default_grid: Grid
    description: str = ""
    labels: tuple = ()


#: study name -> :class:`Study` (the built-in ones are registered at the end of this module)
STUDIES = Registry("study")


def register_study(name: str, func: Callable, default_grid: Grid | Mapping, *,
                   description: str = "", labels: Sequence[str] = (), overwrite: bool = False) -> Study:
    """Add a study to the registry used by :func:`run_study` and ``geoalign sweep``.

    Raises ``ValueError`` if ``name`` is taken (unless ``overwrite``) or the
    default grid does not fit ``func``'s signature.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"study name must be a non-empty string, got {name!r}")
    if name in STUDIES and not overwrite:
        raise ValueError(f"study {name!r} is already registered; pass overwrite=True to replace it")
    grid = default_grid if isinstance(default_grid, Grid) else Grid.from_dict(default_grid)
    _check_signature(func, grid)
    doc = description or (inspect.getdoc(func) or "").split("\n")[0]
    study = Study(name=name, func=func, default_grid=grid, description=doc, labels=tuple(labels))
    STUDIES.register(name, study, replace=True)
    return study


def get_study(name: str) -> Study:
    """The registered study called ``name`` (``KeyError`` listing the names if unknown)."""
    return STUDIES[name]


def list_studies() -> dict[str, Study]:
    """All registered studies by name."""
    return dict(sorted(STUDIES.load_all().items()))


def run_study(name: str, grid: Grid | Mapping | None = None, **kwargs: Any) -> SweepResult:
    """Run the registered study ``name`` on ``grid`` (default: its default grid).

    ``kwargs`` go to :func:`run_sweep`.
    """
    study = get_study(name)
    return run_sweep(study.func, study.default_grid if grid is None else grid, name=name,
                     labels=study.labels, **kwargs)


# --------------------------------------------------------------------------- helpers
def _planted(dim: int, snr: float, n: int, shared_rank: int, private_rank: int, seed: int):
    """Planted pairs (rows ``i`` of ``U`` and ``V`` are the true pairs) and their generator."""
    from .data.planted import PlantedAlignment

    gen = PlantedAlignment(dim=dim, shared_rank=shared_rank, private_ranks=(private_rank, private_rank),
                           snr=snr, random_state=seed)
    return gen, gen.sample(check_int(n, "n", minimum=2))


def _tolerance_scale(U, V, metric: str, eps_units: str) -> tuple[float, float]:
    """``(scale, median true-pair distance)``: tolerances are ``value * scale``."""
    from .fiber import pair_distances

    median = float(np.median(pair_distances(U, V, metric)))
    if eps_units == "absolute":
        return 1.0, median
    if not median > 0:
        raise ValueError("the median true-pair distance is 0 (noiseless identical views): "
                         "use eps_units='absolute'")
    return median, median


def _pair_keys(pairs: np.ndarray, width: int) -> np.ndarray:
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return pairs[:, 0] * width + pairs[:, 1]


def _fraction_inside(inner: np.ndarray, outer: np.ndarray) -> float:
    """``|inner ∩ outer| / |inner|`` for key arrays (NaN when ``inner`` is empty)."""
    if inner.size == 0:
        return float("nan")
    return float(np.isin(inner, outer).sum()) / inner.size


def _all_inside(*fractions: float) -> bool:
    """Every inclusion holds (a fraction of 1, or NaN for an empty inner set)."""
    return all(f == 1.0 or math.isnan(f) for f in fractions)


def _farthest_partner(points: np.ndarray, partners: np.ndarray, dist: np.ndarray):
    """For each distinct entry of ``points``: the partner at the largest distance."""
    order = np.lexsort((dist, points))  # by point, then by distance ascending
    sorted_points = points[order]
    last = np.r_[sorted_points[1:] != sorted_points[:-1], True]
    return sorted_points[last], partners[order[last]]


def _unit_rows(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows scaled to unit norm; zero rows get a random unit direction."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    zero = norms[:, 0] == 0
    if zero.any():
        x = x.copy()
        x[zero] = rng.standard_normal((int(zero.sum()), x.shape[1]))
        norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / norms


# --------------------------------------------------------------------------- epsilon
def epsilon_study(eps: float, dim: int = 32, snr: float = 10.0, n: int = 1000,
                  distance: str = "euclidean", shared_rank: int = 4, private_rank: int = 3,
                  eps_units: str = "true_median", seed: int = 0) -> dict[str, float]:
    r"""The ε sweep: :math:`N(\varepsilon)` and precision/recall of :math:`F_\varepsilon`.

    Planted pairs :math:`u_i = A s_i + B_a a_i + \sigma_a\xi_i`,
    :math:`v_i = A s_i + B_b b_i + \sigma_b\zeta_i` (:class:`~geoalign.data.planted.PlantedAlignment`
    with ranks ``(shared_rank, private_rank, private_rank)``) are joined
    exactly, :math:`F_\varepsilon = \{(i, j) : \operatorname{dist}(u_i, v_j) \le \varepsilon\}`,
    and compared with the true pairs :math:`T = \{(i, i)\}`:

    .. math::

        \mathrm{precision} = \frac{|F_\varepsilon \cap T|}{|F_\varepsilon|}, \qquad
        \mathrm{recall} = \frac{|F_\varepsilon \cap T|}{n}, \qquad
        \rho(\varepsilon) = \frac{N(\varepsilon)}{n^2}.

    Since :math:`F_\varepsilon` grows with ε (statement 1), recall and
    :math:`N` are non-decreasing in ``eps`` for fixed data (same seed).

    Parameters
    ----------
    eps : float
        Tolerance, >= 0; with ``eps_units="true_median"`` (default) in units of
        the median true-pair distance of the drawn data, so ``eps=1`` has recall
        about 1/2 whatever the metric or dimension.
    dim : int
        Ambient dimension of both views.
    snr : float
        Signal-to-noise ratio of :class:`~geoalign.data.planted.PlantedAlignment`.
    n : int
        Number of pairs (the join has :math:`n^2` candidates).
    distance : {"euclidean", "cosine", "geodesic"}
        The metric of the join (named ``distance``: an existing argument name, kept).
    shared_rank, private_rank : int
        Ranks of the planted shared subspace and of each private subspace.
    eps_units : {"true_median", "absolute"}
    seed : int
        Seeds the generator (bases, class centres) and the draw.

    Returns
    -------
    dict
        ``eps_abs``, ``scale``, ``count`` (N), ``rho``, ``precision``,
        ``recall``, ``f1`` (NaN when :math:`F_\varepsilon` is empty),
        ``true_positives``, ``impostors`` (:math:`N - |F_\varepsilon\cap T|`),
        ``true_median_distance``, ``impostor_median_distance`` (pairs
        :math:`(u_i, v_{i-1})`).
    """
    from .fiber import METRICS, fiber_product, pair_distances

    eps = check_nonnegative_scalar(eps, "eps")
    check_choice(distance, "distance", METRICS)
    check_choice(eps_units, "eps_units", EPS_UNITS)
    _, data = _planted(dim, snr, n, shared_rank, private_rank, seed)
    scale, true_median = _tolerance_scale(data.U, data.V, distance, eps_units)
    eps_abs = eps * scale
    fp = fiber_product(data.U, data.V, eps_abs, distance, num_threads=1)
    n = data.n_samples
    pr = fp.precision_recall(np.stack([np.arange(n), np.arange(n)], axis=1))
    impostor = pair_distances(data.U, np.roll(data.V, 1, axis=0), distance)
    return {
        "eps_abs": eps_abs,
        "scale": scale,
        "count": fp.count,
        "rho": fp.rho,
        "precision": pr.precision,
        "recall": pr.recall,
        "f1": pr.f1,
        "true_positives": pr.true_positives,
        "impostors": fp.count - pr.true_positives,
        "true_median_distance": true_median,
        "impostor_median_distance": float(np.median(impostor)),
    }


EPSILON_GRID = Grid(product={"eps": [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0],
                             "distance": ["euclidean", "cosine"], "snr": [1.0, 10.0],
                             "private_rank": [0, 3]},
                    zipped={"dim": [32], "n": [1000]}, seeds=[0, 1])


# --------------------------------------------------------------------------- dimension
def dimension_study(d: int, k: int, eps: float = 1.0, sigma: float = 0.5, n: int = 300,
                    seed: int = 0) -> dict[str, float]:
    r"""Random projection to ``k`` dimensions and the :math:`\sqrt d` scaling of true pairs.

    Data (docs/design/mathematics.md, Statement 3): :math:`s_i \sim N(0, I_d)`,
    :math:`f_i = s_i + \sigma\xi_i`, :math:`g_i = s_i + \sigma\zeta_i`, so
    true-pair distances concentrate at :math:`\sigma\sqrt{2d}` and impostors at
    :math:`\sqrt{2d(1+\sigma^2)}`.  The tolerance is
    :math:`\varepsilon = \mathrm{eps}\cdot\sigma\sqrt{2d}`.

    Both sets are mapped by the Gaussian map :math:`x \mapsto G x/\sqrt k`,
    :math:`G \in \mathbb R^{k\times d}` (the linear part of
    :class:`geoalign.rings.RandomProjection`), and :math:`F'_\varepsilon` is the
    ε-join of the images.  With the empirical distortion over all :math:`n^2`
    pairs

    .. math::

        \eta = \max_{i,j} \Bigl|\frac{\|G(f_i - g_j)\|/\sqrt k}{\|f_i - g_j\|} - 1\Bigr|,

    the sandwich :math:`F_{\varepsilon/(1+\eta)} \subseteq F'_\varepsilon
    \subseteq F_{\varepsilon/(1-\eta)}` must hold exactly; Johnson–Lindenstrauss
    predicts :math:`\eta \lesssim \eta_{JL} = \sqrt{8\ln(n^2)/k}`.

    Parameters
    ----------
    d : int
        Ambient dimension.
    k : int
        Projection dimension.
    eps : float
        Tolerance in units of :math:`\sigma\sqrt{2d}` (> 0).
    sigma : float
        Noise level (> 0).
    n : int
        Number of pairs.
    seed : int

    Returns
    -------
    dict
        ``eps_abs``; ``count`` and ``count_projected`` (:math:`|F_\varepsilon|`,
        :math:`|F'_\varepsilon|`); ``preserved`` (:math:`|F\cap F'|/|F|`),
        ``spurious`` (:math:`|F'\setminus F|/|F'|`), ``jaccard``;
        ``recall``/``precision`` and ``recall_projected``/``precision_projected``
        against the true pairs; ``eta_empirical``, ``eta_jl``, ``eta_ratio``;
        ``sandwich_lower`` (fraction of :math:`F_{\varepsilon/(1+\eta)}` in
        :math:`F'_\varepsilon`, NaN when that set is empty), ``sandwich_upper`` (fraction of
        :math:`F'_\varepsilon` in :math:`F_{\varepsilon/(1-\eta)}`, 1 when
        :math:`\eta \ge 1`), ``sandwich_holds`` (1/0) and ``sandwich_jl_holds``
        (the same with :math:`\eta_{JL}`); ``true_mean_distance``,
        ``sqrt_2d_sigma``, ``true_ratio`` (their ratio, about 1),
        ``true_relative_std``, ``impostor_ratio`` (impostor mean over
        :math:`\sqrt{2d(1+\sigma^2)}`) and ``projected_true_ratio``.
    """
    from scipy.spatial.distance import cdist

    from .fiber import fiber_product
    from .rings import RandomProjection

    d = check_int(d, "d", minimum=1)
    k = check_int(k, "k", minimum=1)
    n = check_int(n, "n", minimum=2)
    eps = check_positive_scalar(eps, "eps")
    sigma = check_positive_scalar(sigma, "sigma")
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((n, d))
    f = s + sigma * rng.standard_normal((n, d))
    g = s + sigma * rng.standard_normal((n, d))
    G = RandomProjection(2, length=d, dim=k, seed=int(rng.integers(2**31))).components_
    fk, gk = f @ G.T, g @ G.T

    unit = sigma * math.sqrt(2 * d)
    eps_abs = eps * unit
    D, Dk = cdist(f, g), cdist(fk, gk)
    positive = D > 0
    eta = float(np.max(np.abs(Dk[positive] / D[positive] - 1.0))) if positive.any() else 0.0
    eta_jl = math.sqrt(8.0 * math.log(n * n) / k)

    def keys(x, y, tol):
        return _pair_keys(fiber_product(x, y, tol, num_threads=1).pairs, n)

    F, Fk = keys(f, g, eps_abs), keys(fk, gk, eps_abs)
    true = np.arange(n, dtype=np.int64) * (n + 1)

    def sandwich(h: float) -> tuple[float, float]:
        h = h * (1 + _ROUNDING) + _ROUNDING  # summation-order differences of two float64 distances
        lower = _fraction_inside(keys(f, g, eps_abs / (1 + h)), Fk)
        upper = 1.0 if h >= 1 else _fraction_inside(Fk, keys(f, g, eps_abs / (1 - h)))
        return lower, upper

    lower, upper = sandwich(eta)
    jl_lower, jl_upper = sandwich(eta_jl)
    union = np.union1d(F, Fk).size
    diag, diag_k = np.diagonal(D), np.diagonal(Dk)
    off = D[~np.eye(n, dtype=bool)]
    return {
        "eps_abs": eps_abs,
        "count": F.size,
        "count_projected": Fk.size,
        "preserved": _fraction_inside(F, Fk),
        "spurious": 1.0 - _fraction_inside(Fk, F) if Fk.size else float("nan"),
        "jaccard": np.intersect1d(F, Fk).size / union if union else float("nan"),
        "recall": np.isin(true, F).mean(),
        "precision": np.isin(F, true).mean() if F.size else float("nan"),
        "recall_projected": np.isin(true, Fk).mean(),
        "precision_projected": np.isin(Fk, true).mean() if Fk.size else float("nan"),
        "eta_empirical": eta,
        "eta_jl": eta_jl,
        "eta_ratio": eta / eta_jl,
        "sandwich_lower": lower,
        "sandwich_upper": upper,
        "sandwich_holds": float(_all_inside(lower, upper)),
        "sandwich_jl_holds": float(_all_inside(jl_lower, jl_upper)),
        "true_mean_distance": float(diag.mean()),
        "sqrt_2d_sigma": unit,
        "true_ratio": float(diag.mean()) / unit,
        "true_relative_std": float(diag.std(ddof=1) / diag.mean()),
        "impostor_ratio": float(off.mean()) / math.sqrt(2 * d * (1 + sigma**2)),
        "projected_true_ratio": float(diag_k.mean()) / unit,
    }


DIMENSION_GRID = Grid(product={"d": [16, 64, 256, 1024], "k": [8, 32, 128]},
                      zipped={"eps": [1.0], "sigma": [0.5], "n": [300]}, seeds=[0, 1])


# --------------------------------------------------------------------------- perturbation
def perturbation_study(eps: float = 1.0, delta_f: float = 0.1, delta_g: float = 0.1,
                       direction: str = "random", dim: int = 32, snr: float = 10.0, n: int = 500,
                       shared_rank: int = 4, private_rank: int = 3, seed: int = 0) -> dict[str, float]:
    r"""Robustness of :math:`F_\varepsilon`: observed tolerance against :math:`\varepsilon+\delta_f+\delta_g`.

    Statement 2 of docs/design/mathematics.md: if :math:`\sup_i\|f'_i - f_i\| \le \delta_f`
    and :math:`\sup_j\|g'_j - g_j\| \le \delta_g` then
    :math:`F_\varepsilon(f, g) \subseteq F_{\varepsilon+\delta_f+\delta_g}(f', g')`
    and vice versa.  The *observed tolerance* is the smallest one that works,

    .. math::

        \varepsilon_{\mathrm{obs}} = \max_{(i,j)\in F_\varepsilon(f,g)} \|f'_i - g'_j\|
        \;\le\; \varepsilon + \delta_f + \delta_g ,

    and ``observed_reverse`` swaps the roles of :math:`(f, g)` and :math:`(f', g')`.
    Each point moves by exactly its budget (:math:`\|f'_i - f_i\| = \delta_f`):

    * ``direction="random"``: uniform random directions;
    * ``direction="adversarial"``: :math:`f_i` moves away from its farthest
      partner :math:`g_{j}` in :math:`F_\varepsilon` and :math:`g_j` away from
      its farthest partner, so the farthest pair of :math:`F_\varepsilon`
      grows by exactly :math:`\delta_f + \delta_g` (``tightness`` = 1): the
      bound is attained up to :math:`\varepsilon - \max_{F_\varepsilon}\|f_i-g_j\|`.

    Data: planted pairs as in :func:`epsilon_study`, Euclidean distance.

    Parameters
    ----------
    eps, delta_f, delta_g : float
        Tolerance and perturbation sizes, >= 0, in units of the median
        true-pair distance.
    direction : {"random", "adversarial"}
    dim, snr, n, shared_rank, private_rank : as in :func:`epsilon_study`
    seed : int

    Returns
    -------
    dict
        ``eps_abs``, ``delta_f_abs``, ``delta_g_abs``, ``bound``
        (:math:`\varepsilon+\delta_f+\delta_g`), ``observed``,
        ``observed_reverse``, ``ratio`` (observed / bound), ``slack``
        (bound - observed), ``tightness`` ((observed - max unperturbed distance
        in :math:`F_\varepsilon`) / (:math:`\delta_f+\delta_g`), NaN without
        perturbation), ``holds`` (1 when both directions are within the bound),
        ``contained_at_bound`` (:math:`|F_\varepsilon \cap F'_{\mathrm{bound}}|/|F_\varepsilon|`,
        1 by the theorem), ``preserved_at_eps`` (the same at ε), ``count``,
        ``count_perturbed``, ``sup_f``, ``sup_g`` (realised sup-norms).
        Observed tolerances are NaN when the join is empty.
    """
    from .fiber import fiber_product, pair_distances

    eps = check_nonnegative_scalar(eps, "eps")
    delta_f = check_nonnegative_scalar(delta_f, "delta_f")
    delta_g = check_nonnegative_scalar(delta_g, "delta_g")
    check_choice(direction, "direction", DIRECTIONS)
    _, data = _planted(dim, snr, n, shared_rank, private_rank, seed)
    U, V = data.U, data.V
    n = data.n_samples
    scale, _ = _tolerance_scale(U, V, "euclidean", "true_median")
    eps_abs, df, dg = eps * scale, delta_f * scale, delta_g * scale
    bound = eps_abs + df + dg
    rng = np.random.default_rng([seed, 1])

    fp = fiber_product(U, V, eps_abs, num_threads=1)
    pairs, dist = np.asarray(fp.pairs), np.asarray(fp.distances)
    dir_f = _unit_rows(rng.standard_normal(U.shape), rng)
    dir_g = _unit_rows(rng.standard_normal(V.shape), rng)
    if direction == "adversarial" and fp.count:
        rows, far_j = _farthest_partner(pairs[:, 0], pairs[:, 1], dist)
        cols, far_i = _farthest_partner(pairs[:, 1], pairs[:, 0], dist)
        dir_f[rows] = _unit_rows(U[rows] - V[far_j], rng)
        dir_g[cols] = _unit_rows(V[cols] - U[far_i], rng)
    Up, Vp = U + df * dir_f, V + dg * dir_g

    width = n
    F = _pair_keys(pairs, width)
    if fp.count:
        observed = float(np.max(pair_distances(Up[pairs[:, 0]], Vp[pairs[:, 1]])))
        unperturbed_max = float(dist.max())
    else:
        observed = unperturbed_max = float("nan")
    fp_pert = fiber_product(Up, Vp, eps_abs, num_threads=1)
    pp = np.asarray(fp_pert.pairs)
    observed_reverse = (float(np.max(pair_distances(U[pp[:, 0]], V[pp[:, 1]]))) if fp_pert.count
                        else float("nan"))
    at_bound = _pair_keys(fiber_product(Up, Vp, bound, num_threads=1).pairs, width)
    limit = bound * (1 + _ROUNDING)
    holds = all(math.isnan(o) or o <= limit for o in (observed, observed_reverse))
    return {
        "eps_abs": eps_abs,
        "delta_f_abs": df,
        "delta_g_abs": dg,
        "bound": bound,
        "observed": observed,
        "observed_reverse": observed_reverse,
        "ratio": observed / bound if bound > 0 else float("nan"),
        "slack": bound - observed,
        "tightness": (observed - unperturbed_max) / (df + dg) if df + dg > 0 else float("nan"),
        "holds": float(holds),
        "contained_at_bound": _fraction_inside(F, at_bound),
        "preserved_at_eps": _fraction_inside(F, _pair_keys(pp, width)),
        "count": fp.count,
        "count_perturbed": fp_pert.count,
        "sup_f": float(np.linalg.norm(Up - U, axis=1).max()),
        "sup_g": float(np.linalg.norm(Vp - V, axis=1).max()),
    }


PERTURBATION_GRID = Grid(product={"eps": [0.5, 1.0, 2.0], "direction": list(DIRECTIONS)},
                         zipped={"delta_f": [0.0, 0.05, 0.1, 0.2, 0.4],
                                 "delta_g": [0.0, 0.05, 0.1, 0.2, 0.4]},
                         seeds=[0, 1])


# --------------------------------------------------------------------------- decomposition
def decomposition_study(snr: float, n: int, dim: int = 32, shared_rank: int = 3,
                        private_rank: int = 2, rank_method: str = "gap",
                        seed: int = 0) -> dict[str, float]:
    r"""SNR / sample-size sweep of :class:`~geoalign.subspace.SharedPrivateDecomposition`.

    Planted data :math:`u = A s + B_a a + \sigma_a\xi`, :math:`v = A s + B_b b + \sigma_b\zeta`
    (:class:`~geoalign.data.planted.PlantedAlignment`).  Two fits per cell:

    * with the true ranks given ("oracle"): the largest principal angles
      :math:`\theta_{\max}(\hat Z_s, \operatorname{span}A)`,
      :math:`\theta_{\max}(\hat Z_I, \operatorname{span}B_a)`,
      :math:`\theta_{\max}(\hat Z_T, \operatorname{span}B_b)` (degrees)
      measure how well the subspaces are estimated;
    * with ranks chosen by ``rank_method``: the chosen ranks against the truth.

    Parameters
    ----------
    snr : float
        Signal-to-noise ratio of the planted model (> 0).
    n : int
        Number of pairs.
    dim, shared_rank, private_rank : int
        Ambient dimension and planted ranks (both private subspaces get ``private_rank``).
    rank_method : {"gap", "permutation"}
    seed : int

    Returns
    -------
    dict
        ``shared_max_angle``, ``private_a_max_angle``, ``private_b_max_angle``
        (degrees; NaN for a private rank of 0), ``shared_mean_angle``,
        ``shared_rank_chosen``, ``private_rank_a_chosen``,
        ``private_rank_b_chosen``, ``shared_rank_error`` (chosen - true),
        ``ranks_correct`` (1 when all three match), ``shared_energy`` (fraction
        of U's variance in the oracle shared subspace), ``n_iter``.
    """
    from .subspace import SharedPrivateDecomposition, principal_angles

    check_choice(rank_method, "rank_method", ("gap", "permutation"))
    _, data = _planted(dim, snr, n, shared_rank, private_rank, seed)
    oracle = SharedPrivateDecomposition(shared_rank=shared_rank,
                                        private_ranks=(private_rank, private_rank),
                                        random_state=seed).fit(data.U, data.V)

    def angles(estimate, truth) -> np.ndarray:
        if estimate.shape[1] == 0 or truth.shape[1] == 0:
            return np.array([np.nan])
        return np.degrees(principal_angles(estimate, truth))

    shared = angles(oracle.basis_shared_, data.basis_shared)
    # with fewer samples than dimensions the rank search needs a cap (see SharedPrivateDecomposition)
    cap = None if data.n_samples > dim else max(1, data.n_samples // 2)
    auto = SharedPrivateDecomposition(rank_method=rank_method, max_rank=cap,
                                      random_state=seed).fit(data.U, data.V)
    ra, rb = auto.private_ranks_
    return {
        "shared_max_angle": float(shared.max()),
        "shared_mean_angle": float(shared.mean()),
        "private_a_max_angle": float(angles(oracle.basis_a_, data.basis_a).max()),
        "private_b_max_angle": float(angles(oracle.basis_b_, data.basis_b).max()),
        "shared_rank_chosen": auto.shared_rank_,
        "private_rank_a_chosen": ra,
        "private_rank_b_chosen": rb,
        "shared_rank_error": auto.shared_rank_ - shared_rank,
        "ranks_correct": float(auto.shared_rank_ == shared_rank and ra == private_rank
                               and rb == private_rank),
        "shared_energy": oracle.explained_energy_["U"]["shared"],
        "n_iter": oracle.n_iter_,
    }


DECOMPOSITION_GRID = Grid(product={"snr": [0.03, 0.1, 0.3, 1.0, 10.0], "n": [100, 300, 1000, 3000]},
                          seeds=[0, 1, 2])


# --------------------------------------------------------------------------- training
def qsma_available() -> bool:
    """Whether :mod:`geoalign.models.qsma` is installed (checked without importing torch)."""
    try:
        return importlib.util.find_spec("geoalign.models.qsma") is not None
    except (ImportError, ValueError):
        return False


@contextlib.contextmanager
def _torch_threads(n: int):
    """Run torch with ``n`` intra-op threads: tiny models are slower with more (thread wake-ups)."""
    import torch

    n = check_int(n, "num_threads", minimum=1)
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _training_data(features: int, snr: float, n: int, seed: int):
    gen, train = _planted(features, snr, n, 4, 3, seed)
    test = gen.sample(max(2, n // 2), random_state=seed + 1_000_003)  # fresh draw, same model
    return train, test


def _score_embeddings(model, train, test) -> dict[str, float]:
    """Held-out retrieval and the fiber geometry of the learned embeddings on the sphere."""
    from ._backend import to_numpy
    from .fiber import fiber_product, pair_distances
    from .evaluation import retrieval_scores

    za = np.asarray(to_numpy(model.transform_a(test.U)), dtype=np.float64)
    zb = np.asarray(to_numpy(model.transform_b(test.V)), dtype=np.float64)
    instance = retrieval_scores(za, zb, ks=(1, 5)).as_dict()
    by_class = retrieval_scores(za, zb, test.labels, test.labels, ks=(1,))
    n = za.shape[0]
    true_d = pair_distances(za, zb, "geodesic")
    eps = float(np.median(true_d))  # F_eps at the median true-pair angle: precision at recall 1/2
    pr = fiber_product(za, zb, eps, "geodesic", num_threads=1).precision_recall(
        np.stack([np.arange(n), np.arange(n)], axis=1))
    losses = [r["train_loss"] for r in model.history_.records if r.get("train_loss") is not None]
    return {
        "R@1_a2b": instance["R@1_a2b"],
        "R@1_b2a": instance["R@1_b2a"],
        "R@5_a2b": instance["R@5_a2b"],
        "map_instance": instance["map_all"],
        "map_class": by_class.map_all,
        "true_pair_angle": float(np.mean(true_d)),
        "impostor_angle": float(np.mean(pair_distances(za, np.roll(zb, 1, axis=0), "geodesic"))),
        "fiber_precision_at_median": pr.precision,
        "final_train_loss": float(losses[-1]) if losses else float("nan"),
        "n_train": train.n_samples,
        "n_test": n,
    }


def qsma_training_study(lambda_alignment: float = 0.1, lambda_barycentric: float = 0.1,
                        lambda_kl: float = 1e-3, lambda_contrastive: float = 1.0,
                        alignment: str = "sliced", dim: int = 8, hidden: int = 64,
                        features: int = 32, snr: float = 10.0, n: int = 512,
                        max_epochs: int = 10, batch_size: int = 128, lr: float = 3e-3,
                        num_threads: int = 1, seed: int = 0) -> dict[str, float]:
    r"""Train :class:`geoalign.models.qsma.QSMA` with the given loss weights; score held-out pairs.

    The loss (docs/design/mathematics.md, QSMA) is
    :math:`\lambda_C\,\mathrm{InfoNCE} + \lambda_W\,\mathcal W + \lambda_B\,\mathcal B
    + \lambda_{KL}\,\mathrm{KL}`; this study varies the weights on planted data
    (:class:`~geoalign.data.planted.PlantedAlignment`, ``features``
    dimensions, class labels passed to ``fit``) and evaluates on a fresh draw
    of ``n // 2`` pairs from the same model.

    Parameters
    ----------
    lambda_alignment, lambda_barycentric, lambda_kl, lambda_contrastive : float
        QSMA's loss weights (>= 0).
    alignment : {"sliced", "sinkhorn"}
    dim, hidden : int
        Latent dimension (sphere :math:`S^{dim-1}`) and encoder width.
    features, snr, n : planted data (``n`` training pairs).
    max_epochs, batch_size, lr : training options.
    num_threads : int
        Torch threads while training (1 is fastest for these small models and
        lets parallel executors run one cell per core).
    seed : int
        Seeds the data and the training run.

    Returns
    -------
    dict
        ``R@1_a2b``, ``R@1_b2a``, ``R@5_a2b``, ``map_instance`` (instance
        pairs), ``map_class`` (same-class relevance), ``true_pair_angle`` and
        ``impostor_angle`` (mean geodesic distances, radians),
        ``fiber_precision_at_median`` (precision of :math:`F_\varepsilon` at the
        median true-pair angle), ``final_train_loss``, ``n_train``, ``n_test``.
    """
    from .models.qsma import QSMA

    train, test = _training_data(features, snr, n, seed)
    model = QSMA(dim=dim, hidden=hidden, lambda_alignment=lambda_alignment,
                 lambda_barycentric=lambda_barycentric, lambda_kl=lambda_kl,
                 lambda_contrastive=lambda_contrastive, alignment=alignment,
                 max_epochs=max_epochs, batch_size=batch_size, lr=lr, random_state=seed,
                 trainer_options={"progress": False})
    with _torch_threads(num_threads):
        model.fit(train.U, train.V, train.labels)
        return _score_embeddings(model, train, test)


def contrastive_training_study(temperature: float = 0.07, weight_decay: float = 0.0,
                               use_labels: bool = False, dim: int = 8, features: int = 32,
                               snr: float = 10.0, n: int = 512, max_epochs: int = 10,
                               batch_size: int = 128, lr: float = 1e-2, num_threads: int = 1,
                               seed: int = 0) -> dict[str, float]:
    r"""Train :class:`~geoalign.models.LinearContrastive` (symmetric InfoNCE); score held-out pairs.

    The CLIP-style baseline: two linear maps to :math:`S^{dim-1}` trained with
    the symmetric InfoNCE loss at a learnable temperature.  Data, evaluation and
    scores as in :func:`qsma_training_study`.

    Parameters
    ----------
    temperature : float
        Initial softmax temperature.
    weight_decay : float
    use_labels : bool
        Same-class pairs are positives.
    dim, features, snr, n, max_epochs, batch_size, lr, num_threads, seed :
        As in :func:`qsma_training_study`.

    Returns
    -------
    dict
        As :func:`qsma_training_study`.
    """
    from .models import LinearContrastive

    train, test = _training_data(features, snr, n, seed)
    model = LinearContrastive(dim=dim, temperature=temperature, weight_decay=weight_decay,
                              use_labels=use_labels, max_epochs=max_epochs, batch_size=batch_size,
                              lr=lr, random_state=seed, trainer_options={"progress": False})
    with _torch_threads(num_threads):
        model.fit(train.U, train.V, train.labels if use_labels else None)
        return _score_embeddings(model, train, test)


QSMA_TRAINING_GRID = Grid(product={"lambda_alignment": [0.0, 0.1, 1.0],
                                   "lambda_barycentric": [0.0, 0.1, 1.0],
                                   "lambda_kl": [0.0, 1e-3]}, seeds=[0, 1])
CONTRASTIVE_TRAINING_GRID = Grid(product={"temperature": [0.03, 0.07, 0.2],
                                          "weight_decay": [0.0, 1e-3],
                                          "use_labels": [False, True]}, seeds=[0, 1])


# --------------------------------------------------------------------------- semi-paired and transductive
#: arms of the regime studies: QSMA with every term, QSMA with the contrastive term only, CCA
REGIME_ARMS = ("qsma", "contrastive_only", "cca")
REGIME_DATASETS = ("digits", "digits_tb", "planted")
TRANSDUCTIVE_VARIANTS = ("disjoint", "full", "none")
#: the QSMA of the regime studies: the library defaults at a smaller width (cheap enough for
#: 5 seeds x every cell on 2 CPU cores)
REGIME_QSMA = dict(dim=16, hidden=128, n_layers=2, dropout=0.2, use_labels=False, batch_size=128)
REGIME_CCA = dict(dim=4, reg=0.1)


def _regime_fit(arm: str, lambda_alignment: float, X_a, X_b, unpaired, max_steps: int,
                seed: int, lr: float):
    """Train one arm on pairs ``(X_a, X_b)`` (+ ``unpaired = (U_a, U_b)`` for the QSMA arm)."""
    check_choice(arm, "arm", REGIME_ARMS)
    if arm == "cca":
        from .models.linear import CCA

        return CCA(**REGIME_CCA).fit(X_a, X_b)
    from .models.qsma import QSMA

    steps_per_epoch = math.ceil(X_a.shape[0] / REGIME_QSMA["batch_size"])
    epochs = max(1, math.ceil(check_int(max_steps, "max_steps", minimum=1) / steps_per_epoch))
    switches = {} if arm == "qsma" else {"use_alignment": False, "use_barycentric": False}
    model = QSMA(**REGIME_QSMA, **switches, lambda_alignment=lambda_alignment, lr=lr,
                 max_epochs=epochs, random_state=seed, trainer_options={"progress": False})
    extra = {}
    if arm == "qsma" and unpaired is not None:
        extra = {"unpaired_a": unpaired[0], "unpaired_b": unpaired[1]}
    return model.fit(X_a, X_b, **extra)


def _unseen_scores(model, data) -> dict[str, float]:
    from ._backend import to_numpy
    from .evaluation import retrieval_scores

    za = np.asarray(to_numpy(model.transform_a(data.X_a_test)), dtype=np.float64)
    zb = np.asarray(to_numpy(model.transform_b(data.X_b_test)), dtype=np.float64)
    cls = retrieval_scores(za, zb, data.y_test, data.y_test, ks=(1,))
    inst = retrieval_scores(za, zb, ks=(1, 10))
    return {"map_all": cls.map_all, "R@1": inst.mean.recall[1], "R@10": inst.mean.recall[10]}


def semi_paired_study(paired_fraction: float, arm: str = "qsma", lambda_alignment: float = 1.0,
                      dataset: str = "digits", max_steps: int = 150, lr: float = 2e-3,
                      num_threads: int = 1, seed: int = 0) -> dict[str, float]:
    r"""Semi-paired training: a fraction of the seen-class pairs, the rest unpaired.

    Of the seen-class training pairs of ``dataset`` (see
    :func:`geoalign.comparison.load_comparison_data`), a random ``paired_fraction``
    (at least 4 pairs) keeps its pairing; the rest is split at random into two
    disjoint halves, and only view a of the first and view b of the second are
    kept (``unpaired_a``, ``unpaired_b``: no partner of an unpaired sample is
    present).  Three arms: ``"qsma"`` (every loss term; the unpaired samples
    enter the alignment :math:`\mathcal W` at weight ``lambda_alignment`` and the
    barycentric term, :meth:`geoalign.models.QSMA.fit`), ``"contrastive_only"``
    (QSMA with the contrastive and KL terms only: the unpaired data have no
    term to enter) and ``"cca"`` (CCA on the pairs).  Every QSMA run takes about
    ``max_steps`` optimiser steps, whatever the number of pairs.  Scores are on
    the unseen classes: class-level cross-view mAP@all and instance-level R@1/R@10
    of the true partner (mean of both directions).

    Returns
    -------
    dict
        ``map_all``, ``R@1``, ``R@10``, ``n_pairs``, ``n_unpaired``.
    """
    from .comparison import load_comparison_data

    check_choice(dataset, "dataset", REGIME_DATASETS)
    frac = check_positive_scalar(paired_fraction, "paired_fraction")
    if frac > 1:
        raise ValueError(f"paired_fraction must be in (0, 1], got {paired_fraction}")
    check_nonnegative_scalar(lambda_alignment, "lambda_alignment")
    data = load_comparison_data(dataset, seed=seed)
    n = data.X_a_train.shape[0]
    rng = np.random.default_rng([seed, 15])
    perm = rng.permutation(n)
    n_pairs = min(n, max(4, int(round(frac * n))))
    paired, rest = perm[:n_pairs], perm[n_pairs:]
    half = rest.size // 2
    unpaired = (data.X_a_train[rest[:half]], data.X_b_train[rest[half:]]) if half > 0 else None
    with _torch_threads(num_threads):
        model = _regime_fit(arm, lambda_alignment, data.X_a_train[paired], data.X_b_train[paired],
                            unpaired, max_steps, seed, lr)
        out = _unseen_scores(model, data)
    return {**out, "n_pairs": float(n_pairs), "n_unpaired": float(rest.size)}


def transductive_study(variant: str = "disjoint", arm: str = "qsma", lambda_alignment: float = 1.0,
                       dataset: str = "digits", max_steps: int = 150, lr: float = 2e-3,
                       num_threads: int = 1, seed: int = 0) -> dict[str, float]:
    r"""Transductive zero-shot training: every seen pair plus the unseen-class inputs, unpaired.

    QSMA (arm ``"qsma"``) trains on all seen-class pairs of ``dataset`` and on the
    unseen-class test inputs of each view, without labels or pairing, as
    ``unpaired_a``/``unpaired_b``: with ``variant="disjoint"`` the unseen samples are
    split at random into two halves and view a comes from one, view b from the
    other (no partner present); with ``variant="full"`` both views of every unseen
    sample are given (partners present but not marked); ``variant="none"`` gives
    none (the inductive reference).  ``"contrastive_only"``
    and ``"cca"`` cannot use unpaired data and are the inductive references.
    Scores as in :func:`semi_paired_study`, on all unseen test pairs.  These
    results are transductive (the test inputs were seen unlabeled in training):
    never compare them with inductive numbers as if they were.

    Returns
    -------
    dict
        ``map_all``, ``R@1``, ``R@10``, ``n_unpaired_a``.
    """
    from .comparison import load_comparison_data

    check_choice(dataset, "dataset", REGIME_DATASETS)
    check_choice(variant, "variant", TRANSDUCTIVE_VARIANTS)
    check_nonnegative_scalar(lambda_alignment, "lambda_alignment")
    data = load_comparison_data(dataset, seed=seed)
    m = data.X_a_test.shape[0]
    if variant == "disjoint":
        perm = np.random.default_rng([seed, 16]).permutation(m)
        unpaired = (data.X_a_test[perm[:m // 2]], data.X_b_test[perm[m // 2:]])
    elif variant == "full":
        unpaired = (data.X_a_test, data.X_b_test)
    else:
        unpaired = None
    with _torch_threads(num_threads):
        model = _regime_fit(arm, lambda_alignment, data.X_a_train, data.X_b_train, unpaired,
                            max_steps, seed, lr)
        out = _unseen_scores(model, data)
    return {**out, "n_unpaired_a": float(0 if unpaired is None else unpaired[0].shape[0])}


#: arm x alignment weight, zipped: the weight only matters for the QSMA arm.  SW_2^2 between
#: batches on S^15 is ~1e-3 once trained (InfoNCE ~3), so weights near the inductive default
#: change nothing (measured: 1, 3, 10 within 0.003 mAP of each other); the sweep goes far above.
_REGIME_ARMS_ZIPPED = {"arm": ["cca", "contrastive_only", "qsma", "qsma"],
                       "lambda_alignment": [0.0, 0.0, 100.0, 1000.0]}
SEMI_PAIRED_GRID = Grid(product={"dataset": ["digits", "planted"],
                                 "paired_fraction": [0.01, 0.02, 0.05, 0.1, 0.25, 1.0]},
                        zipped=_REGIME_ARMS_ZIPPED, seeds=[0, 1, 2, 3, 4])
#: the inductive references ("none": no unpaired data) once, then QSMA on each variant
TRANSDUCTIVE_GRID = Grid(product={"dataset": ["digits", "digits_tb", "planted"]},
                         zipped={"variant": ["none", "none"] + ["disjoint"] * 3 + ["full"] * 3,
                                 "arm": ["cca", "contrastive_only"] + ["qsma"] * 6,
                                 "lambda_alignment": [0.0, 0.0] + [10.0, 100.0, 1000.0] * 2},
                         seeds=[0, 1, 2, 3, 4])


# --------------------------------------------------------------------------- concentration
def concentration_study(d: int, sigma: float, n: int = 2000, seed: int = 0) -> dict[str, float]:
    """Concentration of true-pair distances (docs/design/mathematics.md, Statement 3).

    Draw shared signals :math:`s_i \\sim N(0, I_d)` and embeddings
    :math:`f_i = s_i + \\sigma\\xi_i`, :math:`g_i = s_i + \\sigma\\zeta_i` with
    standard Gaussian noise.  True-pair distances are
    :math:`\\|f_i-g_i\\| = \\sigma\\|\\xi_i-\\zeta_i\\| = \\sigma\\sqrt2\\,\\chi_d`, so

    .. math::

        \\mathbb E\\|f_i-g_i\\| = 2\\sigma\\,\\frac{\\Gamma((d+1)/2)}{\\Gamma(d/2)}
        \\approx \\sigma\\sqrt{2d},\\qquad
        \\operatorname{sd} \\to \\sigma \\ \\text{(relative spread} \\sim 1/\\sqrt{2d}).

    Impostor pairs :math:`(f_i, g_j)`, :math:`j\\ne i`, sit at about
    :math:`\\sqrt{2d(1+\\sigma^2)}`.

    Parameters
    ----------
    d : int
        Embedding dimension.
    sigma : float
        Noise level, >= 0.
    n : int
        Number of pairs.
    seed : int

    Returns
    -------
    dict
        ``mean_distance``, ``std_distance``, ``predicted_mean`` (exact χ mean),
        ``sqrt_2d_sigma`` (:math:`\\sigma\\sqrt{2d}`), ``ratio_to_sqrt_2d``,
        ``relative_std``, ``impostor_mean_distance``, ``impostor_predicted``,
        ``separation`` ((impostor mean - true mean) / true sd).
    """
    from scipy.special import gammaln

    d = check_int(d, "d", minimum=1)
    n = check_int(n, "n", minimum=2)
    sigma = check_nonnegative_scalar(sigma, "sigma")
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((n, d))
    f = s + sigma * rng.standard_normal((n, d))
    g = s + sigma * rng.standard_normal((n, d))
    true = np.linalg.norm(f - g, axis=1)
    impostor = np.linalg.norm(f - np.roll(g, 1, axis=0), axis=1)  # g_{i-1}: an independent signal
    mean, std = float(true.mean()), float(true.std(ddof=1))
    exact = 2.0 * sigma * math.exp(gammaln((d + 1) / 2) - gammaln(d / 2))
    approx = sigma * math.sqrt(2 * d)
    imp_exact = 2.0 * math.sqrt(1 + sigma ** 2) * math.exp(gammaln((d + 1) / 2) - gammaln(d / 2))
    return {
        "mean_distance": mean,
        "std_distance": std,
        "predicted_mean": exact,
        "sqrt_2d_sigma": approx,
        "ratio_to_sqrt_2d": mean / approx if approx > 0 else float("nan"),
        "relative_std": std / mean if mean > 0 else float("nan"),
        "impostor_mean_distance": float(impostor.mean()),
        "impostor_predicted": imp_exact,
        "separation": (float(impostor.mean()) - mean) / std if std > 0 else float("inf"),
    }


# --------------------------------------------------------------------------- built-in studies
register_study(
    "concentration", concentration_study,
    Grid(product={"d": [2, 8, 32, 128, 512], "sigma": [0.1, 0.5, 1.0]}, zipped={"n": [2000]},
         seeds=[0, 1, 2]),
    description="true-pair distances of f = s + σξ, g = s + σζ concentrate at σ√(2d) (§2.2.3)",
)
register_study("epsilon", epsilon_study, EPSILON_GRID,
               description="N(ε) and precision/recall of F_ε against planted true pairs (§2.2.1)")
register_study("dimension", dimension_study, DIMENSION_GRID,
               description="JL projection to k dims (F_ε preserved, sandwich) and σ√(2d) scaling (§2.2.3)")
register_study("perturbation", perturbation_study, PERTURBATION_GRID,
               description="observed tolerance vs the bound ε+δ_f+δ_g, random/adversarial (§2.2.2)")
register_study("decomposition", decomposition_study, DECOMPOSITION_GRID,
               description="SharedPrivateDecomposition over SNR and n: angles and ranks vs truth (§2.3)")
if qsma_available():
    register_study("training", qsma_training_study, QSMA_TRAINING_GRID,
                   description="QSMA loss weights λ_W, λ_B, λ_KL: held-out retrieval (§2.5)")
    register_study("semi_paired", semi_paired_study, SEMI_PAIRED_GRID,
                   description="few pairs + unpaired rest: QSMA (all terms) vs contrastive-only vs CCA")
    register_study("transductive", transductive_study, TRANSDUCTIVE_GRID,
                   description="seen pairs + unpaired unseen inputs (transductive ZSL): arms as semi_paired")
else:
    register_study("training", contrastive_training_study, CONTRASTIVE_TRAINING_GRID,
                   description="LinearContrastive temperature/weight decay/labels: held-out "
                               "retrieval (QSMA not installed)")
