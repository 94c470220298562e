"""Build the optional compiled kernel; all metadata lives in pyproject.toml.

``geoalign._ringmul`` (batched exact products in Z_n[x], n < 2^31) is
optional: without a C compiler the install still succeeds and
:mod:`geoalign.rings` falls back to its exact FFT and direct products.
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("geoalign._ringmul", sources=["geoalign/_ringmul.c"],
                  extra_compile_args=["-O3"], optional=True),
    ],
)
