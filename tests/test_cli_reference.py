"""The command line reference page is generated from the parser: every subcommand, option and default."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from refinery_quaterion.cli import build_parser
from refinery_quaterion.cli._reference import reference_markdown

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / "docs" / "hooks" / "cli_reference.py"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _section(markdown: str, command: str) -> str:
    start = markdown.index(f"## {command} {{#{command}}}")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:] if end == -1 else markdown[start:end]


def test_every_subcommand_option_and_default_is_on_the_page() -> None:
    parser = build_parser()
    markdown = reference_markdown(parser)
    commands = _subparsers(parser)
    assert {"prepare", "thresholds", "train", "evaluate", "search", "index", "export"} <= set(commands)
    for name, sub in commands.items():
        section = _section(markdown, name)
        assert f"refinery-quaterion {name} " in section  # the usage block
        for action in sub._actions:
            if action.dest in ("help", "quiet", "verbose", "debug"):
                continue
            for option in action.option_strings:
                assert f"`{option}" in section, (name, option)
            if not action.option_strings:
                assert f"`{action.metavar or action.dest}`" in section, (name, action.dest)
            default = action.default
            if default not in (None, False, argparse.SUPPRESS) and not isinstance(default, bool):
                assert f"`{default}`" in section, (name, action.dest, default)
    for option in ("--quiet", "--verbose", "--debug"):
        assert f"`{option}`" in markdown.split("## Commands")[0]


def test_defaults_named_in_the_help_fill_the_default_column() -> None:
    import inspect

    from refinery_quaterion.data.labels import combine_labels

    markdown = reference_markdown()
    prepare = _section(markdown, "prepare")
    assert "| `--task TASK` | the only task | classification task name |" in prepare
    library_default = inspect.signature(combine_labels).parameters["min_confidence"].default
    assert f"| `--min-confidence auto|X` | `{library_default}` | keep weak-supervision labels" in prepare
    assert "| `--seed SEED` | `42` | split seed |" in prepare
    from refinery_quaterion.evaluate import DEFAULT_KS

    assert f"| `--ks KS` | `{','.join(map(str, DEFAULT_KS))}` |" in _section(markdown, "evaluate")


def _hook():
    spec = importlib.util.spec_from_file_location("cli_reference_hook", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_hook_fills_the_cli_page() -> None:
    hook = _hook()
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert hook.MARKER in page
    cli_page = SimpleNamespace(file=SimpleNamespace(src_uri="cli.md"))
    built = hook.on_page_markdown(page, page=cli_page, config=None, files=None)
    assert hook.MARKER not in built and "## export {#export}" in built and "`--holdout {manual}`" in built
    other = SimpleNamespace(file=SimpleNamespace(src_uri="index.md"))
    assert hook.on_page_markdown(hook.MARKER, page=other, config=None, files=None) == hook.MARKER
    from mkdocs.exceptions import PluginError

    with pytest.raises(PluginError, match="lacks the marker"):
        hook.on_page_markdown("# CLI", page=cli_page, config=None, files=None)


def test_the_hook_is_registered_and_kept_out_of_the_site() -> None:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("", lambda loader, suffix, node: None)  # mkdocs' !!python tags
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)
    assert "docs/hooks/cli_reference.py" in config["hooks"]
    files = [SimpleNamespace(src_uri="hooks/cli_reference.py"), SimpleNamespace(src_uri="cli.md")]

    class Files(list):
        def remove(self, item) -> None:  # mkdocs' Files.remove
            super().remove(item)

    kept = _hook().on_files(Files(files), config=None)
    assert [f.src_uri for f in kept] == ["cli.md"]
