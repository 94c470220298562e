"""Optimal transport in torch: Sinkhorn, Sinkhorn divergence, sliced Wasserstein, barycentres.

NumPy inputs give NumPy results; tensors (any device) give tensors.
"""
from .barycenter import (
    FixedSupportBarycenterResult,
    FreeSupportBarycenterResult,
    GaussianBarycenterResult,
    barycenter,
    free_support_barycenter,
    gaussian_barycenter,
)
from .divergence import SinkhornDivergenceResult, sinkhorn_divergence
from .sinkhorn import SinkhornResult, sinkhorn
from .sliced import SlicedWassersteinResult, projection_directions, sliced_wasserstein

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
