"""The built documentation site: it builds in strict mode and shows no literal Sphinx roles."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPHINX_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|data|mod|exc|obj|const|ref|doc):`")


def test_sphinx_role_pattern_finds_roles():
    assert SPHINX_ROLE.search("see :func:`fit` and") and SPHINX_ROLE.search(":py:class:`X`")
    assert not SPHINX_ROLE.search("see `fit` and [fit][refinery_quaterion.training.fit.fit]")


@pytest.mark.slow
def test_site_builds_strict_without_literal_sphinx_roles(tmp_path):
    pytest.importorskip("mkdocs")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    pages = list(site.rglob("*.html"))
    assert len(pages) > 20
    found = [(page.relative_to(site), m.group(0)) for page in pages
             for m in SPHINX_ROLE.finditer(page.read_text(encoding="utf-8"))]
    assert not found, f"literal Sphinx roles in the built site: {found[:10]}"
    cli = (site / "cli" / "index.html").read_text(encoding="utf-8")
    assert "--min-confidence" in cli and "export" in cli
