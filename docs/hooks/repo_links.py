"""mkdocs hook: relative links that mkdocs itself does not resolve, resolved and checked.

- The guides link to benchmark results as ``../benchmarks/results/...``: right on GitHub and in
  a clone, outside the site. On the site they become ``<repo_url>/blob/main/...``.
- The tutorial notebook links to the guides as ``cut-qp.md``, which mkdocs-jupyter leaves as
  is. On the site they become the guides' page URLs.

A target that does not exist is logged as a warning, so ``mkdocs build --strict`` fails.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.repo_links")
# ](target) or ](target#anchor) of a relative link (no scheme, not absolute, not an anchor only).
_MD_LINK = re.compile(r"\]\((?![a-z][a-z0-9+.-]*:|/|#)([^)\s#]+)(#[^)\s]*)?\)")
# href="page.md" or href="page.md#anchor" in rendered HTML.
_HTML_MD_LINK = re.compile(r'href="(?![a-z][a-z0-9+.-]*:|/|#)([^"#]+\.md)(#[^"]*)?"')


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    docs = Path(config.docs_dir).resolve()
    root = docs.parent
    base = f"{config.repo_url.rstrip('/')}/blob/main/"
    page_dir = (docs / page.file.src_uri).parent

    def rewrite(match: re.Match[str]) -> str:
        target = (page_dir / match[1]).resolve()
        if target.is_relative_to(docs):
            return match[0]  # mkdocs checks links inside docs/ itself
        if not target.is_relative_to(root) or not target.exists():
            log.warning("%s links to %s, which is not a file of the repository", page.file.src_uri, match[1])
            return match[0]
        return f"]({base}{target.relative_to(root).as_posix()}{match[2] or ''})"

    return _MD_LINK.sub(rewrite, markdown)


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    if not page.file.src_uri.endswith(".ipynb"):
        return html
    page_dir = Path(page.file.src_uri).parent

    def rewrite(match: re.Match[str]) -> str:
        target = files.get_file_from_path((page_dir / match[1]).as_posix())
        if target is None:
            log.warning("%s links to %s, which is not a page of the site", page.file.src_uri, match[1])
            return match[0]
        return f'href="{target.url_relative_to(page.file)}{match[2] or ""}"'

    return _HTML_MD_LINK.sub(rewrite, html)
