"""How the command line reports errors: one line for a user error, a traceback only for a bug.

A user error (a missing or malformed file, a bad value, a stale index, a locked index folder,
an unreachable Qdrant server, a missing extra) is printed as one line, ``refinery-quaterion
COMMAND: error: MESSAGE``, with exit code 2. The library's messages name the file, column or
value; this module only puts them on one line and speaks in options (``--overwrite``, not
``overwrite=True``). An interrupt (Ctrl-C) exits with 130. Anything else is a bug: one line
saying so, exit code 1, and the traceback with ``--debug``.
"""

from __future__ import annotations

import re
import zlib

from refinery_quaterion.cli._common import CliError, one_line

EXIT_USER_ERROR = 2
"""Exit code of a user error (as argparse uses for a bad command line)."""

EXIT_BUG = 1
"""Exit code of an unexpected error (a bug)."""

EXIT_BROKEN_PIPE = 141
"""Exit code when stdout's reader went away (128 + SIGPIPE), e.g. ``refinery-quaterion ... | head``."""

EXIT_INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT), as shells report it."""

_API_SPELLINGS = (
    (re.compile(r"overwrite=True \(--overwrite\)"), "--overwrite"),
    (re.compile(r"overwrite=True"), "--overwrite"),
    (re.compile(r"if_stale='rebuild' to rebuild it \(CLI: --rebuild\)"), "--rebuild to rebuild it"),
    (re.compile(r"\bstratify=False\b"), "--no-stratify"),
    (re.compile(r"\bpass trainable_encoder=False\b"), "drop --trainable-encoder"),
    (re.compile(r"\bencoder_backend=(?=\S)"), "--backend "),
    (re.compile(r"\bencoder_backend\b"), "--backend"),
    (re.compile(r"\b([Ll]ower) min_confidence\b"), r"\1 --min-confidence"),
    (re.compile(r"\bor use train_val_split\b"), "or drop --holdout manual"),
)


def is_qdrant_error(err: BaseException) -> bool:
    """A ``qdrant_client`` HTTP error (connection refused, bad API key...), without importing qdrant."""
    return any(cls.__module__.startswith("qdrant_client") and cls.__name__ == "ApiException"
               for cls in type(err).__mro__)


def user_message(err: BaseException) -> str | None:
    """The one-line message of a user error, or ``None`` when ``err`` is a bug.

    User errors: `CliError`; ``ValueError`` and its subclasses (``RefineryFileError``,
    ``StaleIndexError``, ``ModelExportError``, invalid JSON); ``OSError`` (missing, existing or
    unreadable files); ``ImportError`` (a missing extra; the message names it); ``zlib.error``
    (corrupt compressed data); a ``KeyError`` whose message is a sentence (the library's, such
    as an unknown label; a bare key is a bug); and errors of the Qdrant client.
    """
    if isinstance(err, CliError | ValueError | ImportError | zlib.error):
        message = one_line(err)
    elif isinstance(err, OSError):
        filename = getattr(err, "filename", None)
        message = f"{filename}: {err.strerror}" if err.strerror and filename else one_line(err)
        if getattr(err, "filename2", None):
            message += f" ({err.filename2})"
    elif isinstance(err, KeyError) and err.args and isinstance(err.args[0], str) and " " in err.args[0].strip():
        message = one_line(err.args[0])
    elif is_qdrant_error(err):
        message = f"Qdrant request failed: {one_line(err) or type(err).__name__}"
    else:
        return None
    for pattern, replacement in _API_SPELLINGS:
        message = pattern.sub(replacement, message)
    return message or type(err).__name__


def interrupt_message(err: KeyboardInterrupt, note: str | None) -> str:
    """``interrupted [after N of M epochs][ while encoding the records][; note]`` for an interrupt.

    `refinery_quaterion.training.fit.TrainingInterrupted` carries ``epochs``, ``max_epochs`` and
    ``stage``; any other ``KeyboardInterrupt`` gives plain ``interrupted``.
    """
    message = "interrupted"
    epochs, max_epochs = getattr(err, "epochs", None), getattr(err, "max_epochs", None)
    if isinstance(epochs, int):
        total = f" of {max_epochs}" if isinstance(max_epochs, int) else ""
        plural = "s" if (max_epochs if isinstance(max_epochs, int) else epochs) != 1 else ""
        message += f" after {epochs}{total} epoch{plural}"
    stage = getattr(err, "stage", None)
    if stage == "encoding":
        message += " while encoding the records"
    elif stage == "setup":
        message += " before training started"
    return f"{message}; {note}" if note else message


def bug_message(err: BaseException) -> str:
    """The one line printed for an unexpected error without ``--debug``."""
    detail = one_line(err)
    return (f"internal error: {type(err).__name__}{': ' + detail if detail else ''} (this is a bug; run again with "
            "--debug for the traceback and report it)")
