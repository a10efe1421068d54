# SPDX-License-Identifier: MIT
"""Loading the OpenBLAS that the compiled core links (from the scipy-openblas32 wheel).

The extension finds ``libscipy_openblas.so`` through its run path when both wheels sit in the same
site-packages. Loading the library first, from wherever Python imports ``scipy_openblas32``, covers the other
layouts (``pip install --target``, split site directories): the dynamic loader then matches the extension's
dependency to the library already loaded, by its soname.

Loading it here also settles which of OpenBLAS's kernels run: its DYNAMIC_ARCH build picks them once, when the
library loads, from the CPU's family and model. OpenBLAS 0.3.34 does not know AMD's Zen 5 and falls back to
its AVX2 (Haswell) kernels there, half the AVX-512 kernels' rate (measured on a 2-core Zen 5 guest, one thread,
[6400, 512] x [512, 2048]: 105 GFLOP/s on Haswell, 199 on SkylakeX; Eigen 130). So on an AMD CPU with every
AVX-512 subset that OpenBLAS's SkylakeX kernels use, the library is loaded with ``OPENBLAS_CORETYPE=SkylakeX``
(what OpenBLAS itself picks for Zen 4), unless the user has set ``OPENBLAS_CORETYPE``. The variable is put
back as it was once the library has loaded: other BLAS libraries (NumPy's) are not affected.
"""

from __future__ import annotations

import ctypes
import os
from typing import Optional

# The AVX-512 subsets OpenBLAS's SkylakeX kernels use (its own check for that target).
_SKYLAKEX_FLAGS = frozenset({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"})


def _cpu_info(path: str = "/proc/cpuinfo") -> tuple[str, frozenset[str]]:
    """The first CPU's vendor and flags from /proc/cpuinfo; empty where there is none (not Linux)."""
    vendor, flags = "", frozenset()
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "vendor_id":
                    vendor = value.strip()
                elif key == "flags":
                    flags = frozenset(value.split())
                    break
    except OSError:
        pass
    return vendor, flags


def openblas_coretype(environ: Optional[dict] = None, cpuinfo: str = "/proc/cpuinfo") -> Optional[str]:
    """The OPENBLAS_CORETYPE to load OpenBLAS with, or None to leave its own choice (see the module's doc)."""
    environ = os.environ if environ is None else environ
    if "OPENBLAS_CORETYPE" in environ:
        return None  # the user's choice
    vendor, flags = _cpu_info(cpuinfo)
    if vendor == "AuthenticAMD" and _SKYLAKEX_FLAGS <= flags:
        return "SkylakeX"
    return None


def preload_openblas() -> None:
    """Load the scipy-openblas32 library if that wheel is importable; nothing otherwise (an Eigen-only build
    does not need it, and a build that does fails its import with the loader's own message)."""
    try:
        import scipy_openblas32
    except ImportError:
        return
    coretype = openblas_coretype()
    if coretype is not None:
        os.environ["OPENBLAS_CORETYPE"] = coretype  # read by OpenBLAS's constructor, at load
    try:
        path = os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(fullname=True))
        ctypes.CDLL(path)
    except (OSError, IndexError):
        return  # leave it to the extension's own run path (and OpenBLAS's own choice of kernels)
    finally:
        if coretype is not None:
            del os.environ["OPENBLAS_CORETYPE"]
