"""MkDocs hook: the generated parts of the docs -- the command line reference and the registry tables.

Registered under ``hooks:`` in ``mkdocs.yml``. ``docs/cli.md`` holds a ``<!-- cli-reference -->``
marker; at build time it is replaced with `refinery_quaterion.cli._reference.reference_markdown`,
so the reference always lists the subcommands, options and defaults of the installed parser.
Any page may hold ``<!-- registry: NAME -->`` (NAME: ``heads``, ``losses``, ``optimizers``,
``backends``, ``metrics``, ``export-formats``, ``head-converters``, ``input-formats``); it is
replaced with that registry's table (`refinery_quaterion.cli._reference.family_markdown`), so
a registered entry is in the docs without editing them.
"""

from __future__ import annotations

import re
from typing import Any

MARKER = "<!-- cli-reference -->"
PAGE = "cli.md"
REGISTRY_MARKER = re.compile(r"<!-- registry: ([a-z-]+) -->")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    """Fill the registry tables of any page and the reference of ``cli.md``."""
    if REGISTRY_MARKER.search(markdown):
        markdown = registry_tables(markdown)
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"docs/{PAGE} lacks the marker {MARKER}; the command line reference goes there")
    from refinery_quaterion.cli._reference import reference_markdown

    return markdown.replace(MARKER, reference_markdown())


def registry_tables(markdown: str) -> str:
    """``markdown`` with each ``<!-- registry: NAME -->`` replaced by that registry's table.

    Raises:
        mkdocs.exceptions.PluginError: For an unknown NAME.
    """
    from refinery_quaterion.cli._reference import family_markdown

    def table(match: re.Match[str]) -> str:
        try:
            return family_markdown(match.group(1))
        except ValueError as err:
            from mkdocs.exceptions import PluginError

            raise PluginError(str(err)) from None

    return REGISTRY_MARKER.sub(table, markdown)


def on_files(files: Any, config: Any, **kwargs: Any) -> Any:
    """Keep the hook's own source (``docs/hooks/``) out of the built site."""
    for file in [f for f in files if f.src_uri.startswith("hooks/")]:
        files.remove(file)
    return files
