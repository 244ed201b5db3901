"""griffe extension: the docstrings' Sphinx roles (``:class:`X```) become mkdocstrings cross-references.

``:role:`path``` renders as a link to ``path`` (resolved from the docstring's scope), showing
``path``, or only its last component with the ``~`` prefix. An unresolvable target is a
warning of mkdocs-autorefs, so ``mkdocs build --strict`` catches stale references.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([\w.]+)`")


def _crossref(match: re.Match[str]) -> str:
    short, path = match.groups()
    return f"[`{path.rsplit('.', 1)[-1] if short else path}`][{path}]"


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_crossref, obj.docstring.value)
