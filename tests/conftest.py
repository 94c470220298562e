"""Shared test configuration.

Hypothesis runs a fixed, modest, derandomized set of examples so the suite stays within the
CI budget (2 cores); set GEOALIGN_HYPOTHESIS_PROFILE=thorough for more.
"""
import os
import signal

import matplotlib

matplotlib.use("Agg")  # no display in CI

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("GEOALIGN_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models and kernels in tests run fastest (and deterministically) on one thread;
    tests that exercise threading set their own counts."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _devices() -> list:
    """cpu; cuda when available; meta (shapes only: no values, so no results to compare)."""
    out = ["cpu"]
    try:
        import torch
    except ImportError:  # pragma: no cover
        return out
    if torch.cuda.is_available():
        out.append("cuda")
    return out + ["meta"]


@pytest.fixture(params=_devices())
def device(request):
    """The torch device a device-parametrised test runs on.

    ``"cpu"`` always, ``"cuda"`` when CUDA is available (so the same tests are the
    GPU check on a machine with one: ``benchmarks/gpu_check.py``), and ``"meta"``
    for shape-only checks where torch implements the operations on it (tests
    skip it, saying why, where the computation needs values).
    """
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def default_sigint():
    """Python's default SIGINT handler for the test (Ctrl-C raises KeyboardInterrupt).

    A runner started in the background by a shell inherits SIGINT ignored, so a test that
    simulates Ctrl-C with ``signal.raise_signal`` must install the handler itself.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
