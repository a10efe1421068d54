# SPDX-License-Identifier: MIT
"""Which OpenBLAS kernels the extension's products run on: on an AMD CPU with AVX-512, OpenBLAS's SkylakeX
kernels (OpenBLAS 0.3.34 does not recognise Zen 5 and falls back to its AVX2 ones), unless the user chose with
OPENBLAS_CORETYPE; everywhere else OpenBLAS's own choice. The process environment is left as it was.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import lstm_ext
from lstm_ext import _blas

AVX512 = "avx512f avx512cd avx512bw avx512dq avx512vl"


def cpuinfo(tmp_path: Path, vendor: str, flags: str) -> str:
    path = tmp_path / "cpuinfo"
    path.write_text(
        f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: 26\nflags\t\t: fpu sse2 avx2 fma {flags}\n\n"
        f"processor\t: 1\nvendor_id\t: {vendor}\nflags\t\t: fpu\n"
    )
    return str(path)


def test_amd_with_avx512_gets_the_skylakex_kernels(tmp_path):
    assert _blas.openblas_coretype({}, cpuinfo(tmp_path, "AuthenticAMD", AVX512 + " avx512_bf16")) == "SkylakeX"


@pytest.mark.parametrize("missing", AVX512.split())
def test_amd_missing_an_avx512_subset_keeps_openblas_choice(tmp_path, missing):
    flags = " ".join(f for f in AVX512.split() if f != missing)
    assert _blas.openblas_coretype({}, cpuinfo(tmp_path, "AuthenticAMD", flags)) is None


def test_intel_keeps_openblas_choice(tmp_path):
    assert _blas.openblas_coretype({}, cpuinfo(tmp_path, "GenuineIntel", AVX512)) is None


def test_the_users_coretype_wins(tmp_path):
    env = {"OPENBLAS_CORETYPE": "Haswell"}
    assert _blas.openblas_coretype(env, cpuinfo(tmp_path, "AuthenticAMD", AVX512)) is None


def test_no_cpuinfo_keeps_openblas_choice(tmp_path):
    assert _blas.openblas_coretype({}, str(tmp_path / "absent")) is None


def test_the_environment_is_left_as_it_was():
    # This process imported lstm_ext already (conftest); the variable, if the test runner did not set it,
    # must not have leaked into the environment that NumPy's BLAS or child processes see.
    if "OPENBLAS_CORETYPE" not in os.environ:
        code = "import os, lstm_ext; print(os.environ.get('OPENBLAS_CORETYPE'))"
        env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "None"


@pytest.mark.skipif("openblas" not in lstm_ext.gemm_backends(), reason="this build has no OpenBLAS")
def test_the_loaded_kernels_follow_the_choice():
    code = "import lstm_ext._core as c; print(c.gemm_backend_description('openblas'))"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    chosen = _blas.openblas_coretype(env)
    if chosen is not None:
        assert chosen in out.stdout, out.stdout
    # The user's own choice reaches OpenBLAS unchanged.
    env["OPENBLAS_CORETYPE"] = "Haswell"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "Haswell" in out.stdout, out.stdout
