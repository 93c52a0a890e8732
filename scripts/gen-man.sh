#!/usr/bin/env bash
# Regenerates the man page the wheel installs (share/man/man1/doctor.1) from the clap definitions,
# i.e. from `doctor man`. Run it after changing a command or option; `cargo test --test install
# man_page_is_current` fails until the committed page matches.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --locked --quiet --bin doctor -- man > packaging/wheel-data/data/share/man/man1/doctor.1
