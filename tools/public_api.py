"""Regenerate the `TYPE_CHECKING` import block of `refinery_quaterion/__init__.py` from `_EXPORTS`.

`_EXPORTS` is the one list of the public API; `__all__` is derived from it at import time and the
`TYPE_CHECKING` block (for type checkers and IDEs) is written by this script. `tests/test_public_api.py`
fails when the block and `_EXPORTS` disagree. Usage: `python tools/public_api.py`.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

INIT = Path(__file__).resolve().parents[1] / "refinery_quaterion" / "__init__.py"
MARKER = "if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs\n"


def exports(source: str) -> dict[str, tuple[str, ...]]:
    """The `_EXPORTS` mapping, read from the source without importing the package."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "_EXPORTS":
            return ast.literal_eval(node.value)
    raise SystemExit(f"{INIT}: no _EXPORTS assignment")


def block(mapping: dict[str, tuple[str, ...]]) -> str:
    """The `TYPE_CHECKING` block importing every exported name from its module."""
    lines = [MARKER]
    for module in sorted(mapping):
        names = sorted(mapping[module], key=lambda n: (not n.isupper(), not n[:1].isupper(), n))
        one = f"    from refinery_quaterion.{module} import {', '.join(names)}\n"
        if len(one) <= 121:
            lines.append(one)
        else:
            lines.append(f"    from refinery_quaterion.{module} import (\n")
            lines.extend(f"        {name},\n" for name in names)
            lines.append("    )\n")
    return "".join(lines)


def main() -> int:
    source = INIT.read_text(encoding="utf-8")
    head, sep, _ = source.partition(MARKER)
    if not sep:
        raise SystemExit(f"{INIT}: no TYPE_CHECKING block")
    new = head + block(exports(source))
    if new != source:
        INIT.write_text(new, encoding="utf-8")
        print(f"rewrote the TYPE_CHECKING block of {INIT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
