"""How the command line reports errors: one line for a user error, a traceback only for a bug.

A user error (a missing or malformed file, a bad value, a stale index, a locked index folder,
an unreachable Qdrant server, a missing extra) is printed as one line, ``refinery-quaterion
COMMAND: error: MESSAGE``, with exit code 2. The library's messages name the file, column or
value. An error that names settings is a `refinery_quaterion.errors.SettingError`: it carries the
settings and the fixes as data, and `FlagSpeaker` spells them as the command's own flags
(``--overwrite``, not ``overwrite=True``), found by the setting's name among the command's
options. An interrupt (Ctrl-C) exits with 130. Anything else is a bug: one line saying so, exit
code 1, and the traceback with ``--debug``.
"""

from __future__ import annotations

import argparse
import zlib
from typing import Any

from refinery_quaterion.cli._common import CliError, one_line
from refinery_quaterion.errors import MISSING, Fix, SettingError, api_fix, api_setting

EXIT_USER_ERROR = 2
"""Exit code of a user error (as argparse uses for a bad command line)."""

EXIT_BUG = 1
"""Exit code of an unexpected error (a bug)."""

EXIT_BROKEN_PIPE = 141
"""Exit code when stdout's reader went away (128 + SIGPIPE), e.g. ``refinery-quaterion ... | head``."""

EXIT_INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT), as shells report it."""

SETTING_FLAGS: dict[str, str] = {"encoder_backend": "--backend", "template": "--text", "split_seed": "--seed",
                                 "report_dir": "--report"}
"""Library settings whose flag is not named after them (``--backend`` sets ``encoder_backend``, ``--text`` the
``template``, ``prepare --seed`` the ``split_seed``, ``evaluate --report`` the ``report_dir``)."""

FIX_PHRASES: dict[tuple[str, Any], str] = {("embedding_cache", None): "pass --no-cache",
                                           ("holdout", None): "leave out --holdout"}
"""Fixes the CLI says in its own words (no flag sets ``embedding_cache=None``; ``--no-cache`` does that)."""


class FlagSpeaker:
    """Spells library settings as the flags of one command (its argparse parser).

    A setting is found by the ``dest`` of the command's options (or `SETTING_FLAGS`); a setting
    the command has no flag for keeps the library's spelling.

    Args:
        parser: The command's parser (``None``: no flags known).
    """

    def __init__(self, parser: argparse.ArgumentParser | None):
        self.actions = {action.dest: action for action in (parser._actions if parser else []) if action.option_strings}

    def _action(self, setting: str) -> argparse.Action | None:
        flag = SETTING_FLAGS.get(setting)
        for action in self.actions.values():
            if flag in action.option_strings or (flag is None and action.dest == setting):
                return action
        return None

    def setting(self, name: str, value: Any) -> str:
        """``--min-weight 0.9`` for ``min_weight=0.9``; a switch alone (``--no-stratify`` for ``stratify=False``)."""
        negation = self.actions.get(f"no_{name}")
        if negation is not None and isinstance(value, bool) and negation.nargs == 0:
            return negation.option_strings[-1]
        action = self._action(name)
        if action is None:
            return api_setting(name, value)
        flag = _flag_for(action, value)
        if action.nargs == 0 or value is MISSING or isinstance(value, bool):
            return flag
        return f"{flag} {value}"

    def fix(self, fix: Fix) -> str:
        """``pass --overwrite``, ``leave out --trainable-encoder``, ``pass --backend torch``."""
        if (fix.setting, fix.value) in FIX_PHRASES:
            return FIX_PHRASES[fix.setting, fix.value]
        negation = self.actions.get(f"no_{fix.setting}")
        if negation is not None and isinstance(fix.value, bool) and negation.nargs == 0:
            return f"{'pass' if not fix.value else 'leave out'} {negation.option_strings[-1]}"
        action = self._action(fix.setting)
        if action is None:
            return api_fix(fix)
        if action.nargs == 0 and isinstance(fix.value, bool) and fix.value != _switch_sets(action):
            negative = [s for s in action.option_strings if s.startswith("--no-")]
            return f"pass {negative[0]}" if negative else f"leave out {action.option_strings[-1]}"
        return f"pass {self.setting(fix.setting, fix.value)}"


def _switch_sets(action: argparse.Action) -> Any:
    """The value a switch (``store_true``/``store_false``/``BooleanOptionalAction``) sets when given."""
    return getattr(action, "const", True) if not isinstance(action, argparse.BooleanOptionalAction) else True


def _flag_for(action: argparse.Action, value: Any) -> str:
    """The option string that gives ``value``: ``--no-stratify`` for False on a negatable switch."""
    longs = [s for s in action.option_strings if s.startswith("--")] or list(action.option_strings)
    if isinstance(value, bool) and action.nargs == 0:
        wanted = [s for s in longs if s.startswith("--no-") == (value != _switch_sets(action))]
        return (wanted or longs)[0]
    return next((s for s in longs if not s.startswith("--no-")), longs[0])


def is_qdrant_error(err: BaseException) -> bool:
    """A ``qdrant_client`` HTTP error (connection refused, bad API key...), without importing qdrant."""
    return any(cls.__module__.startswith("qdrant_client") and cls.__name__ == "ApiException"
               for cls in type(err).__mro__)


def user_message(err: BaseException, parser: argparse.ArgumentParser | None = None) -> str | None:
    """The one-line message of a user error, or ``None`` when ``err`` is a bug.

    User errors: `CliError`; ``ValueError`` and its subclasses (``RefineryFileError``,
    ``StaleIndexError``, ``ModelExportError``, invalid JSON); ``OSError`` (missing, existing or
    unreadable files); ``ImportError`` (a missing extra; the message names it); ``zlib.error``
    (corrupt compressed data); a ``KeyError`` whose message is a sentence (the library's, such
    as an unknown label; a bare key is a bug); and errors of the Qdrant client. A
    `refinery_quaterion.errors.SettingError` is spelled in the flags of ``parser`` (the command's).
    """
    if isinstance(err, SettingError):
        speaker = FlagSpeaker(parser)
        message = one_line(err.render(speaker.setting, speaker.fix))
    elif isinstance(err, CliError | ValueError | ImportError | zlib.error):
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
