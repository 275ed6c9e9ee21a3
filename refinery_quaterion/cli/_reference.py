"""The command line reference and the tables of the registries, as Markdown.

The docs build (``docs/hooks/cli_reference.py``) puts `reference_markdown` into ``docs/cli.md``,
so the page lists exactly the subcommands, options and defaults the installed parser has, and
`family_markdown` wherever a page says ``<!-- registry: NAME -->`` (NAME a key of `FAMILIES`),
so the tables of heads, losses, metrics, formats, ... list exactly what is registered.
"""

from __future__ import annotations

import argparse
import importlib
import re
from typing import Any

from refinery_quaterion.cli._common import PROG
from refinery_quaterion.registry import Registry, markdown_table

_SKIPPED_DESTS = {"help", "version"}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help(action: argparse.Action, prog: str) -> str:
    """The help text with ``%(default)s`` and friends expanded, as argparse shows it."""
    text = action.help or ""
    if "%" in text:
        params = dict(vars(action), prog=prog)
        params = {k: v for k, v in params.items() if v is not argparse.SUPPRESS}
        if params.get("choices") is not None:
            params["choices"] = ", ".join(map(str, params["choices"]))
        text = text % params
    return " ".join(text.split())


_DEFAULT_IN_HELP = re.compile(r"\s*\(default: ([^()]*(?:\([^()]*\)[^()]*)*)\)")


def _split_default(help_text: str) -> tuple[str, str | None]:
    """``(help without its "(default: X)", X)``; ``X`` is ``None`` when the help names no default."""
    match = _DEFAULT_IN_HELP.search(help_text)
    if match is None:
        return help_text, None
    return (help_text[: match.start()] + help_text[match.end():]).strip(), match.group(1).strip()


def _default(action: argparse.Action) -> str:
    if isinstance(action, argparse._StoreTrueAction | argparse._CountAction):
        return "off"
    default = action.default
    if default is None or default is argparse.SUPPRESS:
        return "–"
    if isinstance(default, list):
        return ", ".join(map(str, default)) or "–"
    return f"`{default}`"


def _name(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    value = ""
    if action.nargs != 0:
        metavar = action.metavar or (
            "{" + ",".join(map(str, action.choices)) + "}" if action.choices else action.dest.upper()
        )
        value = f" {metavar}"
    return ", ".join(f"`{option}{value}`" for option in action.option_strings)


def _cell(text: str) -> str:
    """Text for a table cell: ``|`` and ``<`` escaped outside code spans (inside, the table parser skips them)."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # even parts are outside backticks
        parts[i] = parts[i].replace("|", "\\|").replace("<", "&lt;")
    return "`".join(parts)


def _table(actions: list[argparse.Action], prog: str) -> list[str]:
    rows = ["| argument | default | description |", "|---|---|---|"]
    for action in actions:
        required = " (required)" if action.option_strings and action.required else ""
        text, named = _split_default(_help(action, prog))
        default = _default(action)
        if named is not None and default in ("–", "off"):
            default = named
        rows.append(f"| {_cell(_name(action))}{required} | {_cell(default)} | {_cell(text)} |")
    return rows


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=100)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return formatter.format_help().strip()


def _own_actions(parser: argparse.ArgumentParser, shared: set[str]) -> list[argparse.Action]:
    return [a for a in parser._actions if a.dest not in _SKIPPED_DESTS and a.dest not in shared
            and not isinstance(a, argparse._SubParsersAction)]


def reference_markdown(parser: argparse.ArgumentParser | None = None, *, heading_level: int = 2) -> str:
    """Markdown for every subcommand of ``parser``: description, usage, and a table of its arguments.

    Args:
        parser: The parser (default: `refinery_quaterion.cli.build_parser`'s).
        heading_level: Markdown level of the per-command headings.

    Returns:
        The Markdown text (global options first, then one section per subcommand).
    """
    if parser is None:
        from refinery_quaterion.cli import build_parser

        parser = build_parser()
    hashes = "#" * heading_level
    global_actions = _own_actions(parser, set())
    shared = {a.dest for a in global_actions}
    lines = [f"{hashes} Global options", "",
             f"Accepted before the command (`{PROG} --quiet train …`) and after it (`{PROG} train … --quiet`).",
             "", *_table(global_actions, parser.prog), ""]
    commands = _subcommands(parser)
    helps = {a.dest: a.help for action in parser._actions if isinstance(action, argparse._SubParsersAction)
             for a in action._choices_actions}
    lines += [f"{hashes} Commands", "", "| command | what it does |", "|---|---|"]
    lines += [f"| [`{name}`](#{name}) | {_cell(helps.get(name) or '')} |" for name in commands]
    lines.append("")
    for name, sub in commands.items():
        description = re.sub(r"\s+", " ", sub.description or helps.get(name) or "").strip()
        lines += [f"{hashes} {name} {{#{name}}}", "", description, "", "```text", _usage(sub), "```", ""]
        lines += [*_table(_own_actions(sub, shared), sub.prog), ""]
    return "\n".join(lines)


FAMILIES: dict[str, tuple[str, str]] = {
    "heads": ("refinery_quaterion.model.components", "HEADS"),
    "losses": ("refinery_quaterion.model.components", "LOSSES"),
    "optimizers": ("refinery_quaterion.model.components", "OPTIMIZERS"),
    "backends": ("refinery_quaterion.model.backends", "BACKENDS"),
    "metrics": ("refinery_quaterion.evaluate.registry", "METRICS"),
    "export-formats": ("refinery_quaterion.exporters.formats", "EXPORT_FORMATS"),
    "head-converters": ("refinery_quaterion.exporters.heads", "HEAD_CONVERTERS"),
    "input-formats": ("refinery_quaterion.data.readers", "READERS"),
}
"""The families the docs show, by marker name -> (module, registry); a module is imported when
its table is asked for (``head-converters`` imports torch)."""


def family(name: str) -> Registry[Any]:
    """The registry of the family ``name`` (a key of `FAMILIES`).

    Raises:
        ValueError: For an unknown family, listing the valid ones.
    """
    if name not in FAMILIES:
        raise ValueError(f"unknown registry {name!r}; valid registries: {list(FAMILIES)}")
    module, attribute = FAMILIES[name]
    return getattr(importlib.import_module(module), attribute)


def family_markdown(name: str) -> str:
    """The family ``name`` as a Markdown table (see `refinery_quaterion.registry.markdown_table`)."""
    return markdown_table(family(name))
