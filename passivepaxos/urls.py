"""Storage URLs and the scheme -> backend registry.

Backends ship in the same wheel as ``passivepaxos_backends`` (the repository's top-level
``backends/`` folder, renamed at build time so it never installs as a clashing top-level
``backends``). Each backend module exposes ``open_backend(url: StoreURL) -> Backend``; it is
imported lazily so that a missing optional SDK only matters to users of that scheme.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

from passivepaxos.errors import ConfigError, UnsupportedError

if TYPE_CHECKING:
    from passivepaxos.types import Backend

__all__ = [
    "SCHEMES",
    "StoreURL",
    "backend_module",
    "open_backend",
    "parse_url",
    "split_urls",
    "use_source_backends",
]

# scheme -> (backend module, pip extra that provides its SDK)
SCHEMES: dict[str, tuple[str, str | None]] = {
    "memory": ("memory", None),
    "file": ("local", None),
    "s3": ("s3", "s3"),
    "gs": ("gcs", "gcs"),
    "dropbox": ("dropbox", "dropbox"),
}
_PLANNED = {"az": "Azure Blob"}


@dataclass(frozen=True)
class StoreURL:
    """A parsed storage URL. ``container`` is the bucket / memory name; ``prefix`` has no
    leading or trailing slash (for file:// and dropbox:// it is the absolute path)."""

    raw: str
    scheme: str
    container: str
    prefix: str
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.raw


def split_urls(log: str) -> list[str]:
    """Split a quorum spec ``url1,url2,...`` into its URLs."""
    parts = [p.strip() for p in log.split(",")]
    if not log.strip() or any(not p for p in parts):
        raise ConfigError(f"empty storage URL in {log!r}")
    return parts


def parse_url(raw: str) -> StoreURL:
    if "://" not in raw:
        raise ConfigError(
            f"{raw!r} is not a storage URL; use file:///abs/dir, s3://bucket/prefix, "
            "gs://bucket/prefix, dropbox:///path or memory://name"
        )
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme in _PLANNED:
        raise UnsupportedError(
            f"{raw}: the {_PLANNED[scheme]} backend ({scheme}://) is not implemented yet",
            capability=scheme,
        )
    if scheme not in SCHEMES:
        raise ConfigError(
            f"{raw}: unknown scheme {scheme!r}; known: " + ", ".join(f"{s}://" for s in SCHEMES)
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    path = unquote(parts.path)
    if scheme in ("file", "dropbox"):
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(
                f"{raw}: {scheme}:// URLs take an absolute path with three slashes, "
                f"e.g. {scheme}:///data/mylog"
            )
        if not path.startswith("/"):
            raise ConfigError(f"{raw}: the path must be absolute")
        prefix = path.rstrip("/") or "/"
        return StoreURL(raw, scheme, "", prefix, options)
    container = parts.netloc
    if not container:
        raise ConfigError(f"{raw}: missing bucket name, e.g. {scheme}://my-bucket/prefix")
    return StoreURL(raw, scheme, container, path.strip("/"), options)


def backend_module(name: str) -> ModuleType:
    """Import backend ``name`` from the same tree as this package: ``backends/`` beside it in
    a source checkout, else the installed ``passivepaxos_backends``."""
    if not use_source_backends() and importlib.util.find_spec("passivepaxos_backends") is None:
        raise ConfigError(f"backend module {name!r} is not installed")
    return importlib.import_module(f"passivepaxos_backends.{name}")


def use_source_backends() -> bool:
    """In a source checkout, make ``backends/`` importable as ``passivepaxos_backends``
    (an installed copy, if any, is shadowed: tests must run the code they sit beside)."""
    src = Path(__file__).resolve().parent.parent / "backends"
    if not (src / "__init__.py").is_file():
        return False
    loaded = sys.modules.get("passivepaxos_backends")
    if loaded is not None and Path(loaded.__file__ or "").parent == src:
        return True
    for mod in [m for m in sys.modules if m.startswith("passivepaxos_backends.")]:
        del sys.modules[mod]
    spec = importlib.util.spec_from_file_location(
        "passivepaxos_backends", src / "__init__.py", submodule_search_locations=[str(src)]
    )
    assert spec is not None and spec.loader is not None
    pkg = importlib.util.module_from_spec(spec)
    sys.modules["passivepaxos_backends"] = pkg
    spec.loader.exec_module(pkg)
    return True


def open_backend(url: str | StoreURL) -> Backend:
    """The raw adapter for one URL (no framing, no retries: see ``passivepaxos.store``)."""
    parsed = url if isinstance(url, StoreURL) else parse_url(url)
    module_name, extra = SCHEMES[parsed.scheme]
    try:
        module = backend_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"{parsed.raw}: the {parsed.scheme}:// backend needs {exc.name!r}; "
            f"install it with: pip install 'passivepaxos[{extra}]'"
        ) from None
    backend: Backend = module.open_backend(parsed)
    return backend
