"""The public API is listed once: `_EXPORTS` in `refinery_quaterion/__init__.py`.

`__all__` is derived from it; the `TYPE_CHECKING` block is generated from it by `tools/public_api.py`.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import refinery_quaterion

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("public_api_tool", ROOT / "tools" / "public_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_all_is_derived_from_exports():
    names = {name for names in refinery_quaterion._EXPORTS.values() for name in names}
    assert set(refinery_quaterion.__all__) == names | {"__version__"}
    assert len(names) == sum(len(v) for v in refinery_quaterion._EXPORTS.values()), "a name is exported twice"


def test_type_checking_block_matches_exports():
    tool = _tool()
    source = (ROOT / "refinery_quaterion" / "__init__.py").read_text(encoding="utf-8")
    _, _, current = source.partition(tool.MARKER)
    expected = tool.block(tool.exports(source))
    assert tool.MARKER + current == expected, "run `python tools/public_api.py` to regenerate the block"


@pytest.mark.slow
def test_every_export_resolves_in_a_fresh_process():
    code = (
        "import refinery_quaterion as rq\n"
        "missing = [n for n in rq.__all__ if n != '__version__' and getattr(rq, n, None) is None]\n"
        "print(missing)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
