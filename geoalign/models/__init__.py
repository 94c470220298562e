"""geoalign.models (public names re-exported lazily; see :data:`__all__`)."""
from __future__ import annotations

from .._lazy import lazy_exports

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "AlignmentEstimator": "base",
    "MODEL_REGISTRY": "base",
    "get_model_class": "base",
    "register_model": "base",
    "CFSA": "cfsa",
    "CFSAModule": "cfsa",
    "digit_glyph_semantics": "cfsa",
    "gaussian_mmd2": "losses",
    "gradient_penalty": "losses",
    "CLUBEstimator": "codebook",
    "TOCSelection": "codebook",
    "UniCode": "codebook",
    "UniCodeModule": "codebook",
    "VectorQuantizer": "codebook",
    "Standardize": "encoders",
    "StandardizedNet": "encoders",
    "mlp": "encoders",
    "random_shifts": "sampling",
    "toc_select": "codebook",
    "LinearContrastive": "contrastive",
    "symmetric_info_nce": "losses",
    "CCA": "linear",
    "ESZSL": "linear",
    "load_linear_model": "linear",
    "AttentionPool": "encoders",
    "ConvEncoder": "encoders",
    "HierarchicalAttentionEncoder": "encoders",
    "MLPEncoder": "encoders",
    "QSMA": "qsma",
    "QSMAModule": "qsma",
    "batched_symmetric_info_nce": "losses",
    "digitally_shifted_normal": "sampling",
    "kl_to_standard_normal": "losses",
    "scrambled_sobol_bits": "sampling",
    "sobol_normal": "sampling",
    "MultiAssignment": "sspc",
    "SSPC": "sspc",
    "SSPCModule": "sspc",
    "SSPCRegularizer": "sspc",
    "multi_assignment_sinkhorn": "sspc",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
