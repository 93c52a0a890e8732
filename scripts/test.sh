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
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --no-fail-fast
