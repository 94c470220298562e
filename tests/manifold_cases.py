"""One instance of every manifold (and metric/model) that the manifold tests run over."""
from geoalign.manifolds import SPD, Grassmann, Hyperbolic, Sphere

MANIFOLDS = [
    Sphere(dim=4),
    Hyperbolic(3, "poincare"),
    Hyperbolic(3, "lorentz"),
    SPD(3, "affine"),
    SPD(3, "log_euclidean"),
    Grassmann(5, 2),
]
IDS = [repr(m) for m in MANIFOLDS]
