#!/usr/bin/env bash
# Every test, exactly as CI runs it (.ci/run calls this). On a fresh machine it also creates what
# the tests need: the managed Python environment with torch and lightning, through doctor's own
# setup code (`doctor repro --setup`; about 5 GB of wheels the first time).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked
# doctor run's tests check that a tracer inside the command (strace) still works, and run the
# differential rows as nobody (setpriv, util-linux) with a file capability (setcap, libcap2-bin).
missing=()
command -v strace >/dev/null || missing+=(strace)
command -v setpriv >/dev/null || missing+=(util-linux)
command -v setcap >/dev/null || [ -x /usr/sbin/setcap ] || [ -x /sbin/setcap ] || missing+=(libcap2-bin)
if [ ${#missing[@]} -gt 0 ]; then apt-get update -qq && apt-get install -y -qq "${missing[@]}"; fi
./target/debug/doctor repro --setup
# A second managed venv, of Python 3.12, for the scripts that need it (PEP 695 syntax:
# tests/fixtures/scan/modern_syntax.py under `repro --verify-fix`), made from pyenv's 3.12 by the
# same code (`--python-base`; about 3-4.5 min and 5.5 GB the first time, docs/performance.md).
# Without a Python 3.12 here those tests fail under CI, naming what is missing.
base312=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12.*/bin/python3 2>/dev/null | sort -V | tail -1 || true)
if [ -n "$base312" ]; then ./target/debug/doctor repro --setup --python-base "$base312"; fi
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --no-fail-fast
