"""What the subcommands share: argument types, shared options, and reading their inputs.

Nothing here imports torch, Lightning or quaterion at import time (``--help`` must stay fast):
the library modules that do are imported inside the functions that need them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from refinery_quaterion.data.readers import READERS
from refinery_quaterion.model.backends import AUTO_BACKEND, BACKENDS
from refinery_quaterion.registry import Registry

PROG = "refinery-quaterion"
"""The program name used in usage lines and messages."""

DEFAULT_TEXT = "{text}"
"""Text template of ``prepare`` when ``--text`` is not given."""



def family_help(registry: Registry[Any]) -> str:
    """``name: description`` of each entry of a registry, for a ``--help`` text (``%`` escaped for argparse)."""
    return registry.help_text().replace("%", "%%")


def input_suffixes() -> str:
    """The registered input formats as ``.json/.jsonl/.csv/...`` (see `refinery_quaterion.data.readers.READERS`)."""
    return "/".join(READERS)


class CliError(Exception):
    """A user error: printed as one line naming the file, option or value; exit code 2."""


class LazyText:
    """A help default rendered only when the help is printed (so building the parser imports nothing heavy).

    Args:
        render: Returns the text.
    """

    def __init__(self, render: Callable[[], str]):
        self._render = render

    def __str__(self) -> str:
        return self._render()


# --------------------------------------------------------------------------------------
# argument types (argparse calls them; a ValueError/TypeError becomes "invalid ... value")
# --------------------------------------------------------------------------------------


def share_or_count(text: str) -> float | int:
    """``--val-size``: a share (0 < x < 1, e.g. ``0.25``), a number of records (e.g. ``200``), or 0 (none).

    Raises:
        argparse.ArgumentTypeError: For anything else.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share such as 0.25 or a number of records such as 200, "
                                         f"got {text!r}") from None
    if value.is_integer() and value >= 0:
        return int(value)
    if 0 < value < 1:
        return value
    raise argparse.ArgumentTypeError(f"expected a share between 0 and 1 or a whole number of records, got {text!r}")


def confidence_threshold(text: str) -> float | str:
    """``--min-confidence``: ``auto`` or a number between 0 and 1.

    Raises:
        argparse.ArgumentTypeError: For anything else.
    """
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number between 0 and 1, got {text!r}")
    return value


def floats(text: str, option: str) -> list[float]:
    """Comma-separated numbers of ``option``.

    Raises:
        CliError: If a value is not a number.
    """
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CliError(f"{option}: expected comma-separated numbers such as 0.5,0.7,0.9, got {text!r}") from None


def ints(text: str, option: str) -> list[int]:
    """Comma-separated whole numbers (each at least 1) of ``option``.

    Raises:
        CliError: If a value is not a whole number or below 1.
    """
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CliError(f"{option}: expected comma-separated whole numbers such as 1,10,100, got {text!r}") from None
    if not values or min(values) < 1:
        raise CliError(f"{option}: values must be >= 1, got {text!r}")
    return values


# --------------------------------------------------------------------------------------
# shared options
# --------------------------------------------------------------------------------------


def add_global_options(parser: argparse.ArgumentParser, *, in_subcommand: bool) -> None:
    """``--debug``, ``--quiet`` and ``-v``: accepted before and after the subcommand.

    In a subcommand their defaults are suppressed, so a value given before the subcommand is
    kept.
    """
    unset: dict[str, Any] = {"default": argparse.SUPPRESS} if in_subcommand else {}
    group = parser.add_argument_group("output options (also accepted before COMMAND)")
    group.add_argument("--quiet", "-q", action="store_true", help="print the results only: no progress bars, "
                       "no status lines", **unset)
    group.add_argument("--verbose", "-v", action="count", help="also show the logs of Lightning and the other "
                       "libraries", **({"default": 0} if not in_subcommand else unset))
    group.add_argument("--debug", action="store_true", help="show the traceback of an error", **unset)


def add_export_args(parser: argparse.ArgumentParser) -> None:
    """The refinery export to read, its task and password."""
    parser.add_argument("export", type=Path, help=f"refinery data: UI download ({input_suffixes()}, zipped or "
                        "compressed or not), SDK export JSON, or project snapshot (.json.zip)")
    parser.add_argument("--task", default=None, help="classification task name (default: the only task)")
    parser.add_argument("--password", default=None, help="password of a protected UI download zip")


def add_runtime_args(parser: argparse.ArgumentParser, *, backend: bool = True) -> None:
    """Options every model command shares: the embedding cache (and the encoder backend)."""
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="embedding cache folder (default: ~/.cache/refinery-quaterion/embeddings)")
    parser.add_argument("--no-cache", action="store_true", help="do not cache encoder outputs on disk")
    if backend:
        parser.add_argument("--backend", choices=[AUTO_BACKEND, *BACKENDS], default=None,
                            help=f"how the frozen encoder runs. {AUTO_BACKEND}: openvino where OpenVINO is installed, "
                            "else onnx; torch for a trainable encoder, on a CUDA GPU, or where onnx is missing; "
                            f"{family_help(BACKENDS)} (default: the model's setting; {AUTO_BACKEND} for a new model)")


def add_model_command(sub: Any, name: str, parents: list[argparse.ArgumentParser], *, help: str, description: str,
                      data: str | None = None) -> argparse.ArgumentParser:
    """Add the subcommand ``name`` whose first argument is ``MODEL_DIR``, a folder written by ``train``.

    Args:
        sub: The subparsers of the main parser.
        name: The subcommand.
        parents: Parsers whose options the subcommand shares (the output options).
        help: Its line in the main parser's list of commands.
        description: Its ``--help`` text.
        data: Help of a second positional argument ``DATA``, a records file (the formats it may
            have are appended); ``None``: no ``DATA``.

    Returns:
        The subcommand's parser, to add its own arguments to.
    """
    parser = sub.add_parser(name, parents=parents, help=help, description=description)
    parser.add_argument("model", type=Path, metavar="MODEL_DIR", help="folder written by `train`")
    if data is not None:
        parser.add_argument("data", type=Path, metavar="DATA",
                            help=f"{data} (.json/.jsonl/.csv, optionally compressed)")
    return parser


# --------------------------------------------------------------------------------------
# reading the parsed arguments
# --------------------------------------------------------------------------------------


def is_quiet(args: argparse.Namespace) -> bool:
    """Whether ``--quiet`` was given."""
    return bool(getattr(args, "quiet", False))


def progress(args: argparse.Namespace) -> bool:
    """Show progress bars (not with ``--quiet``)."""
    return not is_quiet(args)


def status(args: argparse.Namespace, message: str) -> None:
    """Print a status line to stderr (results go to stdout), unless ``--quiet``."""
    if not is_quiet(args):
        import sys

        print(message, file=sys.stderr)


def cache(args: argparse.Namespace) -> Any:
    """The ``embedding_cache`` argument the options ask for."""
    if args.no_cache:
        return None
    return args.cache_dir if args.cache_dir is not None else True


def refuse_existing(path: Path | None, overwrite: bool, option: str = "--out") -> None:
    """Fail before any work when an output exists and ``--overwrite`` was not given.

    Raises:
        CliError: Naming the path and ``--overwrite``.
    """
    if path is not None and os.path.lexists(path) and not overwrite:
        raise CliError(f"{path} already exists ({option}); pass --overwrite to replace it")


def writable_output_file(path: Path, option: str, *, overwrite: bool, suffixes: tuple[str, ...] = (".png",)) -> None:
    """Fail before any work when an output file cannot be written as asked, naming the user's path.

    Raises:
        CliError: If ``path`` has another suffix than ``suffixes``, is a folder, exists without
            ``--overwrite``, or its folder exists but is not writable.
    """
    if path.suffix.lower() not in suffixes:
        raise CliError(f"{option} {path}: expected a {' or '.join(suffixes)} file, got {path.suffix or 'no suffix'!r}")
    if path.is_dir():
        raise CliError(f"{option} {path} is a folder; expected a {' or '.join(suffixes)} file")
    if os.path.lexists(path) and not overwrite:
        raise CliError(f"{path} already exists ({option}); pass --overwrite to replace it")
    writable_output_folder(path, option)


def writable_output_folder(path: Path | None, option: str) -> None:
    """Fail before any work when the folder that would hold the output ``path`` is not writable.

    Raises:
        CliError: Naming the user's path and the read-only folder.
    """
    if path is None:
        return
    parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), Path("."))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CliError(f"{option} {path}: the folder {parent} is not writable")


def records_file(path: Path, what: str, hint: str = "") -> Path:
    """Check that ``path`` is a records file (not a folder, not missing) before loading anything.

    Args:
        path: The file given on the command line.
        what: What it is, e.g. ``"TEST"`` (the argument's name).
        hint: Names of files a folder may hold, suggested when ``path`` is a folder.

    Raises:
        CliError: If ``path`` is missing or a folder.
    """
    if path.is_dir():
        found = [name for name in hint.split(",") if name and (path / name).is_file()]
        suggestion = f", e.g. {path / found[0]}" if found else ""
        raise CliError(f"{what} {path} is a folder; expected a file of records (.json/.jsonl/.csv, optionally "
                       f"compressed){suggestion}")
    if not path.exists():
        raise CliError(f"{what} {path}: no such file")
    return path


def model_folder(path: Path) -> Path:
    """Check that ``path`` is a model folder before loading torch.

    Raises:
        CliError: If ``path`` is missing or a file.
    """
    if not path.exists():
        raise CliError(f"MODEL_DIR {path}: no such folder; train one with `{PROG} train PREPARED --out {path}`")
    if not path.is_dir():
        raise CliError(f"MODEL_DIR {path} is a file; expected the folder written by `{PROG} train`")
    return path


def load_model(args: argparse.Namespace) -> Any:
    """Load ``args.model`` with the cache and ``--backend`` options; errors name the folder.

    Raises:
        CliError: If the folder is missing, or its files cannot be read (corrupt weights or
            configuration).
    """
    import pickle
    import zlib

    from refinery_quaterion.training.model_files import load

    folder = model_folder(args.model)
    try:
        model = load(folder, embedding_cache=cache(args))
    except (OSError, ValueError) as err:
        raise CliError(mention(err, folder)) from err
    except (RuntimeError, EOFError, pickle.UnpicklingError, zlib.error) as err:  # torch/safetensors: corrupt file
        raise CliError(f"{folder}: cannot load the model, a file is damaged or incomplete ({one_line(err)}); "
                       "train or copy it again") from err
    backend = getattr(args, "backend", None)
    if backend is not None:
        model.encoder.backend = backend  # checked by the encoder (a ValueError naming the backend)
    return model


def one_line(err: BaseException | str) -> str:
    """The message of ``err`` on one line."""
    return " ".join(str(err).split())


def mention(err: BaseException, path: Path | str) -> str:
    """The message of ``err``, prefixed with ``path`` unless it names it already."""
    message = one_line(err)
    filename = getattr(err, "filename", None)
    if isinstance(err, OSError) and err.strerror and filename:
        message = f"{filename}: {err.strerror}"
    return message if str(path) in message else f"{path}: {message}"
