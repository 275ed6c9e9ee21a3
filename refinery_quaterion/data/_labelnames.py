"""Label names as refinery writes them: one clean name per cell, multi-label cells, case-only variants.

A label cell is cleaned once, when an export is read (`clean_label`): surrounding whitespace is
stripped, the name is put in Unicode NFC and invisible characters (zero-width spaces, joiners,
bidi marks) are removed, so ``"Business\\u200b"`` and an NFD ``"Café"`` name the same class as
``"Business"`` and ``"Café"``. Only a missing or empty cell means "no label": ``"None"``,
``"NA"`` or ``"null"`` are label names like any other. Names that differ only in case
(``"Sports"`` / ``"sports"``) stay separate classes, but `case_variants` finds them so that the
`refinery_quaterion.data.labels.LabelReport` can warn.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from refinery_quaterion._util import is_missing
from refinery_quaterion.data.text import strip_invisible

__all__ = ["case_variants", "clean_label", "clean_label_column", "describe_label_cells", "normalised_note"]


def clean_label(value: Any) -> str | None:
    """A label cell as a label name (NFC, invisible characters removed, stripped), or ``None`` when empty.

    Example:
        >>> clean_label(" Business\\u200b "), clean_label("None"), clean_label("")
        ('Business', 'None', None)
    """
    if is_missing(value):
        return None
    text = strip_invisible(str(value)).strip()
    return text or None


def clean_label_column(values: pd.Series) -> tuple[pd.Series, dict[str, str]]:
    """``values`` cleaned with `clean_label`, and the names that normalisation changed (raw -> clean).

    Surrounding whitespace alone does not count as a change; Unicode normalisation and removed
    invisible characters do, so that the export's notes can list them.
    """
    cleaned = values.map(clean_label)
    changed: dict[str, str] = {}
    for raw, clean in zip(values, cleaned):
        if isinstance(raw, str) and clean is not None and raw.strip() != clean:
            changed.setdefault(raw.strip(), clean)
    return cleaned, changed


def case_variants(labels: Iterable[str]) -> list[list[str]]:
    """Groups of label names that differ only in case, each sorted; the groups sorted by their first name.

    Example:
        >>> case_variants(["Sports", "World", "sports", "SPORTS"])
        [['SPORTS', 'Sports', 'sports']]
    """
    groups: dict[str, set[str]] = {}
    for label in labels:
        groups.setdefault(str(label).casefold(), set()).add(str(label))
    return sorted(sorted(names) for names in groups.values() if len(names) > 1)


def describe_label_cells(frame: pd.DataFrame, columns: Sequence[str], known: Iterable[str]) -> tuple[list[str], int]:
    """``(label names, multi-label records)`` of a task's label ``columns`` in ``frame``.

    A cell counts as multi-label when it contains ", " and every part is a label that also
    occurs alone somewhere in the columns (or is one of ``known``): a label name may itself
    contain ", ". Works on any column, empty ones included.
    """
    singles: set[str] = set(known)
    for column in columns:
        singles.update(v for v in frame[column].dropna().unique() if isinstance(v, str) and ", " not in v)
    multi: set[Any] = set()
    names = set(singles)
    for column in columns:
        for index, value in frame[column].items():
            if not isinstance(value, str) or ", " not in value:
                continue
            if all(part in singles for part in value.split(", ")):
                multi.add(index)
            else:
                names.add(value)
    return sorted(names), len(multi)


def normalised_note(task: str, changed: Mapping[str, str]) -> str:
    """The note on label names that Unicode normalisation or removed invisible characters changed."""
    shown = ", ".join(f"{raw!r} -> {clean!r}" for raw, clean in list(changed.items())[:5])
    more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
    return (f"task {task!r}: {len(changed)} label name(s) normalised (Unicode NFC, invisible characters "
            f"removed): {shown}{more}")
