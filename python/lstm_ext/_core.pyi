# SPDX-License-Identifier: MIT
"""Type stubs of the compiled core. Private: arguments are checked for rank and size only."""

from typing import Optional, Tuple, TypeVar

import numpy as np
import numpy.typing as npt

_F = TypeVar("_F", np.float32, np.float64)
_Arr = npt.NDArray[_F]

def lstm_forward(
    x: _Arr, w_ih: _Arr, w_hh: _Arr, bias: Optional[_Arr], h0: Optional[_Arr], c0: Optional[_Arr], training: bool
) -> Tuple[_Arr, _Arr, _Arr, Optional[_Arr], Optional[_Arr]]: ...
def lstm_backward(
    x: _Arr, w_ih: _Arr, w_hh: _Arr, bias: Optional[_Arr], h0: Optional[_Arr], c0: Optional[_Arr],
    y: _Arr, gates: _Arr, cells: _Arr, dy: _Arr, dh_n: Optional[_Arr], dc_n: Optional[_Arr],
) -> Tuple[_Arr, _Arr, _Arr, _Arr, _Arr, Optional[_Arr]]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def default_num_threads() -> int: ...
def lstm_cache_bytes(steps: int, batch: int, input: int, hidden: int, double_precision: bool) -> int: ...
