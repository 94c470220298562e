"""Build the optional compiled kernels; all metadata lives in pyproject.toml.

``geoalign._ringmul`` (batched exact products in Z_n[x], n < 2^31) is
optional: without a C compiler the install still succeeds and
:mod:`geoalign.rings` falls back to its exact FFT and direct products.
``geoalign._fiber`` (threshold selection and exact distances of the eps-join)
is optional too: :mod:`geoalign.fiber` then runs the same steps in NumPy, with
identical results.
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("geoalign._ringmul", sources=["geoalign/_ringmul.c"],
                  extra_compile_args=["-O3"], optional=True),
        Extension("geoalign._fiber", sources=["geoalign/_fiber.c"],
                  extra_compile_args=["-O3", "-ffp-contract=off"], optional=True),
    ],
)
