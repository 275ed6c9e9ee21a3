"""Trained heads as plain dense layers: the form both export formats write.

A head becomes a list of `DenseLayer` s (``activation(W x + b)``). Each quaterion head class has
a converter in `HEAD_CONVERTERS` (a `refinery_quaterion.registry.Registry`: supporting another
head = one function + one `register_head_converter` line). Runs of affine layers are folded into
one, so the affine heads (``skip_connection`` with any ``n_layers``, ``linear``, ``gated``)
become a single layer with identity activation, the MLP heads (``widening``, ``stacked``) a
chain of layers, and ``empty`` no layer at all. `head_layers` checks the result against the
head itself on random inputs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from refinery_quaterion.exporters.source import ModelExportError
from refinery_quaterion.registry import Registry

__all__ = [
    "ACTIVATIONS",
    "DenseLayer",
    "HEAD_CONVERTERS",
    "HeadConversion",
    "activation_module",
    "dense_module",
    "fold_affine",
    "head_layers",
    "register_head_converter",
]

ACTIVATIONS: dict[str, str] = {
    "relu": "torch.nn.modules.activation.ReLU",
    "relu6": "torch.nn.modules.activation.ReLU6",
    "gelu": "torch.nn.modules.activation.GELU",
    "silu": "torch.nn.modules.activation.SiLU",
    "mish": "torch.nn.modules.activation.Mish",
    "elu": "torch.nn.modules.activation.ELU",
    "selu": "torch.nn.modules.activation.SELU",
    "celu": "torch.nn.modules.activation.CELU",
    "leaky_relu": "torch.nn.modules.activation.LeakyReLU",
    "tanh": "torch.nn.modules.activation.Tanh",
    "sigmoid": "torch.nn.modules.activation.Sigmoid",
    "hardtanh": "torch.nn.modules.activation.Hardtanh",
    "hardswish": "torch.nn.modules.activation.Hardswish",
    "hardsigmoid": "torch.nn.modules.activation.Hardsigmoid",
    "logsigmoid": "torch.nn.modules.activation.LogSigmoid",
    "softplus": "torch.nn.modules.activation.Softplus",
    "softsign": "torch.nn.modules.activation.Softsign",
    "tanhshrink": "torch.nn.modules.activation.Tanhshrink",
}
"""Element-wise activations a head may use, by ``torch.nn.functional`` name -> ``torch.nn`` class.

With default arguments the two compute the same; sentence-transformers' ``Dense`` stores the
class path and loads only ``torch.`` classes.
"""

IDENTITY = "torch.nn.modules.linear.Identity"


@dataclass(frozen=True)
class DenseLayer:
    """One dense layer: ``activation(x @ weight.T + bias)``.

    Attributes:
        weight: float64 array of shape ``(out_features, in_features)``.
        bias: float64 array of shape ``(out_features,)``.
        activation: A key of `ACTIVATIONS` (``torch.nn.functional`` name), or ``None`` for identity.
    """

    weight: np.ndarray
    bias: np.ndarray
    activation: str | None = None

    @property
    def in_features(self) -> int:
        """Input size."""
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        """Output size."""
        return int(self.weight.shape[0])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The layer applied to row vectors ``x`` of shape ``(n, in_features)`` (float64)."""
        y = np.asarray(x, dtype=np.float64) @ self.weight.T + self.bias
        if self.activation is None:
            return y
        module = activation_module(self.activation).double()
        with torch.no_grad():
            return module(torch.from_numpy(y)).numpy()


def activation_module(name: str) -> torch.nn.Module:
    """A ``torch.nn`` module computing the activation ``name`` (a key of `ACTIVATIONS`).

    Raises:
        ModelExportError: If ``name`` is not an element-wise activation with a ``torch.nn`` module.
    """
    path = ACTIVATIONS.get(name)
    if path is None:
        raise ModelExportError(f"activation {name!r} has no element-wise torch.nn module; "
                               f"exportable: {sorted(ACTIVATIONS)}")
    module_name, _, cls = path.rpartition(".")
    return getattr(importlib.import_module(module_name), cls)()


HeadConverter = Callable[[Any], list[DenseLayer]]


@dataclass(frozen=True)
class HeadConversion:
    """A registered head converter.

    Attributes:
        name: The head class's name (``"SkipConnectionHead"``).
        convert: ``convert(head) -> list[DenseLayer]``.
        head_class: The head class it converts (subclasses match too).
        description: One line for the docs.
        example: How it is registered.
    """

    name: str
    convert: HeadConverter
    head_class: type
    description: str
    example: str = ""


def _make_conversion(name: str, convert: HeadConverter, *, description: str, example: str,
                     head_class: type) -> HeadConversion:
    """A `HeadConversion` from a registration (the ``make_entry`` of `HEAD_CONVERTERS`)."""
    return HeadConversion(name, convert, head_class, description, example)


HEAD_CONVERTERS: Registry[HeadConversion] = Registry("head converter", "head converters", _make_conversion,
                                                     usage="register_head_converter({name})")
"""Head class name -> `HeadConversion` turning such a head into `DenseLayer` s (subclasses match too)."""


def register_head_converter(
    head_class: type, description: str | None = None
) -> Callable[[HeadConverter], HeadConverter]:
    """Decorator: register ``function(head) -> list[DenseLayer]`` for ``head_class``.

    A second converter for the same class replaces the first.

    Args:
        head_class: The head class (subclasses match too, unless they have their own converter).
        description: One line for the docs (default: names the class).

    Example:
        ```python
        @register_head_converter(MyHead)
        def _my_head(head):
            return [DenseLayer(head.weight, head.bias)]
        ```
    """
    text = description or f"{head_class.__module__}.{head_class.__qualname__} as dense layers"
    return HEAD_CONVERTERS.register(head_class.__name__, text, replace=True, head_class=head_class)


def _converter(head: Any) -> HeadConverter | None:
    """The converter of the head's class, or of its nearest base class that has one."""
    by_class = {entry.head_class: entry.convert for entry in HEAD_CONVERTERS.values()}
    return next((by_class[cls] for cls in type(head).__mro__ if cls in by_class), None)


def head_layers(head: Any, *, label: str | None = None, check: bool = True) -> list[DenseLayer]:
    """The trained head as dense layers, affine runs folded into one layer.

    Args:
        head: A trained head (quaterion ``EncoderHead``); dropout is ignored (inference).
        label: How error messages name the head (default: its class name).
        check: Compare the layers with the head on random inputs.

    Returns:
        The layers, first to last (empty for a head that changes nothing).

    Raises:
        ModelExportError: If no converter handles the head's class, it uses an activation without a
            ``torch.nn`` module, or the layers do not reproduce the head.
    """
    label = label or type(head).__name__
    converter = _converter(head)
    if converter is None:
        names = sorted(HEAD_CONVERTERS)
        raise ModelExportError(f"head {label} cannot be exported: it is not an affine map or a chain of dense layers "
                               f"this exporter knows; exportable head classes: {names}")
    try:
        layers = fold_affine(converter(head))
    except ModelExportError as err:
        raise ModelExportError(f"head {label} cannot be exported: {err}") from None
    if check:
        _check(head, layers, label)
    return layers


def fold_affine(layers: list[DenseLayer]) -> list[DenseLayer]:
    """Merge each layer without activation into the layer after it (``W2 (W1 x + b1) + b2``).

    Raises:
        ModelExportError: If the sizes of consecutive layers do not match.
    """
    out: list[DenseLayer] = []
    for layer in layers:
        if out and out[-1].activation is None:
            previous = out.pop()
            if previous.out_features != layer.in_features:
                raise ModelExportError(f"layer sizes do not match ({previous.out_features} -> {layer.in_features})")
            layer = DenseLayer(layer.weight @ previous.weight, layer.weight @ previous.bias + layer.bias,
                               layer.activation)
        out.append(layer)
    return out


def _check(head: Any, layers: list[DenseLayer], label: str) -> None:
    size = int(getattr(head, "input_embedding_size", 0) or (layers[0].in_features if layers else 0))
    if not size:
        return
    x = np.random.default_rng(0).normal(size=(16, size)) / np.sqrt(size)
    was_training = head.training
    head.eval()
    try:
        with torch.no_grad():
            parameter = next(iter(head.parameters()), torch.empty(0))
            expected = head(torch.from_numpy(x).to(parameter.device, parameter.dtype)).cpu().double().numpy()
    finally:
        head.train(was_training)
    got = x
    for layer in layers:
        got = layer.apply(got)
    scale = 1.0 + float(np.abs(expected).max(initial=0.0))
    if got.shape != expected.shape or float(np.abs(got - expected).max(initial=0.0)) > 1e-4 * scale:
        raise ModelExportError(f"head {label} cannot be exported: its dense-layer form does not reproduce it "
                               "(a subclass that changes the computation?)")


def _tensor(value: torch.Tensor) -> np.ndarray:
    return value.detach().to("cpu", torch.float64).numpy()


def _register_quaterion_heads() -> None:
    from quaterion_models.heads import EmptyHead, GatedHead, SkipConnectionHead, StackedProjectionHead

    @register_head_converter(EmptyHead, "no layer: the head changes nothing")
    def _empty(head: Any) -> list[DenseLayer]:
        return []

    @register_head_converter(GatedHead, "x * tanh(g): one diagonal layer")
    def _gated(head: Any) -> list[DenseLayer]:  # x * tanh(g)
        gates = np.tanh(_tensor(head.gates))
        return [DenseLayer(np.diag(gates), np.zeros_like(gates))]

    @register_head_converter(SkipConnectionHead, "x + sigmoid(g) * (W x + b) per block, folded into one layer")
    def _skip_connection(head: Any) -> list[DenseLayer]:  # per block: x + sigmoid(g) * (W x + b)
        layers = []
        for i in range(int(head._n_layers)):
            fc, gates = getattr(head, f"fc_{i}"), 1 / (1 + np.exp(-_tensor(getattr(head, f"gates_{i}"))))
            weight = np.eye(fc.in_features) + gates[:, None] * _tensor(fc.weight)
            bias = gates * _tensor(fc.bias) if fc.bias is not None else np.zeros(fc.out_features)
            layers.append(DenseLayer(weight, bias))
        return layers

    @register_head_converter(StackedProjectionHead,  # also WideningHead, a subclass
                             "its linear layers, each with the activation after it (also WideningHead)")
    def _stacked(head: Any) -> list[DenseLayer]:  # Linear (activation Linear)*
        layers: list[DenseLayer] = []
        for module in head._stack:
            if isinstance(module, torch.nn.Linear):
                bias = _tensor(module.bias) if module.bias is not None else np.zeros(module.out_features)
                layers.append(DenseLayer(_tensor(module.weight), bias))
            elif hasattr(module, "_activation_fn") and layers and layers[-1].activation is None:
                name = str(module._activation_fn)
                activation_module(name)  # raises for one without a torch.nn module
                layers[-1] = DenseLayer(layers[-1].weight, layers[-1].bias, name)
            else:
                raise ModelExportError(f"unexpected layer {type(module).__name__} in the projection stack")
        return layers


_register_quaterion_heads()


def dense_module(layers: Sequence[DenseLayer]) -> torch.nn.Module:
    """The layers as one torch module (``Linear`` and activation modules in sequence), weights copied.

    Args:
        layers: The head as `DenseLayer` s (from `head_layers`).
    """
    modules: list[torch.nn.Module] = []
    for layer in layers:
        linear = torch.nn.Linear(layer.in_features, layer.out_features)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(layer.weight))
            linear.bias.copy_(torch.from_numpy(layer.bias))
        modules.append(linear)
        if layer.activation:
            modules.append(activation_module(layer.activation))
    return torch.nn.Sequential(*modules)
