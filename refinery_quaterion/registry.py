"""One registry type for every family of plug-ins: heads, losses, optimizers, metrics, export
formats, encoder backends, head converters and input readers.

A `Registry` maps names to entries in registration order. Each entry documents itself -- a
one-line description and a usage example, as sentence-transformers' losses do -- so the command
line (`Registry.choices`, `Registry.help_text`) and the docs (`markdown_table`) read the names
from the registry instead of keeping copies. Registering is one decorator on one function::

    @LOSSES.register("my_loss", "One line saying what it does.", options={"margin": 0.5})
    def _my_loss(embedding_size, num_groups, **options): ...

Each family decides what an entry holds (its ``make_entry``); the registry only needs the
entry's ``name``, ``description`` and ``example``. Importing this module imports nothing but the
standard library, so reading a registry never imports torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Registry", "RegistryEntry", "markdown_table"]


class RegistryEntry(Protocol):
    """What a registry needs of its entries (each family's entry type has these attributes)."""

    @property
    def name(self) -> str:
        """The name the entry is chosen by."""
        ...

    @property
    def description(self) -> str:
        """One line: what it is and when to pick it."""
        ...

    @property
    def example(self) -> str:
        """A usage example (one line of Python or command line)."""
        ...


T = TypeVar("T", bound=RegistryEntry)


class Registry(Mapping[str, T], Generic[T]):
    """Entries of one family by name, in registration order.

    Args:
        kind: The family's singular for messages (``"head"``, ``"export format"``).
        plural: Its plural for messages (``"heads"``).
        make_entry: ``make_entry(name, value, description=..., example=..., **fields)`` builds
            the family's entry from what `register` gets.
        default: The name used when none is given, if the family has one.
        usage: How the example reads when a registration gives none: a format string with
            ``{name}`` (e.g. ``'head="{name}"'``).
        details: Optional third table column ``(title, entry -> text)``, e.g. the options.

    Attributes:
        kind: As given.
        plural: As given.
        default: As given.
    """

    def __init__(
        self,
        kind: str,
        plural: str,
        make_entry: Callable[..., T],
        *,
        default: str | None = None,
        usage: str = "{name}",
        details: tuple[str, Callable[[T], str]] | None = None,
    ) -> None:
        self.kind = kind
        self.plural = plural
        self.default = default
        self._make_entry = make_entry
        self._usage = usage
        self._details = details
        self._entries: dict[str, T] = {}

    def register(
        self, name: str, description: str, *, example: str = "", replace: bool = False, **fields: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register the decorated function (or class) under ``name``.

        Args:
            name: The name users pass.
            description: One line: what it is and when to pick it.
            example: A usage example (default: the family's ``usage`` with this name).
            replace: Allow replacing an entry of the same name.
            **fields: The family's further entry fields (see its ``make_entry``).

        Raises:
            ValueError: If ``name`` is taken (without ``replace``) or the description is empty.
        """
        self._check_new(name, description, replace)

        def decorate(value: Callable[..., Any]) -> Callable[..., Any]:
            self.add(self._make_entry(name, value, description=description.strip(),
                                      example=example or self._usage.format(name=name), **fields), replace=replace)
            return value

        return decorate

    def add(self, entry: T, *, replace: bool = False) -> T:
        """Register a ready-made entry under its name (what `register` does in the end).

        Raises:
            ValueError: As `register`.
        """
        self._check_new(entry.name, entry.description, replace)
        self._entries[entry.name] = entry
        return entry

    def _check_new(self, name: str, description: str, replace: bool) -> None:
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered; pass replace=True to replace it")
        if not isinstance(description, str) or not description.strip():
            raise ValueError(f"{self.kind} {name!r} needs a one-line description; got {description!r}")

    def unregister(self, name: str) -> T:
        """Remove the entry ``name`` and return it (for tests and plug-ins that withdraw).

        Raises:
            ValueError: For an unknown name, as `lookup`.
        """
        entry = self.lookup(name)
        del self._entries[name]
        return entry

    @contextlib.contextmanager
    def restoring(self) -> Iterator[Registry[T]]:
        """Context manager: whatever is registered or removed inside is undone on exit (for tests)."""
        saved = dict(self._entries)
        try:
            yield self
        finally:
            self._entries.clear()
            self._entries.update(saved)

    def lookup(self, name: Any) -> T:
        """The entry called ``name``.

        Raises:
            ValueError: For an unknown name, listing the valid ones.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}; valid {self.plural}: {list(self._entries)}") from None

    def check(self, name: Any) -> str:
        """Return ``name`` if it is registered.

        Raises:
            ValueError: For an unknown name, listing the valid ones (as `lookup`).
        """
        return self.lookup(name).name

    @property
    def choices(self) -> list[str]:
        """The names, in registration order (an argparse ``choices=``)."""
        return list(self._entries)

    def help_text(self) -> str:
        """``name: description`` of each entry, the default marked (for ``--help``)."""
        return "; ".join(f"{entry.name}{' (default)' if entry.name == self.default else ''}: "
                         f"{entry.description.rstrip('.')}" for entry in self._entries.values())

    def table_rows(self) -> tuple[list[str], list[list[str]]]:
        """The header and rows of the family's table: name, description, example (and details)."""
        header = [self.kind.capitalize(), "Description", "Example"]
        if self._details is not None:
            header.append(self._details[0])
        rows = []
        for entry in self._entries.values():
            name = f"`{entry.name}`" + (" (default)" if entry.name == self.default else "")
            row = [name, entry.description, f"`{entry.example}`" if entry.example else ""]
            if self._details is not None:
                row.append(self._details[1](entry))
            rows.append(row)
        return header, rows

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"


def markdown_table(registry: Registry[Any]) -> str:
    """The family as a Markdown table (name, description, example and the family's details column).

    Args:
        registry: The family.

    Returns:
        The table, one row per entry in registration order, ending with a newline.
    """
    header, rows = registry.table_rows()
    lines = [_row(header), _row(["---"] * len(header))]
    lines += [_row(row) for row in rows]
    return "\n".join(lines) + "\n"


def _row(cells: list[str]) -> str:
    """One Markdown table row (line breaks in a cell become spaces)."""
    return "| " + " | ".join(_cell(" ".join(cell.split())) for cell in cells) + " |"


def _cell(text: str) -> str:
    """``|`` and ``<`` escaped outside code spans (inside them the table parser skips them)."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # even parts are outside backticks
        parts[i] = parts[i].replace("|", "\\|").replace("<", "&lt;")
    return "`".join(parts)
