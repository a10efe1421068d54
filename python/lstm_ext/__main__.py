# SPDX-License-Identifier: MIT
"""``python -m lstm_ext``: the training demo, or the self-check.

    python -m lstm_ext [demo options]       train an LSTM on a real data set (needs the 'demo' extra)
    python -m lstm_ext check [options]      self-check against the NumPy reference, then timings
    python -m lstm_ext --check-only         the self-check alone, as CI runs it

Any of the self-check's own options (``--check-only``, ``--check-shape``, ``--shape``, ``--repeats``) selects
the self-check, so the command lines of earlier versions keep working. Exits non-zero on failure.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

_SELFCHECK_OPTIONS = ("--check-only", "--check-shape", "--shape", "--repeats")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["check"] or any(a.split("=")[0] in _SELFCHECK_OPTIONS for a in args):
        from . import _selfcheck

        return _selfcheck.main(args[1:] if args[:1] == ["check"] else args)
    from . import _demo

    return _demo.main(args[1:] if args[:1] == ["demo"] else args)


if __name__ == "__main__":
    sys.exit(main())
