"""Source-checkout shim: the storage adapters live in the repository's top-level
``backends/`` folder; this package makes them importable under their installed name,
``passivepaxos_backends``, wherever this checkout is on ``sys.path``: running from it
(tests, scripts, ``python -m passivepaxos``) and an editable install (whose ``.pth`` puts
the checkout on ``sys.path``). Its only act is to point the package's search path at
``backends/``: ``passivepaxos_backends.s3`` is ``backends/s3.py``. A wheel ships ``backends/``
itself as ``passivepaxos_backends`` (pyproject: hatch ``sources``) and never this file.
See docs/architecture.md, "Packaging"."""

from pathlib import Path

__path__ = [str(Path(__file__).resolve().parent.parent / "backends")]
