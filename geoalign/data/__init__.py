"""geoalign.data (public names re-exported lazily; see :data:`__all__`)."""
from __future__ import annotations

from .._lazy import lazy_exports

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "DIGITS_MODULUS": "digits",
    "DigitsTwoView": "digits",
    "augment_images": "digits",
    "augmented_digits_halves": "digits",
    "digits_images": "digits",
    "digits_training_source": "digits",
    "half_polynomials_to_images": "digits",
    "image_halves": "digits",
    "images_to_half_polynomials": "digits",
    "load_digits_two_view": "digits",
    "splice_images": "digits",
    "PairedEmbeddings": "paired",
    "load_paired": "paired",
    "save_paired": "paired",
    "PlantedAlignment": "planted",
    "PlantedSample": "planted",
    "ZeroShotSplit": "planted",
    "planted_training_source": "planted",
    "PlantedRingAlignment": "planted_rings",
    "PlantedRingSample": "planted_rings",
    "RingLinearEmbedding": "planted_rings",
    "FeatureScaler": "xlsa17",
    "XLSA17Split": "xlsa17",
    "XLSA17_NAMES": "xlsa17",
    "load_xlsa17": "xlsa17",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
