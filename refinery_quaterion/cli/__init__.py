"""The ``refinery-quaterion`` command line (also ``python -m refinery_quaterion``).

Subcommands follow the data flow: ``thresholds`` (how the confidence threshold trades data
for quality), ``prepare`` (export → labeled train/val[/test] files), ``train``,
``evaluate``, ``search``, ``index`` (to a Qdrant server or folder) and ``export``
(sentence-transformers or ONNX). Every option is listed on the
[command line reference](../cli.md) page.

Errors: a user error (a missing or malformed file, a bad value, a stale index, an
unreachable server) prints one line naming the file, URL, column or value, and exits with
code 2; Ctrl-C exits with 130 and leaves no half-written output; anything else is a bug
(exit code 1; ``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from refinery_quaterion.cli import _data, _export, _model, _refinery, _search
from refinery_quaterion.cli._common import PROG, CliError, add_global_options, one_line
from refinery_quaterion.cli._errors import (
    EXIT_BROKEN_PIPE,
    EXIT_BUG,
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    bug_message,
    interrupt_message,
    user_message,
)

__all__ = ["EXIT_BUG", "EXIT_INTERRUPTED", "EXIT_USER_ERROR", "CliError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (also read by the docs build for the command line reference).

    Building it imports nothing heavy (no torch, Lightning or quaterion), so ``--help`` is fast.

    Returns:
        The parser; each subcommand's namespace has ``func`` (runs it) and ``on_interrupt``
        (what an interrupt leaves behind, for the message).
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Fine-tune text embeddings for similarity search from refinery labels (Quaterion).",
        epilog="Typical flow: thresholds → prepare → train → evaluate → search / index / export. "
        "`%(prog)s COMMAND --help` for details.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    add_global_options(parser, in_subcommand=False)
    shared = argparse.ArgumentParser(add_help=False)
    add_global_options(shared, in_subcommand=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (_data, _model, _search, _export, _refinery):
        module.add_commands(sub, [shared])
    return parser


def _version() -> str:
    from refinery_quaterion._version import __version__

    return __version__


@contextlib.contextmanager
def _output(args: argparse.Namespace) -> Iterator[None]:
    """Warnings as one ``COMMAND: warning: ...`` line each; ``-v`` turns on the libraries' INFO logs."""
    command = f"{PROG} {args.command}"

    def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        print(f"{command}: warning: {one_line(message)}", file=sys.stderr)

    previous = warnings.showwarning
    warnings.showwarning = show
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        yield
    finally:
        warnings.showwarning = previous


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, containers, schedulers) handled as Ctrl-C: the same message, cleanup and exit code."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser | None:
    """The parser of one subcommand (its options name the settings errors refer to)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(command)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        0 on success. Errors end the process through ``SystemExit``: code 2 for a user error
        (one line on stderr), 130 after Ctrl-C or SIGTERM, 1 for a bug.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet and args.verbose:
        parser.error("--quiet and --verbose contradict each other; pass one")
    command = f"{PROG} {args.command}"
    try:
        with _output(args), _terminate_as_interrupt():
            args.func(args)
            sys.stdout.flush()  # a reader gone away (`| head`) is found here, not silently at exit
    except BrokenPipeError:  # the reader of stdout went away (`... | head`): stop quietly, as other tools do
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        sys.exit(EXIT_BROKEN_PIPE)
    except KeyboardInterrupt as err:
        if args.debug:
            traceback.print_exc()
        note = args.on_interrupt(args) if getattr(args, "on_interrupt", None) else None
        parser.exit(EXIT_INTERRUPTED, f"{command}: {interrupt_message(err, note)}\n")
    except Exception as err:
        message = user_message(err, _command_parser(parser, args.command))
        if args.debug:
            traceback.print_exc()
        if message is None:
            parser.exit(EXIT_BUG, f"{command}: {bug_message(err)}\n")
        parser.exit(EXIT_USER_ERROR, f"{command}: error: {message}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
