"""The built wheel installs into a fresh venv, ships every backend as passivepaxos_backends,
and never installs a clashing top-level ``backends``."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_installs_and_imports_every_backend(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("passivepaxos-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "passivepaxos/py.typed" in names
    assert "passivepaxos_backends/s3.py" in names
    assert not any(n.startswith("backends/") for n in names)

    env_dir = tmp_path / "venv"
    # the SDKs come from the test environment (a .pth, appended after the venv's own
    # site-packages, so the wheel's copy of passivepaxos wins); the wheel installs alone
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    # only now, so pip cannot see the test environment's own copy as 'already installed'
    Path(site, "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code = (
        "import importlib, importlib.util, passivepaxos, passivepaxos_backends\n"
        "for m in ('memory', 'local', 's3', 'gcs', 'dropbox'):\n"
        "    importlib.import_module('passivepaxos_backends.' + m)\n"
        "assert importlib.util.find_spec('backends') is None, 'clashing top-level backends'\n"
        f"assert passivepaxos.__file__.startswith({str(env_dir)!r}), passivepaxos.__file__\n"
        f"assert passivepaxos_backends.__file__.startswith({str(env_dir)!r})\n"
        "print('ok')\n"
    )
    out = subprocess.run([str(py), "-I", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.strip() == "ok", out.stderr
    script = env_dir / "bin" / "passivepaxos"
    out = subprocess.run([str(script), "backends", "--json"], capture_output=True, text=True)
    assert out.returncode == 0 and '"name": "s3"' in out.stdout, out.stderr
