#!/usr/bin/env bash
# What deepspeed's CPU op costs `repro --verify-fix` (issue 19), with and without the one-time
# build that `doctor repro --setup` does:
#   cold:   deepspeed's own builder loads deepspeed_shm_comm into an empty TORCH_EXTENSIONS_DIR
#           (what the first init_distributed() on CPU does: a C++ compile with ninja)
#   warm:   the same load again, the op built (what every case does after --setup)
#   verify: doctor repro tests/fixtures/scan/deepspeed_module.py --verify-fix --ctx spawn
#           --accelerator cpu --jobs 1, with the managed venv's op built (whole doctor process)
# Uses the managed venv (doctor repro --setup must have run: deepspeed and ninja are pinned there).
#
# Usage: scripts/bench/deepspeed_op.sh [DOCTOR_BINARY]   (default: target/debug/doctor)
set -euo pipefail
cd "$(dirname "$0")/../.."
DOCTOR=${1:-target/debug/doctor}
VENV=$("$DOCTOR" repro --setup 2>/dev/null | xargs dirname | xargs dirname)
echo "doctor: $DOCTOR; venv: $VENV"
echo "cores: $(nproc); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
scratch=$(mktemp -d /tmp/deepspeed-op-bench.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
load() {
    PATH="$VENV/bin:$PATH" DS_ACCELERATOR=cpu TORCH_EXTENSIONS_DIR="$scratch" "$VENV/bin/python" -c '
import time
from deepspeed.accelerator import get_accelerator
b = get_accelerator().create_op_builder("ShareMemCommBuilder")
t = time.time()
b.load()
print("%.2f" % (time.time() - t))' 2>/dev/null | tail -1
}
cold=$(load)
warm=$(load)
t=$(date +%s.%N)
"$DOCTOR" repro tests/fixtures/scan/deepspeed_module.py --verify-fix --ctx spawn --accelerator cpu \
    --jobs 1 --timeout 240 --no-progress --format json 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["verdict"]["summary"][:60])'
verify=$(python3 -c "import time; print('%.1f' % (time.time() - $t))")
echo "op load, cold (compile):  ${cold} s"
echo "op load, warm (built):    ${warm} s"
echo "ratio cold/warm:          $(python3 -c "print('%.0fx' % ($cold / max($warm, 0.01)))")"
echo "verify-fix, op built:     ${verify} s (2 cases)"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
