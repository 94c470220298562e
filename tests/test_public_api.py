"""Every name in a package's __all__ resolves (lazy re-exports stay in sync with the modules)."""
import importlib

import pytest

PACKAGES = ["geoalign", "geoalign.data", "geoalign.models", "geoalign.manifolds", "geoalign.ot"]


@pytest.mark.parametrize("package", PACKAGES)
def test_all_names_resolve(package):
    mod = importlib.import_module(package)
    assert mod.__all__ == sorted(mod.__all__)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name


def test_unknown_attribute_is_an_attribute_error():
    import geoalign

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        geoalign.nope
