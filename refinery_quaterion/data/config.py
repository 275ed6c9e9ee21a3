"""Settings as data: what every stage's config shares (`StageConfig`) and how labels are prepared (`LabelConfig`).

Each stage of the flow is configured by one frozen dataclass: `LabelConfig` (here),
`refinery_quaterion.model.config.ModelConfig` and `refinery_quaterion.model.config.FitConfig`,
`refinery_quaterion.evaluate.config.EvalConfig` and `refinery_quaterion.search.config.IndexConfig`.
A config is validated once in ``__post_init__`` (every bad value raises one ``ValueError`` or
``TypeError`` naming the field and what was expected), changed with ``config.replace(...)``, and
written and read back by `StageConfig.to_dict` / `StageConfig.from_dict`.

This module imports no torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeVar

from refinery_quaterion._util import to_jsonable
from refinery_quaterion.data._tasklabels import check_threshold
from refinery_quaterion.data.text import TextSpec, TextTemplate
from refinery_quaterion.errors import SettingError

__all__ = ["DEFAULT_TEMPLATE", "HOLDOUTS", "MAX_SEED", "LabelConfig", "StageConfig", "is_int", "is_number"]

DEFAULT_TEMPLATE = "{text}"
"""The text template of `LabelConfig` by default: a record's ``text`` attribute."""

HOLDOUTS = ("manual",)
"""Values of `LabelConfig.holdout`: ``"manual"`` holds the manually labeled records out as the test set."""

MAX_SEED = 2**32 - 1
"""The largest split seed (scikit-learn's ``random_state`` takes 0 to 2**32 - 1)."""

_C = TypeVar("_C", bound="StageConfig")


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (``True``/``False`` are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Whether ``value`` is an integer or a float (``True``/``False`` are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


class StageConfig:
    """What every stage's config shares: keyword updates, JSON in and out."""

    _IGNORED: ClassVar[frozenset[str]] = frozenset()  # keys of saved files that are facts, not settings

    @classmethod
    def field_names(cls) -> list[str]:
        """The setting names, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    def replace(self: _C, **changes: Any) -> _C:
        """A copy with ``changes`` applied and validated again.

        Raises:
            TypeError: For a name that is not a setting (listing the valid ones).
            ValueError: For an invalid value.
        """
        return dataclasses.replace(self, **type(self)._checked_names(changes))  # type: ignore[type-var]

    @classmethod
    def _checked_names(cls, changes: Mapping[str, Any]) -> dict[str, Any]:
        names = cls.field_names()
        out = dict(changes)
        unknown = sorted(set(out) - set(names))
        if unknown:
            raise TypeError(f"unknown {cls.__name__} setting(s) {unknown}; valid settings: {names}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable dict."""
        return {name: to_jsonable(getattr(self, name)) for name in self.field_names()}

    @classmethod
    def from_dict(cls: type[_C], data: Mapping[str, Any]) -> _C:
        """Rebuild a config from `to_dict` output (unknown keys are refused, facts ignored).

        Raises:
            TypeError: If ``data`` is not a mapping or names an unknown setting.
            ValueError: For an invalid value.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__}.from_dict needs a mapping, got {type(data).__name__}")
        settings = {k: v for k, v in data.items() if k not in cls._IGNORED}
        return cls(**cls._checked_names(settings))


def check_val_size(val_size: Any) -> float | int:
    """``val_size`` if it is ``0``, a share ``0 < x < 1`` or a positive count; else a ``ValueError`` naming it."""
    valid = is_number(val_size) and (val_size == 0 or 0 < val_size < 1 or (val_size >= 1 and val_size == int(val_size)))
    if not valid:
        raise ValueError(f"val_size must be 0, a share between 0 and 1 or a count of records, got {val_size!r}")
    return int(val_size) if val_size >= 1 else val_size


@dataclasses.dataclass(frozen=True)
class LabelConfig(StageConfig):
    """How `refinery_quaterion.workflow.prepare_records` turns an export into labeled, split records.

    Attributes:
        task: Classification task name; ``None`` when the export has one task.
        min_confidence: Keep weak-supervision labels with a confidence above this (0..1);
            ``"auto"`` chooses it from the manual labels (see
            `refinery_quaterion.data.labels.combine_labels`); ``None`` takes `combine_labels`'
            default.
        template: Text template rendering a record as the text to embed, e.g.
            ``"{Title}. {Description}"`` (a format string, a callable ``record -> str`` or a
            `TextTemplate`; kept as its spec); checked against the columns, and records whose
            text is blank are dropped.
        val_size: Validation share (``0 < x < 1``) or number of records; ``0``: no validation
            records.
        stratify: Split by class (otherwise at random).
        holdout: ``"manual"``: hold the manually labeled records out as the test set (training
            then uses the weak-supervision labels only); ``None``: no test set.
        split_seed: Seed of the train/validation(/test) split only. Not the seed of the model
            and of training, which is `refinery_quaterion.model.config.ModelConfig.seed`.

    Raises:
        ValueError: For a threshold outside 0..1, a malformed template, an invalid
            ``val_size``, an unknown ``holdout`` or a ``split_seed`` that is not an integer from 0 to
            `MAX_SEED` (a `refinery_quaterion.errors.SettingError` when out of range).
        TypeError: For a ``task`` that is not a string, or a ``stratify`` that is not a bool.
    """

    task: str | None = None
    min_confidence: float | Literal["auto"] | None = None
    template: TextSpec = DEFAULT_TEMPLATE
    val_size: float | int = 0.25
    stratify: bool = True
    holdout: Literal["manual"] | None = None
    split_seed: int = 42

    def __post_init__(self) -> None:
        if self.task is not None and not isinstance(self.task, str):
            raise TypeError(f"task must be a task name or None, got {self.task!r}")
        if self.min_confidence is not None and self.min_confidence != "auto":
            object.__setattr__(self, "min_confidence", check_threshold(self.min_confidence))
        object.__setattr__(self, "template", TextTemplate.coerce(self.template).spec)
        object.__setattr__(self, "val_size", check_val_size(self.val_size))
        if not isinstance(self.stratify, bool):
            raise TypeError(f"stratify must be True or False, got {self.stratify!r}")
        if self.holdout is not None and self.holdout not in HOLDOUTS:
            raise ValueError(f"holdout must be one of {list(HOLDOUTS)} or None, got {self.holdout!r}")
        if not is_int(self.split_seed):
            raise ValueError(f"split_seed must be an integer, got {self.split_seed!r}")
        if not 0 <= self.split_seed <= MAX_SEED:
            raise SettingError(f"{{split_seed}}: the split seed must be an integer from 0 to {MAX_SEED}",
                               settings={"split_seed": self.split_seed})

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable dict (a callable ``template`` as its import path)."""
        out = super().to_dict()
        out["template"] = TextTemplate(self.template).to_config()
        return out
