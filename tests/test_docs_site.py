"""The documentation site (mkdocs.yml, docs/) builds with ``mkdocs build --strict``: a
broken link, a missing anchor, a page left out of the navigation or an API reference to a
name that no longer exists fails the build, and so this test. And docs/api.md documents
the whole curated package face."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import passivepaxos
import passivepaxos.recipes

ROOT = Path(__file__).resolve().parent.parent


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # its banner is no finding
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    took = time.monotonic() - t0
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict exited {proc.returncode}:\n{output}"
    print(f"mkdocs build --strict: {took:.1f} s")
    # the pages are there, and the API reference was rendered from the docstrings
    assert (site / "index.html").is_file()
    assert (site / "log" / "index.html").is_file()
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for anchor in ("passivepaxos.Log", "passivepaxos.Log.append", "passivepaxos.open_store"):
        assert f'id="{anchor}"' in api, anchor
    assert (site / "search" / "search_index.json").is_file()


def test_api_page_covers_the_package_face() -> None:
    """Every name of ``passivepaxos.__all__`` (but ``__version__``), of
    ``passivepaxos.recipes.__all__`` and ``KeepAlive`` has its ``:::`` entry in docs/api.md
    (the build then proves each one resolves)."""
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: (\S+)\s*$", page, re.M))
    wanted = {f"passivepaxos.{n}" for n in passivepaxos.__all__ if n != "__version__"}
    missing = sorted(wanted - documented)
    assert not missing, f"docs/api.md lacks {missing}"
    for name in passivepaxos.recipes.__all__:
        assert {f"passivepaxos.{name}", f"passivepaxos.recipes.{name}"} & documented, name
    assert "passivepaxos.keepalive.KeepAlive" in documented
    assert len(re.findall(r"^::: ", page, re.M)) == len(documented), "an entry twice"
