#!/usr/bin/env bash
# Every test, exactly as CI runs it (.ci/run calls this). On a fresh machine it also creates what
# the tests need: the managed Python environment with torch and lightning, through doctor's own
# setup code (`doctor repro --setup`; about 5 GB of wheels the first time).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked
# doctor run's tests check that a tracer inside the command (strace) still works.
command -v strace >/dev/null || { apt-get update -qq && apt-get install -y -qq strace; }
./target/debug/doctor repro --setup
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
