"""Exact ring arithmetic over :math:`\\mathbb{Z}_n[x]` and the maps between data, rings and vectors.

=====================================  ====================================================
:mod:`geoalign.rings.ring`             :class:`PolyRing` (products, division, gcd), the exactness argument
:mod:`geoalign.rings.kernels`          the product kernels: limb-split FFT, schoolbook, compiled
:mod:`geoalign.rings.encoders`         images and token sequences as polynomials, and back
:mod:`geoalign.rings.embeddings`       lifts, random projections, DFT features
=====================================  ====================================================
"""
from __future__ import annotations

from ._common import MAX_MODULUS
from .embeddings import RandomProjection, centered_lift, dft_features
from .encoders import decode_image, decode_tokens, encode_image, encode_tokens
from .kernels import HAVE_COMPILED_KERNEL, fft_error_bound
from .ring import PolyDivMod, PolyRing

__all__ = [
    "MAX_MODULUS",
    "HAVE_COMPILED_KERNEL",
    "PolyRing",
    "PolyDivMod",
    "encode_image",
    "decode_image",
    "encode_tokens",
    "decode_tokens",
    "centered_lift",
    "RandomProjection",
    "dft_features",
    "fft_error_bound",
]
