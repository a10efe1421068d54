# SPDX-License-Identifier: MIT
"""Type stubs of the compiled core. Private: arguments are checked for rank and size only.

``x`` is ``[T, N, I]``, or packed ``[R, I]`` when ``batch_sizes`` (int64 ``[T]``) is given; ``y``, ``dy`` and
``dx`` follow ``x``. Per-(layer, direction) lists are indexed ``k = l*D + d``.
"""

from typing import List, Optional, Tuple, TypeVar

import numpy as np
import numpy.typing as npt

_F = TypeVar("_F", np.float32, np.float64)
_Arr = npt.NDArray[_F]
_Sizes = Optional[npt.NDArray[np.int64]]

def lstm_stack_forward(
    x: _Arr, w_ih: List[_Arr], w_hh: List[_Arr], bias: Optional[List[_Arr]], w_hr: Optional[List[_Arr]],
    h0: Optional[_Arr], c0: Optional[_Arr], *, layers: int, directions: int, reverse: bool = False,
    training: bool, batch_sizes: _Sizes = None, input_masks: Optional[List[_Arr]] = None,
    recurrent_masks: Optional[List[_Arr]] = None, inter_masks: Optional[_Arr] = None,
) -> Tuple[_Arr, _Arr, _Arr, Optional[Tuple[_Arr, _Arr, _Arr]]]: ...
def lstm_stack_backward(
    x: _Arr, w_ih: List[_Arr], w_hh: List[_Arr], bias: Optional[List[_Arr]], w_hr: Optional[List[_Arr]],
    h0: Optional[_Arr], c0: Optional[_Arr], *, layers: int, directions: int, reverse: bool = False,
    batch_sizes: _Sizes = None, input_masks: Optional[List[_Arr]] = None,
    recurrent_masks: Optional[List[_Arr]] = None, inter_masks: Optional[_Arr] = None, y: _Arr, gates: _Arr,
    cells: _Arr, hidden: _Arr, dy: _Arr, dh_n: Optional[_Arr] = None, dc_n: Optional[_Arr] = None,
) -> Tuple[_Arr, _Arr, _Arr, List[_Arr], List[_Arr], Optional[List[_Arr]], Optional[List[_Arr]]]: ...
def gru_stack_forward(
    x: _Arr, w_ih: List[_Arr], w_hh: List[_Arr], b_ih: Optional[List[_Arr]], b_hh: Optional[List[_Arr]],
    h0: Optional[_Arr], *, layers: int, directions: int, reverse: bool = False, reset_after: bool = True,
    training: bool, batch_sizes: _Sizes = None, input_masks: Optional[List[_Arr]] = None,
    recurrent_masks: Optional[List[_Arr]] = None, inter_masks: Optional[_Arr] = None,
) -> Tuple[_Arr, _Arr, Optional[Tuple[_Arr, _Arr, _Arr]]]: ...
def gru_stack_backward(
    x: _Arr, w_ih: List[_Arr], w_hh: List[_Arr], b_ih: Optional[List[_Arr]], b_hh: Optional[List[_Arr]],
    h0: Optional[_Arr], *, layers: int, directions: int, reverse: bool = False, reset_after: bool = True,
    batch_sizes: _Sizes = None, input_masks: Optional[List[_Arr]] = None,
    recurrent_masks: Optional[List[_Arr]] = None, inter_masks: Optional[_Arr] = None, y: _Arr, gates: _Arr,
    hidden_n: _Arr, hidden: _Arr, dy: _Arr, dh_n: Optional[_Arr] = None,
) -> Tuple[_Arr, _Arr, List[_Arr], List[_Arr], Optional[List[_Arr]], Optional[List[_Arr]]]: ...

# Cells (one step; x [N, I] or [I], states [N, H] or [H]). The tape is None unless training.
def lstm_cell_forward(
    x: _Arr, h0: _Arr, c0: _Arr, w_ih: _Arr, w_hh: _Arr, b_ih: Optional[_Arr], b_hh: Optional[_Arr],
    training: bool,
) -> Tuple[_Arr, _Arr, Optional[_Arr]]: ...
def lstm_cell_backward(
    tape: _Arr, w_ih: _Arr, w_hh: _Arr, b_ih: Optional[_Arr], b_hh: Optional[_Arr], dh1: _Arr,
    dc1: Optional[_Arr], dw_ih: _Arr, dw_hh: _Arr, db_ih: Optional[_Arr], db_hh: Optional[_Arr],
    accumulate: bool,
) -> Tuple[_Arr, _Arr, _Arr]: ...
def gru_cell_forward(
    x: _Arr, h0: _Arr, w_ih: _Arr, w_hh: _Arr, b_ih: Optional[_Arr], b_hh: Optional[_Arr], training: bool,
) -> Tuple[_Arr, Optional[_Arr]]: ...
def gru_cell_backward(
    tape: _Arr, w_ih: _Arr, w_hh: _Arr, b_ih: Optional[_Arr], b_hh: Optional[_Arr], dh1: _Arr, dw_ih: _Arr,
    dw_hh: _Arr, db_ih: Optional[_Arr], db_hh: Optional[_Arr], accumulate: bool,
) -> Tuple[_Arr, _Arr]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def default_num_threads() -> int: ...
def copy_array(a: np.ndarray) -> np.ndarray: ...
def set_memory_cache_limit(nbytes: int) -> None: ...
def get_memory_cache_limit() -> int: ...
def memory_cache_bytes() -> int: ...
def empty_memory_cache() -> None: ...

def gemm_backends() -> List[str]: ...
def set_gemm_backend(name: str) -> None: ...
def get_gemm_backend() -> str: ...
def gemm_backend_description(name: str) -> str: ...
