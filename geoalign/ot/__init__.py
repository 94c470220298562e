"""Optimal transport in torch: Sinkhorn, Sinkhorn divergence, sliced Wasserstein, barycentres.

NumPy inputs give NumPy results; tensors (any device) give tensors.
"""
from ._barycenter import (
    FixedSupportBarycenterResult,
    FreeSupportBarycenterResult,
    GaussianBarycenterResult,
    barycenter,
    free_support_barycenter,
    gaussian_barycenter,
)
from ._divergence import SinkhornDivergenceResult, sinkhorn_divergence
from ._sinkhorn import SinkhornResult, sinkhorn
from ._sliced import SlicedWassersteinResult, projection_directions, sliced_wasserstein

__all__ = [
    "FixedSupportBarycenterResult",
    "FreeSupportBarycenterResult",
    "GaussianBarycenterResult",
    "SinkhornDivergenceResult",
    "SinkhornResult",
    "SlicedWassersteinResult",
    "barycenter",
    "free_support_barycenter",
    "gaussian_barycenter",
    "projection_directions",
    "sinkhorn",
    "sinkhorn_divergence",
    "sliced_wasserstein",
]
