"""Optimal transport in torch: Sinkhorn, Sinkhorn divergence, sliced Wasserstein, barycentres."""
from .sinkhorn import SinkhornResult, sinkhorn

__all__ = ["SinkhornResult", "sinkhorn"]
