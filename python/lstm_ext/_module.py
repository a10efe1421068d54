# SPDX-License-Identifier: MIT
"""The parameter store every layer shares: torch-named parameters, their gradients, state_dict, train/eval."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np

from ._validation import as_float_array, check_shape, resolve_dtype

# Parameters and gradients start on a cache line (and an AVX-512 vector): the kernels that read weights as they
# are (the cells, a sequence of a few steps) then load whole vectors without splitting cache lines. NumPy
# aligns to 16 bytes only; at I = H = 128 an LSTMCell step took 7.4 us on weights 48 bytes past a line, 5.9 us
# on aligned ones.
_ALIGN = 64


def _aligned_copy(array: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``array`` whose data starts on a ``_ALIGN``-byte boundary."""
    raw = np.empty(array.nbytes + _ALIGN, dtype=np.uint8)
    start = -raw.ctypes.data % _ALIGN
    out = raw[start:start + array.nbytes].view(array.dtype).reshape(array.shape)
    np.copyto(out, array)
    return out


class Module:
    """Base of the layers: named parameters and gradients, as ``torch.nn.Module`` names them.

    Parameters are plain NumPy arrays of the layer's dtype, reachable as attributes under torch's names
    (``layer.weight_ih_l0``) and through :meth:`parameters`. Gradients live in :attr:`grads` under the same
    names and shapes. Assigning a parameter attribute checks its shape and casts to the layer's dtype.
    """

    def __init__(self, dtype: Any) -> None:
        object.__setattr__(self, "_params", {})
        object.__setattr__(self, "_grads", {})
        self.dtype = resolve_dtype(dtype)
        self.training = True

    # -- parameters -------------------------------------------------------------------------------------
    def _init_params(self, shapes: Mapping[str, Tuple[int, ...]], bound: float, seed: Optional[int]) -> None:
        """Uniform in [-bound, bound], in state_dict order, as torch initialises recurrent layers."""
        rng = np.random.default_rng(seed)
        for name, shape in shapes.items():
            self._params[name] = _aligned_copy(rng.uniform(-bound, bound, size=shape).astype(self.dtype))
            self._grads[name] = _aligned_copy(np.zeros(shape, dtype=self.dtype))

    def _checked_param(self, name: str, value: Any) -> np.ndarray:
        array = value
        if isinstance(array, np.ndarray) and array.dtype != self.dtype and array.dtype.kind == "f":
            array = array.astype(self.dtype)  # loading torch's float32 weights into a float64 layer is normal
        elif not isinstance(array, np.ndarray) and hasattr(array, "detach"):
            array = array.detach().cpu().numpy().astype(self.dtype, copy=False)
        array = as_float_array(name, array, self.dtype)
        check_shape(name, array, self._params[name].shape)
        return array

    def parameters(self) -> List[np.ndarray]:
        """The live parameter arrays, in state_dict order (an optimizer may update them in place)."""
        return list(self._params.values())

    def named_parameters(self) -> List[Tuple[str, np.ndarray]]:
        """``(name, array)`` pairs of the live parameters, in state_dict order."""
        return list(self._params.items())

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Copies of the parameters under torch's keys and shapes."""
        return {name: value.copy() for name, value in self._params.items()}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Load parameters from a mapping of arrays (NumPy arrays or torch tensors) under torch's keys.

        Values are copied and cast to the layer's dtype. With ``strict`` (the default), missing or unexpected
        keys raise KeyError; a wrong shape raises ValueError naming the key. Nothing is changed on error.
        """
        if strict:
            missing = [k for k in self._params if k not in state_dict]
            unexpected = [k for k in state_dict if k not in self._params]
            if missing or unexpected:
                raise KeyError(
                    f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}; "
                    f"expected exactly {list(self._params)}"
                )
        loaded = {
            name: _aligned_copy(self._checked_param(name, value))
            for name, value in state_dict.items()
            if name in self._params
        }
        # New arrays rather than in-place writes: a cached forward keeps the weights it ran with.
        self._params.update(loaded)

    @property
    def grads(self) -> Dict[str, np.ndarray]:
        """Gradients of the last :meth:`backward` (live arrays), same keys and shapes as :meth:`state_dict`."""
        return dict(self._grads)

    def zero_grad(self) -> None:
        """Set every gradient to zero (in place)."""
        for grad in self._grads.values():
            grad.fill(0)

    def _store_grads(self, new: Mapping[str, np.ndarray], accumulate: bool) -> None:
        for name, value in new.items():
            if accumulate:
                self._grads[name] += value
            else:
                np.copyto(self._grads[name], value)

    # -- modes ------------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Training mode (the default): a forward keeps what :meth:`backward` needs."""
        self.training = bool(mode)
        return self

    def eval(self) -> "Module":
        """Inference mode: a forward keeps nothing and :meth:`backward` is unavailable."""
        return self.train(False)

    # -- attribute access under torch's names -----------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        params = self.__dict__.get("_params", {})
        if name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__.get("_params", {}):
            self._params[name] = self._checked_param(name, value)
        else:
            object.__setattr__(self, name, value)

    def __dir__(self) -> Iterator[str]:
        return iter(sorted(set(super().__dir__()) | set(self._params)))
