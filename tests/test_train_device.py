"""The Trainer's data path: device-resident inputs, streamed host inputs, autocast,
``compile=``, ``deterministic=``, and one-line errors for bad devices."""
import warnings

import numpy as np
import pytest
import torch

from geoalign._testing import SyncCounter
from geoalign._warnings import GeoalignWarning
from geoalign.models.qsma import QSMA
from geoalign.train import Trainer, _DeviceBatches

FAST = dict(dim=8, hidden=32, n_layers=1, max_epochs=2, batch_size=64, random_state=0)


def _pairs(n=192, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    S = torch.randn(n, 3, generator=g)
    return (S @ torch.randn(3, d, generator=g) + 0.2 * torch.randn(n, d, generator=g),
            S @ torch.randn(3, d, generator=g) + 0.2 * torch.randn(n, d, generator=g))


def _qsma(**options):
    return QSMA(**FAST, trainer_options={"progress": False, **options})


def test_tensor_inputs_make_no_numpy_round_trip():
    X_a, X_b = _pairs()
    with SyncCounter() as sc:
        est = _qsma().fit(X_a, X_b)
    assert "Tensor.numpy" not in sc.ops and "Tensor.__array__" not in sc.ops
    assert sc.ops["Tensor.tolist"] == FAST["max_epochs"]  # the per-epoch read of the losses
    # identical training from NumPy inputs (same rows, same batches)
    ref = _qsma().fit(X_a.numpy(), X_b.numpy())
    np.testing.assert_array_equal(est.transform_a(X_a.numpy()), ref.transform_a(X_a.numpy()))


def test_device_batches_gather_the_same_rows():
    X_a, X_b = _pairs(50)
    idx = torch.randperm(50)[:16]
    host = _DeviceBatches((X_a, X_b), torch.device("cpu"))
    assert host.resident and host.stream is None
    host.prefetch(idx)
    a, b = host.get(idx)
    assert torch.equal(a, X_a[idx]) and torch.equal(b, X_b[idx])
    # host data for a device other than CUDA is moved there once (shapes on meta)
    meta = _DeviceBatches((X_a, X_b), torch.device("meta"))
    assert meta.resident and meta.tensors[0].device.type == "meta"
    a, b = meta.get(idx)
    assert a.device.type == "meta" and a.shape == (16, 10)
    # data already on the device stays where it is
    on_meta = _DeviceBatches((meta.tensors[0], meta.tensors[1]), torch.device("meta"))
    assert on_meta.tensors[0] is meta.tensors[0]
    if torch.cuda.is_available():  # host data for CUDA: pinned, non-blocking, on a side stream
        cuda = _DeviceBatches((X_a, X_b), torch.device("cuda"))
        assert not cuda.resident and cuda.stream is not None
        cuda.prefetch(idx)
        a, b = cuda.get(idx)
        assert a.device.type == "cuda" and torch.equal(a.cpu(), X_a[idx])


def test_autocast_bf16_trains_on_cpu():
    X_a, X_b = _pairs()
    est = _qsma(amp="bf16").fit(X_a, X_b)
    assert np.isfinite(est.history_.records[-1]["train_loss"])
    assert est.transform_a(X_a).dtype == torch.float32


def test_compile_runs_the_step_through_torch_compile():
    X_a, X_b = _pairs(128)
    opts = dict(FAST, max_epochs=1)
    ref = QSMA(**opts, trainer_options={"progress": False}).fit(X_a, X_b)
    graphs = []

    def backend(gm, example_inputs):  # a torch.compile backend that records what it is given
        graphs.append(len(gm.graph.nodes))
        return gm.forward

    with warnings.catch_warnings():
        # dynamo's own deprecation/user warnings while tracing are not ours; a fallback to
        # eager mode (GeoalignWarning) must fail the test
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", GeoalignWarning)
        est = QSMA(**opts, trainer_options={"progress": False, "compile": backend}).fit(X_a, X_b)
    assert graphs and sum(graphs) > 50  # the loss was traced by dynamo (a graph or several)
    loss, ref_loss = est.history_.records[-1]["train_loss"], ref.history_.records[-1]["train_loss"]
    assert loss == pytest.approx(ref_loss, rel=1e-5)


def test_compile_failure_warns_and_trains_eagerly():
    X_a, X_b = _pairs(128)
    ref = QSMA(**dict(FAST, max_epochs=1), trainer_options={"progress": False}).fit(X_a, X_b)
    with pytest.warns(GeoalignWarning, match="torch.compile failed.*eager mode"):
        est = QSMA(**dict(FAST, max_epochs=1),
                   trainer_options={"progress": False, "compile": "no_such_backend"}).fit(X_a, X_b)
    assert est.history_.records[-1]["train_loss"] == ref.history_.records[-1]["train_loss"]
    with pytest.raises(TypeError, match="compile must be"):
        Trainer(compile=1.5)


def test_deterministic_is_a_choice():
    assert Trainer().deterministic is False
    assert Trainer(deterministic=True).deterministic is True


def test_bad_devices_give_one_line_errors():
    X_a, X_b = _pairs(64)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"^device='cuda' requested but CUDA is not available$"):
            QSMA(**FAST, device="cuda").fit(X_a, X_b)
        with pytest.raises(ValueError, match="device='cuda' requested"):
            Trainer(device="cuda").fit(_qsma().fit(X_a, X_b).module_, (X_a, X_b))
    with pytest.raises(ValueError, match=r"device='gpu' is not a torch device"):
        QSMA(**FAST, device="gpu").fit(X_a, X_b)
    with pytest.raises(ValueError, match=r"same device, got X_a on cpu, X_b on meta"):
        QSMA(**FAST).fit(X_a, X_b.to("meta"))
    with pytest.raises(ValueError, match=r"same device.*train_data\[X_b\] on meta"):
        Trainer(progress=False).fit(_qsma().fit(X_a, X_b).module_, (X_a, X_b.to("meta")))
