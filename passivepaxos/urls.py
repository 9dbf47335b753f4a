"""Storage URLs and the scheme -> backend registry.

Backends are imported as ``passivepaxos_backends.<name>``: a wheel ships the repository's
top-level ``backends/`` folder under that name (renamed at build time, so it never installs
as a clashing top-level ``backends``); in a source checkout or an editable install the
``passivepaxos_backends`` shim beside ``passivepaxos/`` points at ``backends/``
(docs/architecture.md, "Packaging"). Each backend module exposes
``open_backend(url: StoreURL) -> Backend``; it is imported lazily so that a missing optional
SDK only matters to users of that scheme.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import posixpath
import re
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from passivepaxos.errors import ConfigError, UnsupportedError

if TYPE_CHECKING:
    from passivepaxos.types import Backend

__all__ = [
    "SCHEMES",
    "StoreURL",
    "backend_module",
    "open_backend",
    "parse_url",
    "parse_urls",
    "split_urls",
]

# scheme -> (backend module, pip extra that provides its SDK)
SCHEMES: dict[str, tuple[str, str | None]] = {
    "memory": ("memory", None),
    "file": ("local", None),
    "s3": ("s3", "s3"),
    "gs": ("gcs", "gcs"),
    "dropbox": ("dropbox", "dropbox"),
    "az": ("azure", "azure"),
}
_PLANNED: dict[str, str] = {}


# S3: today's rules: 3-63 of a-z 0-9 . -, a letter or digit at both ends, no "..", not an
# IP address. Buckets made in us-east-1 before March 2018 may still carry legacy names
# (upper case, '_', up to 255 characters); they exist, so they are accepted as such.
_S3_BUCKET = re.compile(r"(?!.*\.\.)(?!\d+\.\d+\.\d+\.\d+\Z)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_S3_LEGACY_BUCKET = re.compile(r"(?=.*[A-Z_])(?!.*\.\.)[A-Za-z0-9._-]{3,255}\Z")
# The URL query options each scheme understands; any other is refused (a misspelt
# ``?conditonal=off`` silently ignored would run a store in a mode it cannot keep).
_OPTIONS: dict[str, frozenset[str]] = {
    "memory": frozenset(),
    "file": frozenset(),
    "s3": frozenset({"conditional"}),
    "gs": frozenset({"project", "timeout"}),
    "dropbox": frozenset(),
    "az": frozenset({"timeout"}),
}
# GCS: lower case, digits, '-', '_', '.', 3-222 characters, alphanumeric at both ends.
_GCS_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]\Z")
# Azure: 3-63 of a-z 0-9 -, a letter or digit at both ends, no "--".
_AZURE_CONTAINER = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]\Z")


@dataclass(frozen=True)
class StoreURL:
    """A parsed, normalised storage URL. ``container`` is the bucket / memory name;
    ``prefix`` has no leading or trailing slash (for file:// and dropbox:// it is the
    normalised absolute path: no ``.``, ``..``, repeated or trailing slashes)."""

    raw: str
    scheme: str
    container: str
    prefix: str
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.raw

    @property
    def canonical(self) -> str:
        """The normalised spelling of this URL (options sorted): equal for URLs that differ
        only in trailing slashes, ``.``/``..``, repeated slashes or scheme case."""
        if self.scheme in ("file", "dropbox"):
            base = f"{self.scheme}://{self.prefix}"
        else:
            base = f"{self.scheme}://{self.container}" + (f"/{self.prefix}" if self.prefix else "")
        return base + (f"?{urlencode(sorted(self.options.items()))}" if self.options else "")

    def seconds(self, option: str, default: float) -> float:
        """The URL option ``option`` as a positive, finite number of seconds (``default``
        when absent); anything else is a ``ConfigError`` naming the URL."""
        if option not in self.options:
            return default
        try:
            value = float(self.options[option])
        except ValueError:
            value = math.nan
        if not (value > 0 and math.isfinite(value)):
            raise ConfigError(f"{self.raw}: {option} must be a positive number of seconds")
        return value

    @property
    def identity(self) -> tuple[str, str, str]:
        """What makes two URLs the same store: options ignored, Dropbox paths case-folded
        (Dropbox is case-insensitive); an existing file:// directory is its device and
        inode (one directory under two paths, by a bind mount or a symlink, is one store),
        a missing one its path with symlinks resolved as far as they exist."""
        if self.scheme == "file":
            try:
                st = os.stat(self.prefix)
            except (OSError, ValueError):
                return (self.scheme, "", os.path.realpath(self.prefix))
            return (self.scheme, "inode", f"{st.st_dev}:{st.st_ino}")
        if self.scheme == "dropbox":
            return (self.scheme, "", self.prefix.casefold())
        return (self.scheme, self.container, self.prefix)


def split_urls(log: str) -> list[str]:
    """Split a quorum spec ``url1,url2,...`` into its URLs, refusing two URLs that name the
    same store (a quorum of copies of one store is one store: ``ConfigError``)."""
    parts = [p.strip() for p in log.split(",")]
    if not log.strip() or any(not p for p in parts):
        raise ConfigError(f"empty storage URL in {log!r}")
    parse_urls(parts)
    return parts


def parse_urls(urls: list[str]) -> list[StoreURL]:
    """Parse the URLs of one quorum; ``ConfigError`` naming any that repeats a store."""
    parsed = [parse_url(u) for u in urls]
    seen: dict[tuple[str, str, str], StoreURL] = {}
    for p in parsed:
        first = seen.setdefault(p.identity, p)
        if first is not p:
            same = "" if first.raw == p.raw else f" ({first.raw})"
            raise ConfigError(
                f"{p.raw}: the same store is named twice in {','.join(urls)}{same}; "
                "each store of a quorum must be a different one"
            )
    return parsed


def _shown(text: str) -> str:
    """``text`` for a message, bytes that are not UTF-8 (argv's surrogate escapes) as
    ``\\xNN``."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("ascii", "replace")
    return raw.decode("utf-8", "backslashreplace")


def parse_url(raw: str) -> StoreURL:
    if "://" not in raw:
        raise ConfigError(
            f"{raw!r} is not a storage URL; use file:///abs/dir, s3://bucket/prefix, "
            "gs://bucket/prefix, az://container/prefix, dropbox:///path or memory://name"
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
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            f"{_shown(raw)}: not valid UTF-8 (a byte that is not UTF-8 in the name); "
            "storage URLs must be UTF-8"
        ) from None
    if parts.fragment or raw.endswith("#"):
        raise ConfigError(
            f"{raw}: a storage URL takes no '#' fragment (write '#' in a path as %23)"
        )
    try:
        options = dict(parse_qsl(parts.query, keep_blank_values=True, errors="strict"))
        path = unquote(parts.path, errors="strict")
    except UnicodeDecodeError:
        raise ConfigError(
            f"{raw}: a percent escape does not decode to UTF-8 (e.g. %FF); "
            "storage URLs must be UTF-8"
        ) from None
    unknown = sorted(set(options) - _OPTIONS[scheme])
    if unknown:
        known = ", ".join(sorted(_OPTIONS[scheme])) or "none"
        raise ConfigError(
            f"{raw}: unknown option {unknown[0]!r} for {scheme}:// URLs (known: {known})"
        )
    if scheme in ("file", "dropbox"):
        if parts.netloc.lower() not in ("", "localhost"):
            raise ConfigError(
                f"{raw}: {scheme}:// URLs take an absolute path with three slashes, "
                f"e.g. {scheme}:///data/mylog"
            )
        if not path.startswith("/"):
            raise ConfigError(f"{raw}: the path must be absolute, e.g. {scheme}:///data/mylog")
        if "\0" in path:
            raise ConfigError(f"{raw}: the path contains a NUL character")
        # one spelling per directory: no '.', '..', repeated or trailing slashes
        prefix = posixpath.normpath(re.sub("/+", "/", path))
        return StoreURL(raw, scheme, "", prefix, options)
    container = parts.netloc
    if not container:
        raise ConfigError(f"{raw}: missing bucket name, e.g. {scheme}://my-bucket/prefix")
    prefix = path.strip("/")
    if scheme == "s3" and not (_S3_BUCKET.match(container) or _S3_LEGACY_BUCKET.match(container)):
        raise ConfigError(
            f"{raw}: {container!r} is not a valid S3 bucket name (3-63 characters: a-z, 0-9, "
            "'.', '-', starting and ending with a letter or digit, no '..', not an IP address; "
            "legacy us-east-1 names: 3-255 of A-Z, a-z, 0-9, '.', '_', '-')"
        )
    if scheme == "gs" and not _GCS_BUCKET.match(container):
        raise ConfigError(
            f"{raw}: {container!r} is not a valid GCS bucket name (3-63 characters, up to "
            "222 with dots: a-z, 0-9, '-', '_', '.', starting and ending with a letter or digit)"
        )
    if scheme == "az" and not _AZURE_CONTAINER.match(container):
        raise ConfigError(
            f"{raw}: {container!r} is not a valid Azure container name (3-63 characters: "
            "a-z, 0-9, '-', starting and ending with a letter or digit, no '--')"
        )
    if (
        scheme in ("s3", "gs", "az")
        and prefix
        and any(part in ("", ".", "..") for part in prefix.split("/"))
    ):
        # object stores take these literally, so 'a/./b' and 'a/b' would be two stores that
        # look like one: refuse rather than guess
        raise ConfigError(
            f"{raw}: the prefix {prefix!r} has an empty, '.' or '..' component; "
            f"write it as {scheme}://{container}/a/b"
        )
    return StoreURL(raw, scheme, container, prefix, options)


def backend_module(name: str) -> ModuleType:
    """Import backend ``name`` (``passivepaxos_backends.<name>``)."""
    if importlib.util.find_spec("passivepaxos_backends") is None:
        raise ConfigError(f"backend module {name!r} is not installed")
    return importlib.import_module(f"passivepaxos_backends.{name}")


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
