# SPDX-License-Identifier: MIT
"""Loading the OpenBLAS that the compiled core links (from the scipy-openblas32 wheel).

The extension finds ``libscipy_openblas.so`` through its run path when both wheels sit in the same
site-packages. Loading the library first, from wherever Python imports ``scipy_openblas32``, covers the other
layouts (``pip install --target``, split site directories): the dynamic loader then matches the extension's
dependency to the library already loaded, by its soname.
"""

from __future__ import annotations

import ctypes
import os


def preload_openblas() -> None:
    """Load the scipy-openblas32 library if that wheel is importable; nothing otherwise (an Eigen-only build
    does not need it, and a build that does fails its import with the loader's own message)."""
    try:
        import scipy_openblas32
    except ImportError:
        return
    try:
        path = os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(fullname=True))
        ctypes.CDLL(path)
    except (OSError, IndexError):
        return  # leave it to the extension's own run path
