"""Small helpers shared by several modules: missing values and JSON-safe values.

Kept free of torch and quaterion imports so that every module may use them.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import math
import os
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd


def is_missing(value: Any, *, empty_string: bool = False) -> bool:
    """Whether ``value`` is a missing value: ``None``, ``pd.NA``, ``pd.NaT`` or a float NaN.

    Args:
        value: Any scalar.
        empty_string: Also count ``""`` as missing.

    Returns:
        ``True`` for a missing value.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    if empty_string and isinstance(value, str):
        return value == ""
    return False


def to_jsonable(value: Any) -> Any:
    """``value`` as a JSON-serialisable Python object.

    Missing values and non-finite floats become ``None``; numpy scalars and arrays, decimals,
    dates, UUIDs, enums (their value), paths and bytes become their plain JSON counterparts;
    mappings and sequences are converted item by item; anything else becomes ``str(value)``.

    Args:
        value: Any object.

    Returns:
        An object made of ``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` and ``None``.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        return to_jsonable(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return to_jsonable(float(value))
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, _dt.timedelta | pd.Timedelta):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray | list | tuple | set | frozenset | pd.Series):
        return [to_jsonable(v) for v in value]
    return str(value)


def plain(value: Any) -> Any:
    """``value`` as a plain Python scalar when it is a numpy scalar, else unchanged.

    Error messages quote values with ``!r``; under numpy 2 a numpy scalar reads ``np.int64(12)``
    there, so messages pass values through this first.

    Args:
        value: Any object.

    Returns:
        ``value.item()`` for a numpy scalar, else ``value``.
    """
    return value.item() if isinstance(value, np.generic) else value


def fields_dict(obj: Any, *names: str, **renamed: str) -> dict[str, Any]:
    """The JSON form of a report: attributes of ``obj`` by name, each through `to_jsonable`.

    Args:
        obj: The report (any object with the attributes).
        *names: Attributes written under their own name, in order.
        **renamed: ``key="attribute"``: an attribute written under another key, after ``names``.

    Returns:
        ``{name: to_jsonable(getattr(obj, name)), ...}``.
    """
    pairs = [(name, name) for name in names] + list(renamed.items())
    return {key: to_jsonable(getattr(obj, attribute)) for key, attribute in pairs}
