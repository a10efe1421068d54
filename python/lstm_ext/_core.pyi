# SPDX-License-Identifier: MIT
"""Type stubs of the compiled core. Private: arguments are checked for rank and size only."""

from typing import List, Optional, Tuple, TypeVar

import numpy as np
import numpy.typing as npt

_F = TypeVar("_F", np.float32, np.float64)
_Arr = npt.NDArray[_F]

def lstm_stack_forward(
    x: _Arr, w_ih: List[_Arr], w_hh: List[_Arr], bias: Optional[List[_Arr]], h0: Optional[_Arr],
    c0: Optional[_Arr], layers: int, directions: int, training: bool,
) -> Tuple[_Arr, _Arr, _Arr, Optional[Tuple[_Arr, _Arr, _Arr]]]: ...
def lstm_stack_backward(
    x: _Arr, w_ih: List[_Arr], w_hh: List[_Arr], bias: Optional[List[_Arr]], h0: Optional[_Arr],
    c0: Optional[_Arr], layers: int, directions: int, y: _Arr, gates: _Arr, cells: _Arr, hidden: _Arr,
    dy: _Arr, dh_n: Optional[_Arr], dc_n: Optional[_Arr],
) -> Tuple[_Arr, _Arr, _Arr, List[_Arr], List[_Arr], Optional[List[_Arr]]]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def default_num_threads() -> int: ...
