#!/usr/bin/env bash
# README's test command: the Rust tests, then the Python package's. The module is built once,
# into a virtual environment under target/, from the workspace's own build folder.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests' researchers learn of their brokers' nodes stays here, not in $HOME.
export FEDREQ_STATE_DIR="$PWD/target/test-state"
rm -rf "$FEDREQ_STATE_DIR"

cargo test --workspace

venv="$PWD/target/python-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "maturin>=1.5,<2" pytest pandas tensorboard selenium
(cd python && VIRTUAL_ENV="$venv" "$venv/bin/maturin" develop --quiet)
"$venv/bin/python" -m pytest -q python/tests
