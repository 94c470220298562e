"""The NumPy/torch contract of every function in ``geoalign.__all__`` that takes arrays.

NumPy in gives NumPy out; a tensor in gives a tensor out on the same device; float32 in
keeps float32 where the function computes in the input's precision.  One case per
function (:data:`CASES`); every other function of ``geoalign.__all__`` is listed in
:data:`NOT_ARRAY_FUNCTIONS` with the reason, and a test checks that the two cover
``__all__``.  The devices other than the CPU are covered by ``test_devices.py``
(``meta`` and, where present, CUDA/MPS).
"""
import inspect

import numpy as np
import pytest
import torch

import geoalign

RNG = np.random.default_rng(0)


def _unit(n, d):
    x = RNG.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


X, Y = RNG.normal(size=(12, 4)), RNG.normal(size=(10, 4))
C = np.abs(RNG.normal(size=(6, 5))) + 0.1
SPD2 = np.stack([np.eye(2) * s for s in (1.0, 2.0)])
POLY = RNG.integers(0, 256, size=(3, 8))
IMG = RNG.integers(0, 256, size=(4, 4)).astype(np.uint8)
SCORES = RNG.normal(size=(10, 4))
BASIS_A, BASIS_B = np.linalg.qr(RNG.normal(size=(6, 2)))[0], np.linalg.qr(RNG.normal(size=(6, 2)))[0]

#: name -> (arguments builder ``make(kind) -> (args, kwargs)``, output getter, float32 kept)
#: ``kind(array)`` converts a float64 NumPy array to the kind under test
CASES = {
    "sinkhorn": (lambda k: ((None, None, k(C), 0.5), {"tol": 1e-4}), lambda r: r.plan, True),
    "sinkhorn_divergence": (lambda k: ((k(X), k(Y), 1.0), {}), lambda r: r.value, True),
    "sliced_wasserstein": (lambda k: ((k(X), k(Y)), {"seed": 0}), lambda r: r.value, True),
    "barycenter": (lambda k: ((k(np.full((2, 5), 0.2)), k(np.abs(RNG.normal(size=(5, 5)))), 0.5), {}),
                   lambda r: r.barycenter, True),
    "gaussian_barycenter": (lambda k: ((k(np.zeros((2, 2))), k(SPD2)), {"tol": 1e-5}), lambda r: r.cov,
                            True),
    "free_support_barycenter": (lambda k: (([k(X), k(Y)],), {"support_size": 3, "reg": 1.0}),
                                lambda r: r.support, True),
    "frechet_mean": (lambda k: ((k(_unit(6, 3)), geoalign.Sphere(dim=2)), {}), lambda r: r.mean, True),
    "pair_distances": (lambda k: ((k(X), k(X[::-1].copy())), {}), lambda r: r, False),
    "fiber_product": (lambda k: ((k(X), k(Y), 2.5), {}), lambda r: r.pairs, None),
    "principal_angles": (lambda k: ((k(BASIS_A), k(BASIS_B)), {}), lambda r: r, True),
    "centered_lift": (lambda k: ((k(POLY), 256), {}), lambda r: r, None),
    "dft_features": (lambda k: ((k(POLY), 256, 3), {}), lambda r: r, None),
    "encode_image": (lambda k: ((k(IMG),), {}), lambda r: r, None),
    "decode_image": (lambda k: ((k(IMG.reshape(-1).astype(np.int64)), (4, 4)), {}), lambda r: r, None),
    "encode_tokens": (lambda k: ((k(POLY[:, :5] % 50), 64), {}), lambda r: r, None),
    "calibrated_stacking": (lambda k: ((k(SCORES), np.array([True, True, False, False]), 0.5), {}),
                            lambda r: r, True),
}

#: cases whose output is a scalar: a Python float for NumPy input, a 0-d tensor for a tensor
SCALAR = {"sinkhorn_divergence", "sliced_wasserstein"}

#: functions of ``geoalign.__all__`` outside the array contract, and why
NOT_ARRAY_FUNCTIONS = {
    **{name: "data loader: reads files or embedded data, returns NumPy by design"
       for name in ("load_digits_two_view", "load_paired", "load_xlsa17", "load_config")},
    **{name: "study cell: keyword numbers in, a dict of Python floats out"
       for name in ("decomposition_study", "dimension_study", "epsilon_study", "perturbation_study",
                    "semi_paired_study", "transductive_study")},
    **{name: "sweep/registry machinery, not an array function"
       for name in ("register_study", "run_study", "run_sweep")},
    **{name: "scores: Python floats (or a result of floats) for any input kind"
       for name in ("retrieval_scores", "zsl_accuracy", "per_class_accuracy", "evaluate_gzsl",
                    "select_gamma", "zero_shot_score", "subspace_distance")},
    "distributed_fiber_product": "needs a Dask cluster (test_sweep_dask.py); returns NumPy pairs by design",
    "iter_fiber_product": "a generator of FiberProduct blocks, each under the fiber_product contract "
                          "(test_fiber.py)",
    "fiber_counts": "counts are integers in NumPy for any input kind (test_fiber.py)",
    "estimate_density": "a statistical estimate: Python floats for any input kind (test_fiber.py)",
    "ajive": "AJIVE reference implementation for comparisons: NumPy only (test_subspace.py)",
    "decode_tokens": "token sequences have their own lengths: a list of int lists (ragged) by design",
    "toc_select": "codebook selection on the CPU: indices and scores in NumPy (test_codebook.py)",
}


def _functions():
    return sorted(n for n in geoalign.__all__ if inspect.isfunction(getattr(geoalign, n)))


def test_every_exported_function_is_classified():
    names = set(_functions())
    assert not (set(CASES) & set(NOT_ARRAY_FUNCTIONS))
    assert names == set(CASES) | set(NOT_ARRAY_FUNCTIONS), (
        f"unclassified: {sorted(names - set(CASES) - set(NOT_ARRAY_FUNCTIONS))}; "
        f"stale: {sorted((set(CASES) | set(NOT_ARRAY_FUNCTIONS)) - names)}")


def _is_float(x) -> bool:
    return x.dtype.is_floating_point if isinstance(x, torch.Tensor) else np.issubdtype(x.dtype, np.floating)


def _float32(a):
    return a.astype(np.float32) if np.issubdtype(a.dtype, np.floating) else a


@pytest.mark.parametrize("name", sorted(CASES))
def test_numpy_in_numpy_out(name):
    make, get, _ = CASES[name]
    args, kwargs = make(np.asarray)
    out = get(getattr(geoalign, name)(*args, **kwargs))
    expected = float if name in SCALAR else np.ndarray
    assert isinstance(out, expected), f"{name}: NumPy in gave {type(out).__name__}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_tensor_in_tensor_out_on_the_same_device(name):
    make, get, _ = CASES[name]
    args, kwargs = make(torch.as_tensor)
    out = get(getattr(geoalign, name)(*args, **kwargs))
    assert isinstance(out, torch.Tensor), f"{name}: a tensor in gave {type(out).__name__}"
    assert out.device == torch.device("cpu")


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c[2]))
@pytest.mark.parametrize("kind", [np.asarray, torch.as_tensor], ids=["numpy", "torch"])
def test_float32_is_kept(name, kind):
    make, get, _ = CASES[name]
    if name in SCALAR and kind is np.asarray:
        pytest.skip("a Python float carries no precision")
    args, kwargs = make(lambda a: kind(_float32(np.asarray(a))))
    out = get(getattr(geoalign, name)(*args, **kwargs))
    assert _is_float(out) and str(out.dtype).endswith("float32"), f"{name}: float32 in gave {out.dtype}"
