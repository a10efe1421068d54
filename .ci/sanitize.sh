#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The Python test suite against an extension built with AddressSanitizer and UndefinedBehaviorSanitizer
# (CMake option LSTM_EXT_SANITIZE), in its own venv and build directory. Any report fails the run:
# undefined behaviour aborts (-fno-sanitize-recover), and ASan aborts on its first error.
# The sanitizer runtimes are preloaded because the interpreter itself is not instrumented. Leak detection is
# off here: CPython does not free everything at exit, so LeakSanitizer would report the interpreter; our
# leaks are checked by the C++ tests under LeakSanitizer (cpp_tests.sh with SANITIZE=1) and by
# tests/test_memory.py (which skips its resident-memory checks here: LSTM_EXT_SANITIZED=1, ASan's quarantine
# keeps freed memory resident). allocator_may_return_null: an impossible allocation is a MemoryError, as without
# ASan, instead of an abort. --capture=sys: pytest captures Python's sys.stdout/stderr only, so that a
# sanitizer's report (written to file descriptor 2 just before it aborts) reaches the log. torch is not installed here, so its parity tests skip (they run in the plain build).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=build/asan-venv
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet numpy pytest hypothesis
"$venv/bin/pip" install --quiet . -Cbuild-dir=build/asan -Ccmake.define.LSTM_EXT_SANITIZE=ON

runtimes="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libubsan.so)"
LD_PRELOAD="$runtimes" LSTM_EXT_SANITIZED=1 \
  ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:strict_string_checks=1:check_initialization_order=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider --capture=sys "$@"
