# SPDX-License-Identifier: MIT
"""Models made of layers: ``Model`` (write ``forward``/``backward`` yourself), ``Sequential`` (a chain),
``LastStep`` (a recurrent output's last step, for a head), and ``save``/``load`` of weights as ``.npz``.

A model collects the parameters, gradients and modes of its sub-layers under torch's dotted names
(``lstm.weight_ih_l0``, ``0.weight_ih_l0``), so a torch model with the same structure loads its state_dict.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterator, List, Mapping, Tuple, Union

import numpy as np

from ._module import Module
from ._recurrent import RecurrentBase

__all__ = ["Model", "Sequential", "LastStep", "save", "load"]

PathLike = Union[str, "os.PathLike[str]"]
Layer = Union[Module, "Model"]


class Model:
    """Base of models: sub-layers assigned as attributes are registered, in assignment order, as in torch.

    Subclass it, assign layers in ``__init__`` and write :meth:`forward` and :meth:`backward`::

        class Classifier(lstm_ext.Model):
            def __init__(self):
                super().__init__()
                self.lstm = lstm_ext.LSTM(8, 64, batch_first=True, dtype=np.float64)
                self.head = lstm_ext.Linear(64, 10, dtype=np.float64)

            def forward(self, x):                     # x: (N, T, 8) -> logits (N, 10)
                y, _ = self.lstm(x)
                self._y_shape = y.shape
                return self.head(y[:, -1])

            def backward(self, dlogits):              # accumulate, as torch's backward does
                dy = np.zeros(self._y_shape)
                dy[:, -1] = self.head.backward(dlogits, accumulate=True)
                return self.lstm.backward(dy, accumulate=True)[0]

    :meth:`backward` adds to the gradients (torch's semantics); :meth:`zero_grad` clears them.
    """

    _children: Dict[str, Layer]
    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_children", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        children = self.__dict__.get("_children")
        if children is None:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if isinstance(value, (Module, Model)):
            children[name] = value
        elif name in children:
            del children[name]
        object.__setattr__(self, name, value)

    # -- the computation: subclasses ---------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The model's output for a batch (subclasses implement it)."""
        raise NotImplementedError(f"{type(self).__name__}.forward: subclasses of Model implement forward")

    def backward(self, grad: Any) -> Any:
        """Backward of the last forward: adds the parameter gradients to :attr:`grads` and returns the gradient
        with respect to the input (subclasses implement it)."""
        raise NotImplementedError(f"{type(self).__name__}.backward: subclasses of Model implement backward")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # -- sub-layers, parameters, gradients ---------------------------------------------------------------
    def named_children(self) -> List[Tuple[str, Layer]]:
        """``(name, layer)`` pairs of the direct sub-layers, in registration order."""
        return list(self._children.items())

    def children(self) -> List[Layer]:
        """The direct sub-layers, in registration order."""
        return list(self._children.values())

    def named_parameters(self) -> List[Tuple[str, np.ndarray]]:
        """``(dotted name, array)`` pairs of the live parameters of every sub-layer, e.g. ``0.weight_ih_l0``."""
        return [
            (f"{prefix}.{name}", p)
            for prefix, child in self._children.items()
            for name, p in child.named_parameters()
        ]

    def parameters(self) -> List[np.ndarray]:
        """The live parameter arrays, in :meth:`state_dict` order (an optimizer updates them in place)."""
        return [p for _, p in self.named_parameters()]

    @property
    def grads(self) -> Dict[str, np.ndarray]:
        """The live gradient arrays under the dotted names of :meth:`named_parameters`."""
        return {
            f"{prefix}.{name}": g
            for prefix, child in self._children.items()
            for name, g in child.grads.items()
        }

    def zero_grad(self) -> None:
        """Set every gradient to zero (in place)."""
        for child in self._children.values():
            child.zero_grad()

    def train(self, mode: bool = True) -> "Model":
        """Training mode for the model and every sub-layer (the default): forwards keep what backward needs,
        dropout is on."""
        object.__setattr__(self, "training", bool(mode))
        for child in self._children.values():
            child.train(mode)
        return self

    def eval(self) -> "Model":
        """Inference mode for the model and every sub-layer."""
        return self.train(False)

    # -- weights -----------------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, np.ndarray]:
        """Copies of the parameters under dotted names: the keys of the same model written with torch."""
        return {name: p.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Load parameters (NumPy arrays or torch tensors) under dotted names; values are copied and cast.

        With ``strict`` (the default) missing or unexpected keys raise KeyError; a wrong shape raises
        ValueError naming the key. Shapes are checked before anything is loaded, so an error changes nothing.
        """
        own = dict(self.named_parameters())
        if strict:
            missing = [k for k in own if k not in state_dict]
            unexpected = [k for k in state_dict if k not in own]
            if missing or unexpected:
                raise KeyError(
                    f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}; "
                    f"expected exactly {list(own)}"
                )
        for key, value in state_dict.items():
            shape = tuple(value.shape) if hasattr(value, "shape") else np.shape(value)
            if key in own and shape != own[key].shape:
                raise ValueError(f"{key}: expected shape {own[key].shape}, got {shape}")
        for prefix, child in self._children.items():
            lead = prefix + "."
            part = {k[len(lead) :]: v for k, v in state_dict.items() if k.startswith(lead)}
            child.load_state_dict(part, strict=False)

    def save(self, path: PathLike) -> None:
        """Write the weights to ``path`` as ``.npz`` (see :func:`save`)."""
        save(self, path)

    def load(self, path: PathLike) -> None:
        """Read weights written by :meth:`save` (see :func:`load`)."""
        load(self, path)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}("]
        for name, child in self._children.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + ")" if self._children else f"{type(self).__name__}()"


class LastStep(Model):
    """The last time step of a recurrent layer's output ``y``: ``y[-1]``, or ``y[:, -1]`` with ``batch_first``.

    Between a recurrent layer and a head in a :class:`Sequential`. It assumes full-length sequences: with
    ``lengths``, take each sequence's own last step in a :class:`Model` of your own.

    Parameters
    ----------
    batch_first : bool
        The layout of ``y``: ``(N, T, F)`` if True, ``(T, N, F)`` if False (the recurrent layer's own setting).
    """

    def __init__(self, batch_first: bool = False) -> None:
        super().__init__()
        self.batch_first = bool(batch_first)
        self._shape: Tuple[int, ...] = ()

    def __repr__(self) -> str:
        return f"LastStep(batch_first={self.batch_first})"

    def forward(self, y: Any) -> np.ndarray:
        """``(T, N, F)`` (``(N, T, F)`` with ``batch_first``; unbatched ``(T, F)``) -> ``(N, F)`` (``(F,)``)."""
        y = np.asarray(y)
        if y.ndim not in (2, 3):
            raise ValueError(
                f"y: expected 3 dimensions {'(N, T, F)' if self.batch_first else '(T, N, F)'} or 2 "
                f"(T, F), got shape {y.shape}"
            )
        self._shape = y.shape
        return y[:, -1] if self.batch_first and y.ndim == 3 else y[-1]

    def backward(self, grad: Any) -> np.ndarray:
        """The gradient with respect to ``y``: ``grad`` at the last step, zero elsewhere."""
        if not self._shape:
            raise RuntimeError("backward: no forward to differentiate; call the layer first")
        grad = np.asarray(grad)
        dy = np.zeros(self._shape, dtype=grad.dtype)
        if self.batch_first and len(self._shape) == 3:
            dy[:, -1] = grad
        else:
            dy[-1] = grad
        return dy


class Sequential(Model):
    """Layers applied one after the other, named ``"0"``, ``"1"``... as in :class:`torch.nn.Sequential`.

    A recurrent layer (``LSTM``, ``GRU``) passes on its output sequence ``y`` (its final states are dropped);
    put a :class:`LastStep` after it to feed only the last step to a head, or a ``Linear`` directly to apply it
    at every step. Cells (``LSTMCell``, ``GRUCell``) run one step and do not chain: use them in a
    :class:`Model` of your own.

    :meth:`backward` runs the layers' backwards in reverse order and *adds* to the gradients, as torch does;
    call :meth:`zero_grad` (or the optimizer's) before each batch.

    Examples
    --------
    >>> model = lstm_ext.Sequential(lstm_ext.LSTM(8, 64, batch_first=True), lstm_ext.LastStep(batch_first=True),
    ...                             lstm_ext.Linear(64, 10))
    >>> [name for name, _ in model.named_parameters()][:2]
    ['0.weight_ih_l0', '0.weight_hh_l0']
    """

    def __init__(self, *layers: Layer) -> None:
        super().__init__()
        for k, layer in enumerate(layers):
            if not isinstance(layer, (Module, Model)):
                raise TypeError(f"layers[{k}]: expected a layer or model, got {type(layer).__name__}")
            if _is_cell(layer):
                raise TypeError(
                    f"layers[{k}]: {type(layer).__name__} runs one step and does not chain in a "
                    "Sequential; use LSTM/GRU, or write a Model"
                )
            self._children[str(k)] = layer

    def __len__(self) -> int:
        return len(self._children)

    def __getitem__(self, index: int) -> Layer:
        return list(self._children.values())[index]

    def __iter__(self) -> Iterator[Layer]:
        return iter(list(self._children.values()))

    def forward(self, x: Any) -> Any:
        """The output of the last layer for input ``x`` (each layer's output is the next one's input)."""
        for layer in self._children.values():
            x = layer(x)  # type: ignore[operator]  # every concrete layer is callable; Module declares no __call__
            if isinstance(layer, RecurrentBase):
                x = x[0]
        return x

    def backward(self, grad: Any) -> Any:
        """Backward of the last forward, adding to :attr:`grads`; returns the gradient w.r.t. the input."""
        for layer in reversed(list(self._children.values())):
            if isinstance(layer, RecurrentBase):
                grad = layer.backward(grad, accumulate=True)[0]
            elif isinstance(layer, Module):
                grad = layer.backward(grad, accumulate=True)
            else:
                grad = layer.backward(grad)
        return grad


def _is_cell(layer: Any) -> bool:
    from .gru import GRUCell
    from .lstm import LSTMCell

    return isinstance(layer, (LSTMCell, GRUCell))


def save(model: Any, path: PathLike) -> None:
    """Write the weights of a layer or model (its :meth:`state_dict`) to ``path`` as an uncompressed ``.npz``.

    NumPy appends ``.npz`` to a path without it. The file holds one array per parameter under its state_dict
    key, readable with ``np.load`` (no pickles).
    """
    np.savez(os.fspath(path), **model.state_dict())


def load(model: Any, path: PathLike) -> None:
    """Load weights written by :func:`save` into a layer or model of the same structure (strict: the keys must
    match exactly; shapes are checked and values cast to the model's dtype)."""
    with np.load(os.fspath(path), allow_pickle=False) as archive:
        model.load_state_dict({key: archive[key] for key in archive.files})
