"""Turning a record into the text that gets embedded."""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Union

Record = Mapping[str, Any]
TextSpec = Union[str, Callable[[Record], str], "TextTemplate"]


class TextTemplate:
    """Renders a record (a mapping of attribute name to value) as one string.

    A template is either a format string naming record fields, e.g.
    ``"{Title}. {Description}"``, or any callable ``record -> str``. Missing values
    (``None``/NaN) render as an empty string.

    Args:
        spec: Format string, callable, or another ``TextTemplate`` (returned as is by
            `coerce`).

    Raises:
        ValueError: If the format string is malformed or names no field.

    Example:
        >>> TextTemplate("{Title}. {Description}")({"Title": "A", "Description": "B"})
        'A. B'
    """

    def __init__(self, spec: str | Callable[[Record], str]):
        if isinstance(spec, TextTemplate):
            spec = spec.spec
        self.spec = spec
        if isinstance(spec, str):
            try:
                parsed = list(string.Formatter().parse(spec))
            except ValueError as err:
                raise ValueError(f"text template {spec!r} is not a valid format string: {err}") from err
            fields = []
            for _, name, _, _ in parsed:
                if name is None:
                    continue
                if name == "" or name.isdigit():
                    raise ValueError(
                        f"text template {spec!r} has a positional field '{{{name}}}'; "
                        "name a record column instead, e.g. '{Title}'"
                    )
                if name not in fields:
                    fields.append(name)
            if not fields:
                raise ValueError(
                    f"text template {spec!r} names no field; expected e.g. '{{Title}}. {{Description}}'"
                )
            self.fields: list[str] | None = fields
        elif callable(spec):
            self.fields = None
        else:
            raise TypeError(f"text must be a format string or a callable, got {type(spec).__name__}")

    @classmethod
    def coerce(cls, spec: TextSpec) -> TextTemplate:
        """Return ``spec`` as a ``TextTemplate`` (no copy if it already is one)."""
        return spec if isinstance(spec, TextTemplate) else cls(spec)

    def validate(self, columns: Iterable[str], *, source: str = "the data") -> None:
        """Check that every field of the template is one of ``columns``.

        Args:
            columns: Available column / attribute names.
            source: How to name the data in the error message.

        Raises:
            ValueError: Naming the missing fields and listing the available columns.
        """
        if self.fields is None:
            return
        available = list(columns)
        missing = [f for f in self.fields if f not in available]
        if missing:
            raise ValueError(
                f"text template {self.spec!r} uses {', '.join(map(repr, missing))}, "
                f"which {'is' if len(missing) == 1 else 'are'} not a column of {source}; "
                f"available columns: {', '.join(map(repr, available))}"
            )

    def __call__(self, record: Record | str) -> str:
        """Render ``record``; a plain string is returned unchanged (already a text)."""
        if isinstance(record, str):
            return record
        if self.fields is None:
            return str(self.spec(record))  # type: ignore[operator]
        values = {name: _clean(record.get(name)) for name in self.fields}
        return self.spec.format(**values)  # type: ignore[union-attr]

    def render_many(self, records: Iterable[Record | str]) -> list[str]:
        """Render each of ``records``."""
        return [self(r) for r in records]

    def to_config(self) -> str | None:
        """The template as a JSON-serialisable string, or ``None`` for a callable."""
        return self.spec if isinstance(self.spec, str) else None

    def __repr__(self) -> str:
        return f"TextTemplate({self.spec!r})"


def _clean(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN
        return ""
    return value
