"""The package's layout (tools/check_architecture.py): stages, no circles, no imports back up the flow, sizes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def arch():
    spec = importlib.util.spec_from_file_location("check_architecture", ROOT / "tools" / "check_architecture.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_architecture"] = module
    spec.loader.exec_module(module)
    return module


def test_the_package_has_no_circles_no_backward_imports_and_no_long_modules_or_functions(arch) -> None:
    assert arch.problems() == []


def test_every_module_is_in_a_stage(arch) -> None:
    graph = arch.build_graph()
    stages = {arch.STAGES[s] for m in graph.files if (s := arch.stage_of(m)) is not None}
    assert stages == set(arch.STAGES)


def test_the_checker_finds_a_circle_a_backward_import_and_a_long_function(arch, tmp_path: Path) -> None:
    package = tmp_path / "refinery_quaterion"
    for folder in ("data", "model"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "data" / "a.py").write_text("from refinery_quaterion.model.b import x\n")
    (package / "model" / "b.py").write_text("def x():\n    from refinery_quaterion.model.c import y\n")
    body = "".join(f"    v{i} = {i}\n" for i in range(61))
    (package / "model" / "c.py").write_text(f'def y():\n    """Doc."""\n{body}\n    from refinery_quaterion.model import b\n')
    graph = arch.build_graph(package)
    found = arch.problems(graph)
    assert "import circle: refinery_quaterion.model.b <-> refinery_quaterion.model.c" in found
    assert any(line.startswith("backward import: refinery_quaterion.data.a (stage data) imports "
                               "refinery_quaterion.model.b") for line in found)
    assert [line for line in found if line.startswith("long function")] == [
        "long function: refinery_quaterion/model/c.py:1 y has 63 lines (max 60)"]
