#!/usr/bin/env bash
# What a second managed venv costs (issue 19: a Python 3.12 venv for scripts with PEP 695
# syntax): `doctor repro --setup --python-base BASE` into an empty cache (time, disk, pip's cache
# before and after), and, when a `uv` binary is given, the same pins with uv, cold and then warm
# (a second venv from uv's cache). Everything is made under a temporary directory and removed.
# Usage: scripts/bench/venv.sh DOCTOR BASE_PYTHON [UV]
# Needs the package index (PyPI) and about 12 GB free (6 with no uv).
set -euo pipefail
doctor=${1:?usage: venv.sh DOCTOR BASE_PYTHON [UV]}
base=${2:?usage: venv.sh DOCTOR BASE_PYTHON [UV]}
uv=${3:-}
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d /tmp/doctor-venv-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pins=$(grep -v '^#' repro/requirements.txt | grep -v '^$' | tr '\n' ' ')
pipcache=$("$base" -m pip cache dir 2>/dev/null || echo "$HOME/.cache/pip")
echo "base: $("$base" --version) ($base); pins: $pins"
echo "pip cache before: $(du -sh "$pipcache" 2>/dev/null | cut -f1)"
t0=$(date +%s.%N)
DOCTOR_CACHE_DIR="$tmp/cache" "$doctor" -q repro --setup --python-base "$base" >/dev/null
t1=$(date +%s.%N)
echo "doctor repro --setup --python-base: $(echo "$t1 - $t0" | bc) s, $(du -sh "$tmp/cache" | cut -f1) ($(ls "$tmp/cache"))"
echo "pip cache after: $(du -sh "$pipcache" 2>/dev/null | cut -f1)"
rm -rf "$tmp/cache"
if [ -n "$uv" ]; then
  export UV_CACHE_DIR="$tmp/uvcache"
  for run in cold warm; do
    t0=$(date +%s.%N)
    "$uv" venv -q --python "$base" "$tmp/uv-$run"
    # shellcheck disable=SC2086
    "$uv" pip install -q --python "$tmp/uv-$run/bin/python" $pins
    t1=$(date +%s.%N)
    echo "uv $run: $(echo "$t1 - $t0" | bc) s"
  done
  echo "uv: two venvs and the cache together (hard links counted once): $(du -sh "$tmp" | cut -f1)"
fi
