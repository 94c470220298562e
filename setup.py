"""Build the optional compiled kernel; all metadata lives in pyproject.toml.

``geoalign._ringmul`` (batched products in Z_n[x] for power-of-two moduli) is
optional: without a C compiler the install still succeeds and
:mod:`geoalign.rings` falls back to its exact FFT products.
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("geoalign._ringmul", sources=["geoalign/_ringmul.c"],
                  extra_compile_args=["-O3"], optional=True),
    ],
)
