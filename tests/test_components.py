"""The head, loss and optimizer registries: complete, documented, buildable, torch-free at import."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from refinery_quaterion.model.components import HEADS, LOSSES, OPTIMIZERS, Component, ComponentRegistry

REGISTRIES = {"head": HEADS, "loss": LOSSES, "optimizer": OPTIMIZERS}
DOCS = Path(__file__).resolve().parents[1] / "docs"

# Declared defaults that differ from the quaterion class on purpose (or stand for "the input size").
OVERRIDES = {
    ("arcface", "margin"): 0.7,  # chosen on the AG News validation split
    ("linear", "output_size"): None,  # the input size
    ("stacked", "output_sizes"): None,  # [d, d]
}
QUATERION_CLASS = {
    "skip_connection": "quaterion_models.heads:SkipConnectionHead",
    "linear": "quaterion_models.heads:StackedProjectionHead",
    "gated": "quaterion_models.heads:GatedHead",
    "empty": "quaterion_models.heads:EmptyHead",
    "widening": "quaterion_models.heads:WideningHead",
    "stacked": "quaterion_models.heads:StackedProjectionHead",
    "triplet": "quaterion.loss:TripletLoss",
    "online_contrastive": "quaterion.loss:OnlineContrastiveLoss",
    "softmax": "refinery_quaterion.model._losses:WeightedSoftmaxLoss",
    "arcface": "refinery_quaterion.model._losses:WeightedArcFaceLoss",
    "circle": "quaterion.loss:CircleLoss",
    "fast_ap": "quaterion.loss:FastAPLoss",
    "multiple_negatives_ranking": "refinery_quaterion.model._losses:GroupAwareMNRLoss",
}


def _entries() -> list[tuple[str, Component]]:
    return [(kind, component) for kind, registry in REGISTRIES.items() for component in registry.values()]


@pytest.mark.parametrize(("kind", "component"), _entries(), ids=lambda v: getattr(v, "name", v))
def test_every_entry_is_complete(kind: str, component: Component) -> None:
    assert component.kind == kind and callable(component.builder)
    assert component.description and "\n" not in component.description and len(component.description) <= 100
    json.dumps(dict(component.options))  # defaults are JSON values, so saved configs can hold them
    # the builder takes every declared option, nothing else is required
    parameters = inspect.signature(component.builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    assert takes_any or set(component.options) <= set(parameters)


def test_defaults_are_quaterion_defaults_unless_overridden() -> None:
    for name, ref in QUATERION_CLASS.items():
        component = HEADS[name] if name in HEADS else LOSSES[name]
        module, _, cls = ref.partition(":")
        signature = inspect.signature(getattr(importlib.import_module(module), cls).__init__)
        for option, default in component.options.items():
            if (name, option) in OVERRIDES:
                assert default == OVERRIDES[(name, option)]
                continue
            theirs = signature.parameters[option].default
            assert getattr(theirs, "value", theirs) == default, (name, option)
    assert set(QUATERION_CLASS) == set(HEADS) | set(LOSSES)


@pytest.mark.parametrize("name", list(HEADS))
def test_each_head_builds_on_a_tiny_input(name: str) -> None:
    import torch

    head = HEADS[name].build(8)
    out = head(torch.randn(3, 8))
    assert out.shape == (3, head.output_size)
    assert HEADS["linear"].build(8, options={"output_size": 4}).output_size == 4
    assert HEADS["stacked"].build(8, options={"output_sizes": [6, 5]}).output_size == 5


@pytest.mark.parametrize("name", list(LOSSES))
def test_each_loss_builds_on_a_tiny_input(name: str) -> None:
    from quaterion.loss import GroupLoss, PairwiseLoss

    component = LOSSES[name]
    loss = component.build(8, 3 if component.needs_num_groups else None)
    assert isinstance(loss, GroupLoss | PairwiseLoss)
    assert component.needs_num_groups == (name in ("softmax", "arcface"))


@pytest.mark.parametrize("name", list(LOSSES))
def test_losses_that_take_weights_accept_them(name: str) -> None:
    component = LOSSES[name]
    loss = component.build(8, 3 if component.needs_num_groups else None)
    takes = "weights" in inspect.signature(loss.forward).parameters
    assert takes == component.takes_weights == (name in ("softmax", "arcface", "multiple_negatives_ranking"))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_each_optimizer_builds(name: str) -> None:
    import torch

    weights = torch.nn.Parameter(torch.zeros(2))
    optimizer = OPTIMIZERS[name].build([{"params": [weights], "lr": 0.1}], 0.1, 0.01)
    assert isinstance(optimizer, torch.optim.Optimizer)
    assert optimizer.param_groups[0]["weight_decay"] == 0.01


def test_defaults_and_order() -> None:
    assert (HEADS.default, LOSSES.default, OPTIMIZERS.default) == ("skip_connection", "arcface", "adam")
    assert list(HEADS)[:2] == ["skip_connection", "linear"] and list(LOSSES)[0] == "triplet"
    assert list(OPTIMIZERS) == ["adam", "adamw"]
    for registry in REGISTRIES.values():
        assert registry.default in registry
        text = registry.help_text()
        assert all(f"{name}" in text for name in registry) and f"{registry.default} (default)" in text


def test_lookup_and_options_are_checked() -> None:
    with pytest.raises(ValueError, match=r"unknown loss 'nope'; valid losses: \['triplet'"):
        LOSSES.lookup("nope")
    with pytest.raises(ValueError, match=r"head 'gated' does not take option\(s\) \['size'\]; valid head_options: "
                                         r"\['dropout'\]"):
        HEADS["gated"].resolve({"size": 3})
    with pytest.raises(TypeError, match="loss_options must be a dict"):
        LOSSES["triplet"].check_options([("margin", 1)])  # type: ignore[arg-type]
    assert LOSSES["triplet"].resolve({"margin": 0.2}) == {"margin": 0.2, "mining": "hard",
                                                          "distance_metric_name": "cosine", "soft": False}
    with pytest.raises(ValueError, match="activation_fn 'nope'"):
        HEADS["widening"].build(8, options={"activation_fn": "nope"})


def test_registering_a_new_entry_is_one_decorator() -> None:
    registry = ComponentRegistry("loss", "losses", LOSSES._make_entry, default="mine")

    @registry.register("mine", "My loss.", options={"margin": 0.5})
    def _build(embedding_size: int, num_groups: int | None, margin: float) -> tuple:
        return embedding_size, margin

    assert registry.lookup("mine").build(4, None, options={"margin": 0.1}) == (4, 0.1)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("mine", "Again.")
    with pytest.raises(ValueError, match="one-line description"):
        registry.register("other", " ")


def test_every_name_is_in_the_training_guide() -> None:
    from refinery_quaterion.cli._reference import family_markdown

    guide = (DOCS / "guides" / "training.md").read_text(encoding="utf-8")
    guide = guide.replace("<!-- registry: heads -->", family_markdown("heads"))
    guide = guide.replace("<!-- registry: losses -->", family_markdown("losses"))
    missing = [f"{kind} {name}" for kind, registry in (("head", HEADS), ("loss", LOSSES)) for name in registry
               if f'`"{name}"`' not in guide and f"`{name}`" not in guide]
    assert not missing, f"registry entries the training guide does not mention: {missing}"


def test_importing_the_registry_and_config_imports_no_torch() -> None:
    code = ("import sys, types\n"
            "import refinery_quaterion.model.components, refinery_quaterion.model.config\n"
            "print(','.join(m for m in ('torch', 'quaterion', 'quaterion_models', 'transformers') if m in sys.modules))")
    # the package __init__ may apply the quaterion shims; only these two modules are under test here
    stub = "import sys, types; sys.modules['refinery_quaterion._compat'] = types.ModuleType('_compat')\n"
    out = subprocess.run([sys.executable, "-c", stub + code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
