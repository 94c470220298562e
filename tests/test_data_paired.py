import h5py
import numpy as np
import pytest
import torch

from geoalign.data.paired import load_paired, save_paired


@pytest.fixture
def pair(rng):
    return rng.normal(size=(7, 3)), rng.normal(size=(7, 5)), rng.integers(0, 3, size=7)


def test_npy_pair(tmp_path, pair):
    a, b, y = pair
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    np.save(tmp_path / "y.npy", y)
    p = load_paired(tmp_path / "a.npy", tmp_path / "b.npy", labels_path=tmp_path / "y.npy")
    np.testing.assert_array_equal(p.a, a)
    np.testing.assert_array_equal(p.b, b)
    np.testing.assert_array_equal(p.labels, y)
    assert len(p) == 7
    m = load_paired(tmp_path / "a.npy", tmp_path / "b.npy", mmap=True)
    np.testing.assert_array_equal(m.b, b)
    assert m.labels is None
    with pytest.raises(ValueError, match="pass path_b"):
        load_paired(tmp_path / "a.npy")
    with pytest.raises(FileNotFoundError, match="path_b file not found"):
        load_paired(tmp_path / "a.npy", tmp_path / "nope.npy")
    np.save(tmp_path / "short.npy", b[:5])
    with pytest.raises(ValueError, match=r"different numbers of rows \(a: 7, b: 5\)"):
        load_paired(tmp_path / "a.npy", tmp_path / "short.npy")
    np.save(tmp_path / "y_short.npy", y[:3])
    with pytest.raises(ValueError, match="labels have length 3, expected 7"):
        load_paired(tmp_path / "a.npy", tmp_path / "b.npy", labels_path=tmp_path / "y_short.npy")


@pytest.mark.parametrize("ext", [".npz", ".h5"])
def test_keyed_files_roundtrip(tmp_path, pair, ext):
    a, b, y = pair
    path = save_paired(tmp_path / f"emb{ext}", torch.as_tensor(a), b, y, key_a="img", key_b="txt")
    p = load_paired(path, key_a="img", key_b="txt", labels_key="labels")
    np.testing.assert_array_equal(p.a, a)
    np.testing.assert_array_equal(p.b, b)
    np.testing.assert_array_equal(p.labels, y)
    with pytest.raises(KeyError, match=r"no view b key 'b'; available: \['img', 'labels', 'txt'\]"):
        load_paired(path, key_a="img")
    with pytest.raises(KeyError, match="no labels key 'y'"):
        load_paired(path, key_a="img", key_b="txt", labels_key="y")
    with pytest.raises(ValueError, match="only apply to .npy"):
        load_paired(path, tmp_path / "x.npy")


def test_mismatch_and_bad_files(tmp_path, pair):
    a, b, _ = pair
    np.savez(tmp_path / "bad.npz", a=a, b=b[:4])
    with pytest.raises(ValueError, match="different numbers of rows"):
        load_paired(tmp_path / "bad.npz")
    with h5py.File(tmp_path / "nan.h5", "w") as f:
        f["a"] = np.full((2, 2), np.nan)
        f["b"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="NaN"):
        load_paired(tmp_path / "nan.h5")
    np.savez(tmp_path / "vec.npz", a=np.zeros(3), b=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="2 dimension"):
        load_paired(tmp_path / "vec.npz")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_paired(tmp_path / "missing.npz")
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match="unsupported"):
        load_paired(tmp_path / "x.csv")
    with pytest.raises(ValueError, match="key names must differ"):
        save_paired(tmp_path / "s.npz", a, b, key_a="x", key_b="x")
    with pytest.raises(ValueError, match="different numbers of rows"):
        save_paired(tmp_path / "s.npz", a, b[:2])
    assert not (tmp_path / "s.npz").exists()
