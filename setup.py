"""The one compiled part: `augexport._warp` (the fused bilinear warp, see augexport/_warp.c).

Optional: where it cannot be built (no C compiler) augexport runs OpenCV's warp instead, which
gives the same bytes, only slower. Everything else is in pyproject.toml."""

import sys

from setuptools import Extension, setup

flags = [] if sys.platform == "win32" else ["-O3", "-fno-strict-aliasing"]
setup(ext_modules=[Extension("augexport._warp", ["augexport/_warp.c"], optional=True, extra_compile_args=flags)])
