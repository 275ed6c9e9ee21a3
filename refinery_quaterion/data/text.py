"""Turning a record into the text that gets embedded."""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Union

from refinery_quaterion._util import is_missing

__all__ = ["Record", "TextSpec", "TextTemplate", "comparable_text", "is_blank", "strip_invisible"]

Record = Mapping[str, Any]
"""A record: attribute name → value."""

TextSpec = Union[str, Callable[[Record], str], "TextTemplate"]
"""What a ``template=`` argument accepts: a format string, a callable ``record -> str``, or a `TextTemplate`."""


class TextTemplate:
    """Renders a record (a mapping of attribute name to value) as one string.

    A template is either a format string naming record fields, e.g.
    ``"{Title}. {Description}"``, or any callable ``record -> str``. Missing values
    (``None``/NaN) render as an empty string; a list-valued field (an ``EMBEDDING_LIST``
    attribute) is refused rather than rendered as ``"[...]"``.

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
            self._parts: list[tuple[str, str | None, str, str | None]] = [
                (literal, name, spec or "", conversion) for literal, name, spec, conversion in parsed
            ]
        elif callable(spec):
            self.fields = None
        else:
            raise TypeError(f"text must be a format string or a callable, got {type(spec).__name__}")

    @classmethod
    def coerce(cls, spec: TextSpec) -> TextTemplate:
        """Return ``spec`` as a ``TextTemplate`` (no copy if it already is one)."""
        return spec if isinstance(spec, TextTemplate) else cls(spec)

    def validate(self, columns: Iterable[str], *, source: str = "the data", label_column: str | None = None) -> None:
        """Check that every field of the template is one of ``columns``, and none is the label column.

        Every path that renders labeled records checks its template here (`combine_labels`,
        `train_val_split`, `split_by_source`, `RefineryExportDataset`, evaluation), passing
        the label column: a template that renders the label into the text leaks the answer
        into the embedding and inflates every metric, so it is refused.

        Args:
            columns: Available column / attribute names.
            source: How to name the data in the error message.
            label_column: The column holding the labels, which the template must not name.

        Raises:
            ValueError: Naming the label column the template uses, or the missing fields and
                the available columns.
        """
        if self.fields is None:
            return
        if label_column is not None and label_column in self.fields:
            raise ValueError(
                f"text template {self.spec!r} names the label column {label_column!r} of {source}: the label "
                f"would be part of the embedded text and inflate every metric; remove "
                f"'{{{label_column}}}' from the template"
            )
        available = list(columns)
        missing = [f for f in self.fields if f not in available]
        if missing:
            raise ValueError(
                f"text template {self.spec!r} uses {', '.join(map(repr, missing))}, "
                f"which {'is' if len(missing) == 1 else 'are'} not a column of {source}; "
                f"available columns: {', '.join(map(repr, available))}"
            )

    def __call__(self, record: Record | str) -> str:
        """Render ``record``; a plain string is returned unchanged (already a text).

        Raises:
            ValueError: If a field's value is a list, dict or array (e.g. an ``EMBEDDING_LIST``
                attribute), or cannot be formatted with the field's format spec (``{text:d}``
                on a string); the message names the template, the field and the value.
        """
        if isinstance(record, str):
            return record
        if self.fields is None:
            return str(self.spec(record))  # type: ignore[operator]
        out = []
        for literal, name, spec, conversion in self._parts:
            out.append(literal)
            if name is None:
                continue
            value = record.get(name)
            if isinstance(value, (list, tuple, dict, set)) or getattr(value, "ndim", 0):
                raise ValueError(
                    f"text template {self.spec!r}: field {name!r} holds a {type(value).__name__} "
                    f"({_short(value)}), not a text; use a text attribute or a callable template"
                )
            if is_missing(value):
                continue  # a missing value renders as "", whatever its format spec
            try:
                if conversion:
                    value = {"r": repr, "s": str, "a": ascii}[conversion](value)
                out.append(format(value, spec))
            except (ValueError, TypeError, KeyError) as err:
                raise ValueError(
                    f"text template {self.spec!r}: field {name!r} cannot format the value {_short(value)} "
                    f"with '{{{name}{'!' + conversion if conversion else ''}:{spec}}}' ({err}); "
                    f"use '{{{name}}}' instead"
                ) from None
        return "".join(out)

    def render_many(self, records: Iterable[Record | str]) -> list[str]:
        """Render each of ``records``.

        Raises:
            ValueError: As `__call__`, with the position of the record that failed.
        """
        out = []
        for row, record in enumerate(records):
            try:
                out.append(self(record))
            except ValueError as err:
                raise ValueError(f"row {row}: {err}") from None
        return out

    def to_config(self) -> str | None:
        """The template as a JSON-serialisable string, or ``None`` for a callable."""
        return self.spec if isinstance(self.spec, str) else None

    def __repr__(self) -> str:
        return f"TextTemplate({self.spec!r})"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Characters that render as nothing: zero-width spaces and joiners, bidi marks, the BOM, the
# soft hyphen (all Unicode category Cf), control characters (Cc), and the Hangul fillers and
# the combining grapheme joiner, which are letters or marks that show nothing.
_INVISIBLE_OTHERS = frozenset("\u034f\u115f\u1160\u3164\uffa0")


def _is_invisible(char: str) -> bool:
    """Whether ``char`` shows nothing and is not whitespace (a zero-width space, a bidi mark...)."""
    return char in _INVISIBLE_OTHERS or (not char.isspace() and unicodedata.category(char) in ("Cf", "Cc"))


def strip_invisible(text: str) -> str:
    """``text`` in Unicode NFC with invisible characters removed (zero-width spaces, joiners, bidi marks...).

    Whitespace is kept. Used for label names, so ``"Business\u200b"`` and an NFD ``"Café"``
    name the same class as ``"Business"`` and ``"Café"``.

    Example:
        >>> strip_invisible("Business\u200b")
        'Business'
    """
    text = unicodedata.normalize("NFC", text)
    if text.isascii() and text.isprintable():
        return text
    return "".join(char for char in text if not _is_invisible(char))


def comparable_text(text: str) -> str:
    """``text`` as duplicate checks compare it: NFC, no invisible characters, whitespace collapsed, case folded.

    Example:
        >>> comparable_text("  Hello\u200b   WORLD ") == comparable_text("hello world")
        True
    """
    return " ".join(strip_invisible(text).split()).casefold()


def is_blank(text: str | None) -> bool:
    """Whether a rendered text is missing, empty, or nothing but whitespace and invisible characters.

    Zero-width spaces, joiners, bidi marks, the BOM and control characters count as blank: the
    one rule every command uses to refuse or drop a record that renders to no text.
    """
    return text is None or is_missing(text) or not strip_invisible(str(text)).strip()
