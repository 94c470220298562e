"""Build the optional compiled kernels; all metadata lives in pyproject.toml.

``geoalign._ringmul`` (batched exact products in Z_n[x], n < 2^31),
``geoalign._sinkhorn`` (one-pass Sinkhorn scaling iterations) and
``geoalign._fiber`` (threshold selection and exact distances of the eps-join)
are optional: without a C compiler the install still succeeds,
:mod:`geoalign.rings` falls back to its exact FFT and direct products,
:mod:`geoalign.ot` to NumPy's BLAS and :mod:`geoalign.fiber` to the same steps
in NumPy (identical results), and the build prints a warning naming each
extension it skipped.
"""
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class build_ext_warn(build_ext):
    """``build_ext`` that names an optional extension it could not build (on stderr)."""

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            if getattr(ext, "optional", False):
                print(f"WARNING: the optional extension {ext.name} was not built ({type(exc).__name__}: "
                      f"{exc}); geoalign falls back to its pure-Python path", file=sys.stderr)
            raise  # optional ones are then skipped by setuptools, the others fail the build


setup(
    cmdclass={"build_ext": build_ext_warn},
    ext_modules=[
        Extension("geoalign._ringmul", sources=["geoalign/_ringmul.c"],
                  extra_compile_args=["-O3"], optional=True),
        Extension("geoalign._sinkhorn", sources=["geoalign/_sinkhorn.c"],
                  extra_compile_args=["-O3"], optional=True),
        Extension("geoalign._fiber", sources=["geoalign/_fiber.c"],
                  extra_compile_args=["-O3", "-ffp-contract=off"], optional=True),
    ],
)
