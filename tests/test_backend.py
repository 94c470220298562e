import numpy as np
import pytest
import torch

from geoalign import _backend as B
from geoalign._validation import (check_array, check_choice, check_int, check_nonnegative_scalar,
                                  check_positive_scalar, check_same_length, check_weights)


def test_namespace_and_roundtrip():
    x = np.arange(6.0).reshape(2, 3)
    t = torch.arange(6.0).reshape(2, 3)
    assert B.namespace(x) is np
    assert B.namespace(x, t) is torch
    assert B.is_torch(t) and not B.is_torch(x)
    back = B.like(B.to_numpy(t) * 2, t)
    assert isinstance(back, torch.Tensor) and torch.equal(back, t * 2)
    assert isinstance(B.like(t * 2, x), np.ndarray)
    assert B.to_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype == np.float32


def test_device_checks():
    a = torch.zeros(2)
    assert B.check_same_device(a=a, b=np.zeros(2)) == "cpu"
    meta = torch.zeros(2, device="meta")
    with pytest.raises(ValueError, match="same device.*a on cpu.*b on meta"):
        B.check_same_device(a=a, b=meta)
    assert B.resolve_device(None, np.zeros(1)) == "cpu"
    assert B.resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            B.resolve_device("cuda")


def test_float_dtype():
    assert B.float_dtype(np.zeros(2, np.float32)) == np.float32
    assert B.float_dtype(np.zeros(2, np.int64)) == np.float64
    assert B.float_dtype(torch.zeros(2, dtype=torch.float16)) == torch.float32
    assert B.default_num_threads() >= 1


def test_validation_messages():
    with pytest.raises(ValueError, match="X contains 1 NaN"):
        check_array(np.array([1.0, np.nan]), "X")
    with pytest.raises(ValueError, match="X contains 1 NaN"):
        check_array(torch.tensor([1.0, float("inf")]), "X")
    with pytest.raises(ValueError, match="Y must have 2 dimension"):
        check_array(np.zeros(3), "Y", ndim=2)
    with pytest.raises(ValueError, match=r"Y must have shape \(\.\.\., 4\)"):
        check_array(np.zeros((3, 5)), "Y", shape=(4,))
    with pytest.raises(ValueError, match="must not be empty"):
        check_array(np.zeros((0, 5)), "Y", allow_empty=False)
    with pytest.raises(TypeError, match="numeric"):
        check_array(np.array(["a"]), "Y")
    with pytest.raises(ValueError, match="eps must be >= 0"):
        check_nonnegative_scalar(-1.0, "eps")
    with pytest.raises(ValueError, match="eps must not be NaN"):
        check_nonnegative_scalar(float("nan"), "eps")
    with pytest.raises(ValueError, match="reg must be a finite number > 0"):
        check_positive_scalar(0.0, "reg")
    with pytest.raises(TypeError, match="n must be an integer"):
        check_int(2.5, "n")
    with pytest.raises(ValueError, match="n must be >= 2"):
        check_int(1, "n", minimum=2)
    with pytest.raises(ValueError, match="same number of samples: U has 3, V has 4"):
        check_same_length(U=np.zeros((3, 2)), V=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="unknown metric 'l3'"):
        check_choice("l3", "metric", ["euclidean"])
    with pytest.raises(ValueError, match="sum to 1"):
        check_weights(np.array([0.5, 0.6]), "weights", 2)
    with pytest.raises(ValueError, match="non-negative"):
        check_weights(np.array([-0.5, 1.5]), "weights", 2)
    np.testing.assert_allclose(check_weights(None, "w", 4), 0.25)
