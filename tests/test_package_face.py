"""The package face: ``import passivepaxos`` exposes the curated API in ``__all__``, each
name resolving (lazily), described in the package docstring, nothing private leaking; and
``passivepaxos --version``."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import passivepaxos
from passivepaxos.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_every_name_resolves() -> None:
    for name in passivepaxos.__all__:
        assert getattr(passivepaxos, name) is not None, name
    assert len(set(passivepaxos.__all__)) == len(passivepaxos.__all__)


def test_every_name_is_documented() -> None:
    doc = passivepaxos.__doc__ or ""
    for name in passivepaxos.__all__:
        assert re.search(rf"``{re.escape(name)}``", doc), f"{name} is not in the docstring"


def test_nothing_private_leaks() -> None:
    assert not [n for n in passivepaxos.__all__ if n.startswith("_") and n != "__version__"]
    for name in passivepaxos.__all__:
        obj = getattr(passivepaxos, name)
        if isinstance(obj, str):  # __version__
            continue
        module = type(obj).__module__ if not hasattr(obj, "__qualname__") else obj.__module__
        assert module.startswith("passivepaxos"), (name, module)  # ours, not a dependency's
        # a name defined in a private module is fine (it is re-exported on purpose); its
        # own name must be public, and the package keeps no stray public attribute
    stray = {
        n
        for n, v in vars(passivepaxos).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)  # submodules are fine
    } - {*passivepaxos.__all__, "TYPE_CHECKING", "annotations"}
    assert not stray


def test_the_public_classes_are_the_defining_modules_ones() -> None:
    from passivepaxos.errors import LockHeldError, is_retryable
    from passivepaxos.log import Log
    from passivepaxos.recipes.kv import KV
    from passivepaxos.store import open_store

    assert passivepaxos.Log is Log and passivepaxos.KV is KV
    assert passivepaxos.open_store is open_store
    assert passivepaxos.LockHeldError is LockHeldError
    assert passivepaxos.is_retryable is is_retryable


def test_every_error_is_public() -> None:
    """Every exception class of passivepaxos.errors is reachable from the package."""
    import passivepaxos.errors as errors

    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert name in passivepaxos.__all__, name


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError):
        _ = passivepaxos.no_such_name  # type: ignore[attr-defined]
    assert "Log" in dir(passivepaxos)


def test_import_is_lazy() -> None:
    """``import passivepaxos`` imports none of the library's modules (the CLI's start)."""
    code = (
        "import sys, passivepaxos; "
        "print(sorted(m for m in sys.modules if m.startswith('passivepaxos.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_version() -> None:
    from importlib import metadata

    try:
        expected = metadata.version("passivepaxos")
    except metadata.PackageNotFoundError:
        import tomllib

        expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert passivepaxos.__version__ == expected


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"passivepaxos {passivepaxos.__version__}\n"
