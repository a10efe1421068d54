#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The C++ unit tests of the core, without the Python module: GoogleTest from Debian's libgtest-dev, Eigen from
# the cmeel-eigen wheel and OpenBLAS from the scipy-openblas32 wheel, configured into build/cpp-tests and run
# by ctest. Run from anywhere; a second run only rebuilds what changed.
#   PYTHON=/path/to/venv/bin/python   reuse that environment's cmeel-eigen and scipy-openblas32 when it has both
#   CMAKE_GENERATOR                   as CMake reads it (default here: Ninja when installed)
#   SANITIZE=1                        build with AddressSanitizer (LeakSanitizer included) and UBSan into
#                                     build/cpp-tests-asan; any report fails the run
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=build/cpp-tests
sanitize=OFF
if [[ "${SANITIZE:-0}" == 1 ]]; then
  build_dir=build/cpp-tests-asan
  sanitize=ON
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
fi
deps_dir=build/cpp-tests-deps  # a pip --target install of the wheels, kept for the next run

if [[ ! -f /usr/include/gtest/gtest.h ]]; then
  echo "cpp_tests: installing libgtest-dev"
  as_root=(env DEBIAN_FRONTEND=noninteractive)  # CI runs as root; a developer's machine may need sudo
  if [[ $(id -u) -ne 0 ]]; then as_root=(sudo "${as_root[@]}"); fi
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq libgtest-dev
fi

# The prefix to hand CMake is the directory that holds cmeel.prefix/ and scipy_openblas32/ (site-packages, or
# the --target dir).
has_deps() { [[ -f "$1/cmeel.prefix/include/eigen3/Eigen/Core" && -f "$1/scipy_openblas32/include/cblas.h" ]]; }
deps_prefix=""
if [[ -n "${PYTHON:-}" ]]; then
  purelib=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  if has_deps "$purelib"; then deps_prefix=$purelib; fi
fi
if [[ -z "$deps_prefix" ]]; then
  if ! has_deps "$deps_dir"; then
    echo "cpp_tests: installing cmeel-eigen and scipy-openblas32 into $deps_dir"
    rm -rf "$deps_dir"
    # The same bounds as pyproject.toml's build requirements. --no-deps: only the headers, libraries and CMake
    # config are needed, not the cmeel build tool.
    PIP_ROOT_USER_ACTION=ignore "${PYTHON:-python3}" -m pip install --quiet --no-deps --target "$deps_dir" \
      "cmeel-eigen>=3.4,<4" "scipy-openblas32>=0.3.27"
  fi
  deps_prefix=$(cd "$deps_dir" && pwd)
fi

generator=()
if [[ -z "${CMAKE_GENERATOR:-}" && ! -f "$build_dir/CMakeCache.txt" ]] && command -v ninja >/dev/null; then
  generator=(-G Ninja)
fi

cmake -S . -B "$build_dir" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DLSTM_EXT_BUILD_PYTHON=OFF \
  -DLSTM_EXT_BUILD_TESTS=ON \
  -DLSTM_EXT_BUILD_BENCHMARKS=OFF \
  -DLSTM_EXT_SANITIZE="$sanitize" \
  -DLSTM_EXT_BLAS=ON \
  -DCMAKE_PREFIX_PATH="$deps_prefix"
cmake --build "$build_dir" --parallel 2
# --no-tests=error: a build that registered no test fails instead of passing; --timeout: a hang ends.
ctest --test-dir "$build_dir" --output-on-failure --no-tests=error --timeout 300
