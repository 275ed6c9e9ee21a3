"""MkDocs hook: fill ``docs/cli.md`` with the command line reference generated from the argparse parser.

Registered under ``hooks:`` in ``mkdocs.yml``. The page holds a ``<!-- cli-reference -->``
marker; at build time it is replaced with `refinery_quaterion.cli._reference.reference_markdown`,
so the reference always lists the subcommands, options and defaults of the installed parser.
"""

from __future__ import annotations

from typing import Any

MARKER = "<!-- cli-reference -->"
PAGE = "cli.md"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    """Replace the marker of ``cli.md`` with the generated reference (other pages pass through)."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"docs/{PAGE} lacks the marker {MARKER}; the command line reference goes there")
    from refinery_quaterion.cli._reference import reference_markdown

    return markdown.replace(MARKER, reference_markdown())


def on_files(files: Any, config: Any, **kwargs: Any) -> Any:
    """Keep the hook's own source (``docs/hooks/``) out of the built site."""
    for file in [f for f in files if f.src_uri.startswith("hooks/")]:
        files.remove(file)
    return files
