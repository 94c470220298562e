"""Root pytest configuration (applies to tests/ and notebooks/).

Notebooks run end to end in the test suite with a small setting: they read
``GEOALIGN_QUICK`` (set here, inherited by the nbmake kernels) and shrink their
sample sizes, epochs and grids.  In JupyterLab the variable is unset and the
full setting runs.
"""
import os

os.environ.setdefault("GEOALIGN_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
