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
    "gaussian_mmd2": "cfsa",
    "gradient_penalty": "cfsa",
    "CLUBEstimator": "codebook",
    "TOCSelection": "codebook",
    "UniCode": "codebook",
    "UniCodeModule": "codebook",
    "VectorQuantizer": "codebook",
    "toc_select": "codebook",
    "LinearContrastive": "contrastive",
    "symmetric_info_nce": "contrastive",
    "CCA": "linear",
    "ESZSL": "linear",
    "load_linear_model": "linear",
    "AttentionPool": "qsma",
    "ConvEncoder": "qsma",
    "HierarchicalAttentionEncoder": "qsma",
    "MLPEncoder": "qsma",
    "QSMA": "qsma",
    "QSMAModule": "qsma",
    "batched_symmetric_info_nce": "qsma",
    "digitally_shifted_normal": "qsma",
    "kl_to_standard_normal": "qsma",
    "scrambled_sobol_bits": "qsma",
    "sobol_normal": "qsma",
    "MultiAssignment": "sspc",
    "SSPC": "sspc",
    "SSPCModule": "sspc",
    "SSPCRegularizer": "sspc",
    "multi_assignment_sinkhorn": "sspc",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
