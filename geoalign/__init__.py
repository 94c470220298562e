"""geoalign: geometry of multimodal embedding alignment.

The public API is re-exported here.  Submodules are imported lazily on first
attribute access (so ``import geoalign`` does not import torch), and
:data:`__all__` lists every public name.
"""
from __future__ import annotations

from ._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "ConvergenceWarning": "_warnings",
    "load_digits_two_view": "data.digits",
    "load_paired": "data.paired",
    "PlantedAlignment": "data.planted",
    "PlantedRingAlignment": "data.planted_rings",
    "load_xlsa17": "data.xlsa17",
    "DensityEstimate": "fiber",
    "FiberCounts": "fiber",
    "FiberProduct": "fiber",
    "PrecisionRecall": "fiber",
    "estimate_density": "fiber",
    "fiber_counts": "fiber",
    "fiber_product": "fiber",
    "pair_distances": "fiber",
    "FrechetMeanResult": "manifolds.frechet",
    "frechet_mean": "manifolds.frechet",
    "Grassmann": "manifolds.grassmann",
    "Hyperbolic": "manifolds.hyperbolic",
    "SPD": "manifolds.spd",
    "Sphere": "manifolds.sphere",
    "DirectionalRetrieval": "metrics",
    "GZSLResult": "metrics",
    "GammaSelection": "metrics",
    "RetrievalResult": "metrics",
    "calibrated_stacking": "metrics",
    "evaluate_gzsl": "metrics",
    "per_class_accuracy": "metrics",
    "retrieval_metrics": "metrics",
    "select_gamma": "metrics",
    "zsl_accuracy": "metrics",
    "AlignmentEstimator": "models.base",
    "CFSA": "models.cfsa",
    "UniCode": "models.codebook",
    "toc_select": "models.codebook",
    "LinearContrastive": "models.contrastive",
    "CCA": "models.linear",
    "ESZSL": "models.linear",
    "QSMA": "models.qsma",
    "SSPC": "models.sspc",
    "SinkhornResult": "ot",
    "barycenter": "ot",
    "free_support_barycenter": "ot",
    "gaussian_barycenter": "ot",
    "sinkhorn": "ot",
    "sinkhorn_divergence": "ot",
    "sliced_wasserstein": "ot",
    "PolyDivMod": "rings",
    "PolyRing": "rings",
    "RandomProjection": "rings",
    "centered_lift": "rings",
    "decode_image": "rings",
    "decode_tokens": "rings",
    "dft_features": "rings",
    "encode_image": "rings",
    "encode_tokens": "rings",
    "decomposition_study": "studies",
    "dimension_study": "studies",
    "epsilon_study": "studies",
    "perturbation_study": "studies",
    "AJIVEResult": "subspace",
    "SharedPrivateDecomposition": "subspace",
    "SubspaceComponents": "subspace",
    "ajive": "subspace",
    "principal_angles": "subspace",
    "subspace_distance": "subspace",
    "Grid": "sweep",
    "Study": "sweep",
    "SweepResult": "sweep",
    "SweepSummary": "sweep",
    "distributed_fiber_product": "sweep",
    "register_study": "sweep",
    "run_study": "sweep",
    "run_sweep": "sweep",
    "Trainer": "train",
    "TrainingHistory": "train",
    "load_config": "train",
}

__all__ = sorted(["__version__", *_EXPORTS])
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
