"""The heads, losses and optimizers a model can be built with, each registered once by name.

Each family is a `refinery_quaterion.registry.Registry`; its entry (`Component`) holds the
name, a one-line description, a usage example, the options the component takes with their
defaults, and a builder. Importing this module imports no torch or quaterion — builders import
what they need when called — so the command line's ``--help``, the docs tables and
`refinery_quaterion.model.config` read the names, descriptions and options from here.

Adding a loss is one builder plus its registration::

    @LOSSES.register("my_loss", "One line saying what it does.", options={"margin": 0.5})
    def _my_loss(embedding_size: int, num_groups: int | None, **options: Any) -> Any:
        from refinery_quaterion import _compat  # noqa: F401  (before anything from quaterion)
        from my_package import MyLoss

        return MyLoss(**options)

Builders are called with every option (the defaults updated with the user's options):

* heads: ``builder(input_size, **options)`` returns a quaterion ``EncoderHead``;
* losses: ``builder(embedding_size, num_groups, **options)`` returns a quaterion
  ``SimilarityLoss`` (``num_groups`` is set when the entry has ``needs_num_groups``); an
  entry with ``takes_weights`` returns a loss whose ``forward`` also accepts ``weights=``
  (one per record, or per pair for a pair loss), used by ``FitConfig(sample_weighting="confidence")``;
* optimizers: ``builder(param_groups, lr, weight_decay, **options)`` returns a
  ``torch.optim.Optimizer``.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from refinery_quaterion.registry import Registry

__all__ = ["COMPONENT_RULES", "Component", "HEADS", "LOSSES", "OPTIMIZERS", "OPTION_RULES", "ComponentRegistry",
           "option_problem"]


@dataclass(frozen=True)
class Component:
    """One registered head, loss or optimizer.

    Attributes:
        kind: ``"head"``, ``"loss"`` or ``"optimizer"``.
        name: The name it is chosen by (``head="skip_connection"``).
        description: One line for the docs and ``--help``.
        options: Option name -> default value (JSON values; ``None`` where the default
            depends on the input, as the docstring of the builder says).
        builder: Builds the component (see the module docstring for its arguments).
        needs_num_groups: A loss over the classes that needs the number of labels.
        takes_weights: A loss that scales each record's (or pair's) term by a weight passed
            as ``weights=`` (see `refinery_quaterion.model._losses`).
        example: A usage example for the docs (``ModelConfig(head="linear")``).
    """

    kind: str
    name: str
    description: str
    options: Mapping[str, Any]
    builder: Callable[..., Any] = field(repr=False)
    needs_num_groups: bool = False
    takes_weights: bool = False
    example: str = ""

    def check_options(self, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """``options`` as a dict, after checking that each is one this component takes.

        Raises:
            TypeError: If ``options`` is not a mapping.
            ValueError: For an unknown option, listing the valid ones, or a value the component
                does not accept (type or range, see `OPTION_RULES`).
        """
        if options is None:
            return {}
        if not isinstance(options, Mapping):
            raise TypeError(f"{self.kind}_options must be a dict, got {type(options).__name__}")
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(f"{self.kind} {self.name!r} does not take option(s) {unknown}; "
                             f"valid {self.kind}_options: {list(self.options) or 'none'}")
        for option, value in options.items():
            expected = option_problem(self.name, option, value)
            if expected is not None:
                raise ValueError(f"{self.kind} {self.name!r}: {self.kind}_options {option!r} must be {expected}, "
                                 f"got {value!r}")
        return dict(options)

    def overrides(self, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """The checked ``options`` that differ from the defaults (the canonical form kept in configs)."""
        return {k: v for k, v in self.check_options(options).items() if not _same(v, self.options[k])}

    def resolve(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every option: the defaults updated with ``options`` (checked as in `check_options`)."""
        return {**self.options, **self.check_options(options)}

    def build(self, *args: Any, options: Mapping[str, Any] | None = None) -> Any:
        """Call the builder with ``args`` and every option (see `resolve`)."""
        return self.builder(*args, **self.resolve(options))


Rule = Callable[[Any], str | None]
"""Checks one option value: ``None`` when it is valid, else what was expected (``"a number > 0"``)."""


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False) -> Rule:
    """A finite number within ``low..high`` (ends included unless ``*_open``)."""
    text = (f"a finite number {'>' if low_open else '>='} {low:g}"
            + (f" and {'<' if high_open else '<='} {high:g}" if math.isfinite(high) else ""))

    def rule(value: Any) -> str | None:
        if not _finite(value) or (value <= low if low_open else value < low) \
                or (value >= high if high_open else value > high):
            return text
        return None

    return rule


def _integer(low: int) -> Rule:
    return lambda value: None if isinstance(value, int) and not isinstance(value, bool) and value >= low \
        else f"an integer >= {low}"


def _choice(*choices: str) -> Rule:
    return lambda value: None if value in choices else f"one of {list(choices)}"


def _optional(rule: Rule) -> Rule:
    return lambda value: None if value is None else rule(value)


def _sizes(value: Any) -> str | None:
    good = isinstance(value, list | tuple) and value and all(_integer(1)(size) is None for size in value)
    return None if good else "a non-empty list of integers >= 1"


def _flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "True or False"


_DISTANCES = ("cosine", "euclidean", "manhattan", "dot_product")
OPTION_RULES: dict[str, Rule] = {
    "dropout": _number(0, 1, high_open=True), "skip_dropout": _number(0, 1, high_open=True),
    "n_layers": _integer(1), "output_size": _optional(_integer(1)), "output_sizes": _optional(_sizes),
    "expansion_factor": _number(0, low_open=True), "activation_fn": lambda v: None if isinstance(v, str) and v
    else "a name of a torch.nn.functional function", "margin": _number(0), "mining": _choice("all", "hard"),
    "distance_metric_name": _choice(*_DISTANCES), "soft": _flag, "symmetric": _flag, "mask_same_group": _flag,
    "temperature": _number(0, low_open=True), "scale": _number(0, low_open=True),
    "scale_factor": _number(0, low_open=True), "num_bins": _integer(1),
}
"""How each head and loss option is checked when a config is built (by option name)."""

COMPONENT_RULES: dict[tuple[str, str], Rule] = {
    ("triplet", "mining"): _choice("all", "hard", "semi_hard"),
    ("arcface", "margin"): _number(0, math.pi, high_open=True),  # an angle in radians
}
"""Rules of one component's option that differ from `OPTION_RULES`."""


def option_problem(component: str, option: str, value: Any) -> str | None:
    """What ``option`` of ``component`` expects when ``value`` is invalid, else ``None``."""
    rule = COMPONENT_RULES.get((component, option)) or OPTION_RULES.get(option)
    return rule(value) if rule is not None else None


def _same(value: Any, default: Any) -> bool:
    """Whether an option value equals its default (``1`` and ``1.0`` do; ``True`` and ``1`` do not)."""
    if isinstance(value, bool) or isinstance(default, bool):
        return value is default
    if isinstance(value, int | float) and isinstance(default, int | float):
        return value == default
    if isinstance(value, str) and isinstance(default, str):  # also str enums such as quaterion's Distance
        return value == default
    return value is None and default is None


def _component(kind: str) -> Callable[..., Component]:
    """The ``make_entry`` of a component family: a `Component` of ``kind`` from a registration."""

    def make(name: str, builder: Callable[..., Any], *, description: str, example: str,
             options: Mapping[str, Any] | None = None, needs_num_groups: bool = False,
             takes_weights: bool = False) -> Component:
        return Component(kind, name, description, dict(options or {}), builder, needs_num_groups, takes_weights,
                         example)

    return make


def _options_text(component: Component) -> str:
    """The options and their defaults, for the docs tables (``–`` for none)."""
    return ", ".join(f"`{name}={value!r}`" for name, value in component.options.items()) or "–"


class ComponentRegistry(Registry[Component]):
    """A `refinery_quaterion.registry.Registry` of components, which knows the weighted losses."""

    def weighted(self) -> list[str]:
        """Names of the entries that take per-record weights (``takes_weights``), in order."""
        return [name for name, component in self.items() if component.takes_weights]


HEADS = ComponentRegistry("head", "heads", _component("head"), default="skip_connection",
                           usage='ModelConfig(head="{name}")', details=("Options", _options_text))
"""Heads by name (quaterion ``EncoderHead`` s); ``skip_connection`` is the default."""

LOSSES = ComponentRegistry("loss", "losses", _component("loss"), default="arcface",
                           usage='ModelConfig(loss="{name}")', details=("Options", _options_text))
"""Similarity losses by name (quaterion losses); ``arcface`` is the default.

``softmax`` and ``arcface`` need ``num_groups``. ``multiple_negatives_ranking`` is a pair loss:
``fit`` turns the labeled records into positive pairs (two records of the same label).
``softmax``, ``arcface`` and ``multiple_negatives_ranking`` take per-record weights
(``FitConfig(sample_weighting="confidence")``); see `refinery_quaterion.model._losses`.
"""

OPTIMIZERS = ComponentRegistry("optimizer", "optimizers", _component("optimizer"), default="adam",
                           usage='ModelConfig(optimizer="{name}")', details=("Options", _options_text))
"""Optimizers by name (``torch.optim``); ``adam`` is the default."""


def _quaterion(module: str) -> Any:
    """Import a quaterion module with the compat shims applied first."""
    from refinery_quaterion import _compat  # noqa: F401

    return importlib.import_module(module)


def _check_activation(name: str) -> str:
    import torch.nn.functional as F

    if not hasattr(F, str(name)):
        raise ValueError(f"activation_fn {name!r} is not a function of torch.nn.functional "
                         "(e.g. 'relu', 'gelu', 'tanh')")
    return name


# --------------------------------------------------------------------------------------
# Heads: builder(input_size, **options) -> EncoderHead
# --------------------------------------------------------------------------------------


@HEADS.register("skip_connection", "Gated residual linear layer(s); starts as the identity, so it never hurts.",
                options={"dropout": 0.0, "skip_dropout": 0.0, "n_layers": 1})
def _skip_connection_head(input_size: int, **options: Any) -> Any:
    return _quaterion("quaterion_models.heads").SkipConnectionHead(input_size, **options)


@HEADS.register("linear", "One linear projection to output_size (None: the input size).",
                options={"output_size": None, "dropout": 0.0})
def _linear_head(input_size: int, output_size: int | None, dropout: float) -> Any:
    size = int(output_size) if output_size is not None else input_size
    return _quaterion("quaterion_models.heads").StackedProjectionHead(input_size, output_sizes=[size],
                                                                      dropout=dropout)


@HEADS.register("gated", "Per-dimension gates only (a learned re-weighting of the dimensions).",
                options={"dropout": 0.0})
def _gated_head(input_size: int, **options: Any) -> Any:
    return _quaterion("quaterion_models.heads").GatedHead(input_size, **options)


@HEADS.register("empty", "No head: the encoder's output as it is (only with a trainable encoder).",
                options={"dropout": 0.0})
def _empty_head(input_size: int, **options: Any) -> Any:
    return _quaterion("quaterion_models.heads").EmptyHead(input_size, **options)


@HEADS.register("widening", "MLP d -> expansion_factor*d -> d with an activation in between.",
                options={"expansion_factor": 4.0, "activation_fn": "relu", "dropout": 0.0})
def _widening_head(input_size: int, activation_fn: str, **options: Any) -> Any:
    return _quaterion("quaterion_models.heads").WideningHead(
        input_size, activation_fn=_check_activation(activation_fn), **options
    )


@HEADS.register("stacked", "Stack of linear layers of output_sizes (None: [d, d]) with activations between.",
                options={"output_sizes": None, "activation_fn": "relu", "dropout": 0.0})
def _stacked_head(input_size: int, output_sizes: list[int] | None, activation_fn: str, dropout: float) -> Any:
    sizes = [int(s) for s in (output_sizes if output_sizes is not None else [input_size, input_size])]
    if not sizes:
        raise ValueError("head 'stacked' needs at least one output size in output_sizes")
    return _quaterion("quaterion_models.heads").StackedProjectionHead(
        input_size, output_sizes=sizes, activation_fn=_check_activation(activation_fn), dropout=dropout
    )


# --------------------------------------------------------------------------------------
# Losses: builder(embedding_size, num_groups, **options) -> SimilarityLoss
# --------------------------------------------------------------------------------------


def _distance(name: Any) -> Any:
    """quaterion's ``Distance`` member for a name such as ``"cosine"``."""
    return _quaterion("quaterion.distances").Distance(name)


@LOSSES.register("triplet", "Triplet loss with in-batch mining (the original notebook's loss).",
                 options={"margin": 0.5, "mining": "hard", "distance_metric_name": "cosine", "soft": False})
def _triplet_loss(embedding_size: int, num_groups: int | None, distance_metric_name: str, **options: Any) -> Any:
    return _quaterion("quaterion.loss").TripletLoss(distance_metric_name=_distance(distance_metric_name), **options)


@LOSSES.register("online_contrastive", "Contrastive loss over the pairs of a batch, hard pairs mined online.",
                 options={"margin": 0.5, "mining": "hard", "distance_metric_name": "cosine"})
def _online_contrastive_loss(embedding_size: int, num_groups: int | None, distance_metric_name: str,
                             **options: Any) -> Any:
    return _quaterion("quaterion.loss").OnlineContrastiveLoss(distance_metric_name=_distance(distance_metric_name),
                                                             **options)


@LOSSES.register("softmax", "Softmax classification over the labels (needs num_groups).",
                 options={"temperature": 0.05}, needs_num_groups=True, takes_weights=True)
def _softmax_loss(embedding_size: int, num_groups: int | None, **options: Any) -> Any:
    losses = _quaterion("refinery_quaterion.model._losses")
    return losses.WeightedSoftmaxLoss(embedding_size=embedding_size, num_groups=int(num_groups or 0), **options)


@LOSSES.register("arcface", "Additive angular margin over the labels (needs num_groups).",
                 options={"scale": 64.0, "margin": 0.7}, needs_num_groups=True, takes_weights=True)
def _arcface_loss(embedding_size: int, num_groups: int | None, **options: Any) -> Any:
    # margin 0.7 (quaterion: 0.5) was chosen on the AG News validation split; see benchmarks/bench_quality.py.
    losses = _quaterion("refinery_quaterion.model._losses")
    return losses.WeightedArcFaceLoss(embedding_size=embedding_size, num_groups=int(num_groups or 0), **options)


@LOSSES.register("circle", "Circle loss: pairs re-weighted by how far each is from its optimum.",
                 options={"margin": 0.25, "scale_factor": 256, "distance_metric_name": "cosine"})
def _circle_loss(embedding_size: int, num_groups: int | None, distance_metric_name: str, **options: Any) -> Any:
    return _quaterion("quaterion.loss").CircleLoss(distance_metric_name=_distance(distance_metric_name), **options)


@LOSSES.register("fast_ap", "FastAP: a differentiable approximation of average precision.",
                 options={"num_bins": 10})
def _fast_ap_loss(embedding_size: int, num_groups: int | None, **options: Any) -> Any:
    return _quaterion("quaterion.loss").FastAPLoss(**options)


@LOSSES.register("multiple_negatives_ranking",
                 "Pair loss: other in-batch pairs are negatives (by default not those of the same label).",
                 options={"scale": 20.0, "distance_metric_name": "cosine", "symmetric": False, "mask_same_group": True},
                 takes_weights=True)
def _multiple_negatives_ranking_loss(embedding_size: int, num_groups: int | None, distance_metric_name: str,
                                     **options: Any) -> Any:
    from refinery_quaterion.model._losses import GroupAwareMNRLoss

    return GroupAwareMNRLoss(distance_metric_name=_distance(distance_metric_name), **options)


# --------------------------------------------------------------------------------------
# Optimizers: builder(param_groups, lr, weight_decay, **options) -> torch.optim.Optimizer
# --------------------------------------------------------------------------------------


@OPTIMIZERS.register("adam", "Adam (weight decay added to the gradient).")
def _adam(param_groups: list[dict[str, Any]], lr: float, weight_decay: float) -> Any:
    import torch

    return torch.optim.Adam(param_groups, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("adamw", "AdamW (decoupled weight decay).")
def _adamw(param_groups: list[dict[str, Any]], lr: float, weight_decay: float) -> Any:
    import torch

    return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay)
