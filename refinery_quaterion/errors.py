"""Errors that say which setting is wrong and which setting fixes them, as data.

The library speaks in its own argument names (``overwrite=True``); a front end such as the
command line speaks in its own (``--overwrite``). So an error that names settings does not bake
them into its text: it carries a message template whose ``{name}`` fields are settings
(`SettingError.settings`) and the settings that fix it (`SettingError.fixes`, each a `Fix`).
``str(err)`` renders them the library's way; `SettingError.render` renders them any other way,
which is how the CLI maps errors to its flags by type, never by rewriting text.

Example:
    >>> err = OutputExistsError("/data/model")
    >>> str(err)
    '/data/model already exists; pass overwrite=True to replace it'
    >>> err.render(lambda setting, value: f"--{setting}", lambda fix: f"pass --{fix.setting}")
    '/data/model already exists; pass --overwrite to replace it'
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MISSING", "Fix", "OutputExistsError", "SettingError", "api_fix", "api_setting"]


class _Missing:
    """The value of a setting the user has to choose (``pass password=``)."""

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"  # pickled by name: one MISSING per process


MISSING: Any = _Missing()
"""A `Fix` value meaning "give this setting a value of your choice"."""


@dataclass(frozen=True)
class Fix:
    """A change of one setting that fixes an error.

    Attributes:
        setting: The argument or config field, as the library names it (``"overwrite"``).
        value: What to set it to, or `MISSING` when the user chooses the value.
        purpose: What the change does, appended to it (``"to replace it"``).
    """

    setting: str
    value: Any = MISSING
    purpose: str = ""


def api_setting(setting: str, value: Any) -> str:
    """A setting as the library's API spells it: ``min_weight=0.9`` (``password=`` for `MISSING`)."""
    return f"{setting}=" if value is MISSING else f"{setting}={value!r}"


def api_fix(fix: Fix) -> str:
    """A fix as the library's API spells it: ``pass overwrite=True``."""
    return f"pass {api_setting(fix.setting, fix.value)}"


class SettingError(ValueError):
    """A bad value or combination of settings, with the settings that fix it.

    Args:
        template: The problem, with a ``{name}`` field for each key of ``settings``.
        settings: Settings the problem names (name -> the value given).
        fixes: Settings that fix it; rendered after the problem, joined by "or".
        alternative: Another way out, in plain words, appended last (``"or use another path"``).

    Attributes:
        template, settings, fixes, alternative: As given.
    """

    def __init__(self, template: str, *, settings: Mapping[str, Any] | None = None, fixes: tuple[Fix, ...] = (),
                 alternative: str | None = None):
        self.template = template
        self.settings = dict(settings or {})
        self.fixes = tuple(fixes)
        self.alternative = alternative
        super().__init__(self.render(api_setting, api_fix))

    def render(self, setting: Callable[[str, Any], str], fix: Callable[[Fix], str]) -> str:
        """The message with settings and fixes spelled by ``setting(name, value)`` and ``fix(fix)``."""
        text = self.template.format(**{name: setting(name, value) for name, value in self.settings.items()})
        ways = [fix(f) + (f" {f.purpose}" if f.purpose else "") for f in self.fixes]
        if self.alternative:
            ways.append(self.alternative)
        return f"{text}; {' or '.join(ways)}" if ways else text

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self.template, self.settings, self.fixes, self.alternative)


class OutputExistsError(SettingError, FileExistsError):
    """An output path exists and replacing it was not asked for (``overwrite=True`` fixes it).

    Args:
        path: The output that exists.

    Attributes:
        path: As given.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        SettingError.__init__(self, f"{self.path} already exists", fixes=(Fix("overwrite", True, "to replace it"),))

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path,)


def _rebuild(cls: type[SettingError], template: str, settings: dict[str, Any], fixes: tuple[Fix, ...],
             alternative: str | None) -> SettingError:
    return cls(template, settings=settings, fixes=fixes, alternative=alternative)
