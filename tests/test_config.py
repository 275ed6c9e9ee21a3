"""ModelConfig and FitConfig: validated in one place, JSON round trips, format-1 sections, keyword updates."""

from __future__ import annotations

import json
import math
import re

import pytest

from refinery_quaterion.errors import SettingError
from refinery_quaterion.model.config import FitConfig, ModelConfig


def test_defaults_and_derived_settings() -> None:
    config = ModelConfig()
    assert (config.pretrained, config.head, config.loss, config.optimizer) == (
        "minilm", "skip_connection", "arcface", "adam")
    assert config.use_memory_cache and config.needs_num_groups
    assert config.resolved_loss_options() == {"scale": 64.0, "margin": 0.7}
    assert config.resolved_head_options() == {"dropout": 0.0, "skip_dropout": 0.0, "n_layers": 1}
    trainable = ModelConfig(trainable_encoder=True)
    assert not trainable.use_memory_cache
    assert not ModelConfig(memory_cache=False).use_memory_cache
    assert not ModelConfig(loss="triplet").needs_num_groups and not ModelConfig(num_groups=4).needs_num_groups
    assert FitConfig() == FitConfig(epochs="auto", batch_size=128, sample_weighting="auto", min_steps=600)
    assert ModelConfig().seed == 42 and "seed" not in FitConfig.field_names()  # one seed: the model's
    assert ModelConfig().encoder_backend == "auto"
    assert ModelConfig().calibration_size == 300


def test_to_dict_is_json_and_round_trips() -> None:
    config = ModelConfig(pretrained="minilm", template="{Title}. {Description}", head="linear",
                         head_options={"output_size": 16}, loss="triplet", loss_options={"mining": "all"}, lr=0.01,
                         num_groups=4, seed=7)
    data = json.loads(json.dumps(config.to_dict()))
    assert data["head_options"] == {"output_size": 16, "dropout": 0.0}  # every option spelled out
    assert data["loss_options"] == {"margin": 0.5, "mining": "all", "distance_metric_name": "cosine", "soft": False}
    assert data["template"] == "{Title}. {Description}" and data["memory_cache"] is None
    back = ModelConfig.from_dict({**data, "model_type": "bert", "raw_dim": 384, "dim": 16})  # facts are ignored
    assert back.to_dict() == data
    assert back.resolved_loss_options() == config.resolved_loss_options()
    fit = FitConfig(epochs=3, early_stopping=2, devices=(0, 1), accelerator="cpu", sample_weighting="confidence",
                    min_weight=0.3, progress="lines", verbose=True)
    assert fit.devices == [0, 1]
    assert FitConfig.from_dict(json.loads(json.dumps(fit.to_dict()))) == fit
    # folders saved before progress modes wrote progress as a bool
    assert FitConfig.from_dict({"epochs": 3, "progress": False}).progress == "off"


def test_settings_of_the_pre_0_2_format_are_refused() -> None:
    with pytest.raises(TypeError, match=r"unknown ModelConfig setting\(s\) \['cache'\]"):
        ModelConfig.from_dict({"pretrained": "/models/minilm", "cache": True})
    assert ModelConfig.from_dict({"pretrained": "x"}).encoder_backend == "torch"  # saved before backends
    assert ModelConfig.from_dict({"pretrained": "x"}).calibration_size == 300  # saved before the setting


def test_the_calibration_size_round_trips() -> None:
    config = ModelConfig(encoder_backend="openvino-int8", calibration_size=17)
    data = json.loads(json.dumps(config.to_dict()))
    assert data["calibration_size"] == 17 and ModelConfig.from_dict(data) == config


@pytest.mark.parametrize("size", [0, -1, "x", 2.5, True, None])
def test_a_calibration_size_must_be_a_positive_integer(size) -> None:
    with pytest.raises(SettingError, match=re.escape(f"calibration_size={size!r}: the int8 calibration size must "
                                                     "be a positive integer")):
        ModelConfig(calibration_size=size)


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"head": "sequential"}, ValueError, r"unknown head 'sequential'; valid heads: \['skip_connection'"),
        ({"loss": "contrastive"}, ValueError, r"unknown loss 'contrastive'; valid losses: \['triplet'"),
        ({"optimizer": "sgd"}, ValueError, r"unknown optimizer 'sgd'; valid optimizers: \['adam', 'adamw'\]"),
        ({"head_options": {"n_layer": 2}}, ValueError, r"does not take option\(s\) \['n_layer'\].*n_layers"),
        ({"head_options": [1]}, TypeError, "head_options must be a dict"),
        ({"pooling": "max"}, ValueError, r"pooling must be one of \['mean', 'cls'\], got 'max'"),
        ({"max_length": 1}, ValueError, "max_length must be an integer from 2 to 8192 .tokens per text., got 1"),
        ({"max_length": 1000000}, ValueError, "max_length must be an integer from 2 to 8192"),
        ({"lr": math.inf}, ValueError, "lr must be a finite number > 0 and <= 1, got inf"),
        ({"lr": math.nan}, ValueError, "lr must be a finite number > 0 and <= 1, got nan"),
        ({"lr": 1e30}, ValueError, "lr must be a finite number > 0 and <= 1, got 1e"),
        ({"weight_decay": math.inf}, ValueError, "weight_decay must be a finite number >= 0 and <= 1"),
        ({"loss_options": {"margin": "x"}}, ValueError,
         r"loss 'arcface': loss_options 'margin' must be a finite number >= 0 and < 3.14159, got 'x'"),
        ({"loss_options": {"scale": -5.0}}, ValueError,
         "loss 'arcface': loss_options 'scale' must be a finite number > 0, got -5.0"),
        ({"loss": "triplet", "loss_options": {"margin": math.nan}}, ValueError, "'margin' must be a finite number"),
        ({"loss": "softmax", "loss_options": {"temperature": 0}}, ValueError, "'temperature' must be a finite"),
        ({"head_options": {"dropout": 1.5}}, ValueError, r"head_options 'dropout' must be a finite number >= 0 and < 1"),
        ({"head_options": {"n_layers": 0}}, ValueError, "'n_layers' must be an integer >= 1"),
        ({"head": "stacked", "head_options": {"output_sizes": []}}, ValueError, "non-empty list of integers"),
        ({"lr": -1}, ValueError, "lr must be a finite number > 0 and <= 1, got -1"),
        ({"encoder_lr": "fast"}, ValueError, "encoder_lr must be a finite number > 0 and <= 1, got 'fast'"),
        ({"weight_decay": -0.1}, ValueError, "weight_decay must be a finite number >= 0"),
        ({"num_groups": 1}, ValueError, "num_groups must be an integer >= 2"),
        ({"memory_cache": True, "trainable_encoder": True}, ValueError, "memory_cache=True needs a frozen encoder"),
        ({"head": "empty"}, ValueError, "nothing to train"),
        ({"val_precision_k": 0}, ValueError, "val_precision_k must be a positive integer or None"),
        ({"encoder_batch_size": 0}, ValueError, "encoder_batch_size must be a positive integer"),
        ({"template": "{}"}, ValueError, "positional field"),
        ({"seed": None}, ValueError, "seed must be an integer, got None"),
        ({"pretrained": ""}, TypeError, "pretrained must be a model name or folder"),
        ({"trainable_encoder": "yes"}, TypeError, "trainable_encoder must be True or False"),
    ],
)
def test_bad_model_settings(settings: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        ModelConfig(**settings)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epochs": 0}, "epochs must be a positive integer or 'auto', got 0"),
        ({"epochs": "10"}, "epochs must be a positive integer or 'auto', got '10'"),
        ({"min_steps": -1}, "min_steps must be an integer >= 0 .0: 10 epochs when epochs='auto'., got -1"),
        ({"min_steps": 1.5}, "min_steps must be an integer >= 0"),
        ({"batch_size": 1}, "batch_size must be an integer >= 2, got 1"),
        ({"early_stopping": 0}, "early_stopping must be a positive number of epochs or None, got 0"),
        ({"monitor": ""}, "monitor must be 'auto', 'loss', 'precision' or a logged metric name"),
        ({"devices": 0}, "devices must be a positive count"),
        ({"num_workers": -1}, "num_workers must be an integer >= 0"),
        ({"sample_weighting": "soft"}, r"sample_weighting must be one of \['auto', 'none', 'confidence'\], got 'soft'"),
        ({"min_weight": 1.5}, "min_weight must be a number from 0 to 1 .a confidence floor., got 1.5"),
        ({"min_weight": float("nan")}, "min_weight must be a number from 0 to 1"),
        ({"progress": "loud"}, r"progress must be one of \['auto', 'bar', 'lines', 'off'\]"),
        ({"accelerator": "tpu"}, r"accelerator must be one of \['auto', 'cpu', 'gpu', 'cuda', 'mps'\], got 'tpu'"),
    ],
)
def test_bad_fit_settings(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FitConfig(**settings)


def test_replace_validates_and_names_unknown_settings() -> None:
    config = ModelConfig(loss="arcface", loss_options={"margin": 0.5})
    assert config.replace(lr=0.5).lr == 0.5 and config.lr == 1e-3  # frozen: a new object
    with pytest.raises(ValueError, match=r"loss 'triplet' does not take option\(s\) \['margin'\]|scale"):
        config.replace(loss="triplet", loss_options={"scale": 1.0})
    with pytest.raises(TypeError, match=r"unknown ModelConfig setting\(s\) \['epochs'\]; valid settings: "):
        config.replace(epochs=3)
    with pytest.raises(TypeError, match=r"unknown FitConfig setting\(s\) \['lr'\]"):
        FitConfig().replace(lr=3)
    with pytest.raises(TypeError, match="unknown ModelConfig setting"):
        ModelConfig.from_dict({"pretrained": "x", "colour": "red"})
    with pytest.raises(TypeError, match=r"unknown ModelConfig setting\(s\) \['cache'\]"):
        config.replace(cache=False)


def test_a_callable_template_is_kept_in_memory_and_written_as_none() -> None:
    config = ModelConfig(template=str.upper)
    assert config.template is str.upper and config.to_dict()["template"] is None


def test_every_registered_default_option_passes_its_own_rule() -> None:
    from refinery_quaterion.model.components import HEADS, LOSSES, option_problem

    for registry in (HEADS, LOSSES):
        for name, component in registry.items():
            for option, default in component.options.items():
                assert option_problem(name, option, default) is None, (name, option, default)
