"""`LabelConfig` and `EvalConfig`: one frozen, validated config per stage, as `ModelConfig` and `FitConfig`."""

from __future__ import annotations

import json

import pytest

from refinery_quaterion import EvalConfig, LabelConfig, ProbeConfig
from refinery_quaterion.data.config import StageConfig
from refinery_quaterion.model.config import FitConfig, ModelConfig


def test_every_stage_config_is_a_stage_config() -> None:
    for config in (LabelConfig(), ModelConfig(), FitConfig(), EvalConfig(), ProbeConfig()):
        assert isinstance(config, StageConfig)
        with pytest.raises(AttributeError):
            config.__setattr__(config.field_names()[0], None)  # frozen


def test_label_config_defaults_round_trip_and_replace() -> None:
    config = LabelConfig()
    assert (config.template, config.val_size, config.stratify, config.holdout, config.split_seed) == (
        "{text}", 0.25, True, None, 42)
    changed = config.replace(task="Topic", min_confidence="auto", template="{Title}", holdout="manual", val_size=2.0)
    assert changed.val_size == 2 and isinstance(changed.val_size, int)
    assert LabelConfig.from_dict(json.loads(json.dumps(changed.to_dict()))) == changed
    with pytest.raises(TypeError, match=r"unknown LabelConfig setting\(s\) \['seed'\]"):
        config.replace(seed=1)  # the split seed is split_seed; the model's seed is ModelConfig.seed


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"min_confidence": 1.5}, ValueError, "min_confidence must be between 0 and 1"),
        ({"min_confidence": "high"}, ValueError, "min_confidence must be a number between 0 and 1"),
        ({"template": "{}"}, ValueError, "positional field"),
        ({"val_size": -1}, ValueError, "val_size must be 0, a share between 0 and 1 or a count"),
        ({"val_size": 2.5}, ValueError, "val_size must be 0, a share"),
        ({"holdout": "weak"}, ValueError, r"holdout must be one of \['manual'\] or None, got 'weak'"),
        ({"split_seed": "1"}, ValueError, "split_seed must be an integer"),
        ({"stratify": "yes"}, TypeError, "stratify must be True or False"),
        ({"task": 3}, TypeError, "task must be a task name or None"),
    ],
)
def test_bad_label_settings(settings: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        LabelConfig(**settings)


def test_eval_config_defaults_round_trip_and_the_probe() -> None:
    config = EvalConfig(ks=[10, 1, 10])
    assert config.ks == (1, 10) and config.label_column == "label" and config.probe == ProbeConfig()
    assert EvalConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert EvalConfig(probe={"C": 2}).probe == ProbeConfig(C=2.0)
    assert EvalConfig(ks=5).ks == (5,)


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"ks": []}, ValueError, "ks must be one or more positive integers"),
        ({"ks": [0, 5]}, ValueError, "ks must be one or more positive integers"),
        ({"label_column": ""}, ValueError, "label_column must be a column name"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive integer"),
        ({"compare_raw": 1}, TypeError, "compare_raw must be True or False"),
        ({"probe": (1, 2, 3, 4)}, TypeError, "probe must be a ProbeConfig or a mapping"),
        ({"probe": {"C": 0}}, ValueError, "C must be > 0"),
        ({"probe": {"max_iter": 0}}, ValueError, "max_iter must be an int >= 1"),
        ({"probe": {"solver": "x"}}, TypeError, r"unknown ProbeConfig setting\(s\) \['solver'\]"),
    ],
)
def test_bad_eval_settings(settings: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        EvalConfig(**settings)
