"""Packaging (docs/architecture.md, "Packaging"): the built wheel installs into a fresh venv,
ships every backend as passivepaxos_backends, never installs a clashing top-level
``backends`` nor the source-checkout shim; an editable install (``pip install -e``, offline)
imports this checkout's code, backends included, and runs the CLI."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# what hatchling needs to build (taken from the test environment: no network)
BUILD_DEPS = ("hatchling", "packaging", "pathspec", "pluggy", "tomlkit", "trove_classifiers")


def _venv(env_dir: Path) -> tuple[Path, Path]:
    """A bare venv (no pip of its own: this environment's pip installs into it with
    ``--python``); returns its python and its site-packages."""
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return py, Path(site)


def _pip_install(py: Path, *args: str, env: dict[str, str] | None = None) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
         "--no-index", *args],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def _test_deps(site: Path) -> None:
    """The SDKs come from the test environment through a .pth, appended after the venv's
    own site-packages and after an editable install's .pth (``_passivepaxos.pth`` sorts
    first), so the installed passivepaxos wins over the test environment's copy. Added only
    after installing, so pip cannot see that copy as 'already installed'."""
    (site / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")


def _run(py: Path, code: str, cwd: Path) -> str:
    out = subprocess.run([str(py), "-I", "-c", code], capture_output=True, text=True, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _version(script: Path, cwd: Path) -> str:
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_wheel_installs_and_imports_every_backend(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",  # an sdist, then the wheel built from it: both carry what they must
            "--no-isolation",
            "--outdir",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("passivepaxos-*.whl")
    (sdist,) = dist.glob("passivepaxos-*.tar.gz")
    with tarfile.open(sdist) as tf:
        in_sdist = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert {"backends/s3.py", "passivepaxos_backends/__init__.py"} <= in_sdist
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        shipped_init = zf.read("passivepaxos_backends/__init__.py").decode()
    assert "passivepaxos/py.typed" in names
    assert "passivepaxos_backends/s3.py" in names
    assert not any(n.startswith("backends/") for n in names)
    assert len(names) == len(set(names))
    # backends/__init__.py, not the source-checkout shim (which points at a backends/ folder)
    assert shipped_init == (ROOT / "backends" / "__init__.py").read_text()

    env_dir = tmp_path / "venv"
    py, site = _venv(env_dir)
    _pip_install(py, str(wheel))
    _test_deps(site)
    code = (
        "import importlib, importlib.util, passivepaxos, passivepaxos_backends\n"
        "for m in ('memory', 'local', 's3', 'gcs', 'dropbox', 'azure'):\n"
        "    importlib.import_module('passivepaxos_backends.' + m)\n"
        "assert importlib.util.find_spec('backends') is None, 'clashing top-level backends'\n"
        f"assert passivepaxos.__file__.startswith({str(env_dir)!r}), passivepaxos.__file__\n"
        f"assert passivepaxos_backends.__file__.startswith({str(env_dir)!r})\n"
        "store = passivepaxos.open_store('memory://wheel')\n"
        "print(passivepaxos.__version__)\n"
    )
    version = _run(py, code, tmp_path)
    script = env_dir / "bin" / "passivepaxos"
    out = subprocess.run([str(script), "backends", "--json"], capture_output=True, text=True)
    assert out.returncode == 0 and '"name": "s3"' in out.stdout, out.stderr
    assert _version(script, tmp_path) == f"passivepaxos {version}"


def test_editable_install(tmp_path: Path) -> None:
    """``pip install --no-deps --no-build-isolation -e .`` works offline (it failed while
    the wheel renamed backends/ through hatch ``sources``, which dev mode refuses) and the
    installed environment runs this checkout's code: passivepaxos and, through the
    passivepaxos_backends shim, backends/."""
    deps = tmp_path / "build-deps"
    deps.mkdir()
    for name in BUILD_DEPS:
        spec = importlib.util.find_spec(name)
        assert spec is not None, f"{name} (a build dependency) is not installed"
        src = Path(next(iter(spec.submodule_search_locations or []), spec.origin or ""))
        (deps / src.name).symlink_to(src)
    env_dir = tmp_path / "venv"
    py, site = _venv(env_dir)
    env = {**os.environ, "PYTHONPATH": str(deps)}
    _pip_install(py, "--no-build-isolation", "-e", str(ROOT), env=env)
    _test_deps(site)
    code = (
        "import passivepaxos, passivepaxos_backends.memory as memory\n"
        "from passivepaxos import open_store\n"
        f"assert passivepaxos.__file__.startswith({str(ROOT / 'passivepaxos')!r})\n"
        f"assert memory.__file__ == {str(ROOT / 'backends' / 'memory.py')!r}, memory.__file__\n"
        "store = open_store('memory://editable')\n"
        "store.put('k', b'v')\n"
        "assert store.get('k')[0] == b'v'\n"
        "print(passivepaxos.__version__)\n"
    )
    version = _run(py, code, tmp_path)
    assert _version(env_dir / "bin" / "passivepaxos", tmp_path) == f"passivepaxos {version}"
