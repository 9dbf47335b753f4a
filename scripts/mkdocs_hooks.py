"""mkdocs hooks (mkdocs.yml, ``hooks:``) for the documentation site.

The docstrings that docs/api.md renders cross-reference in Sphinx's style
(``:class:`Store```); Markdown shows the role's name as text before the code span. Drop
the role, keep the code span.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):(?=<code>)")


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub("", html)
