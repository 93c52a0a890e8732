#!/bin/sh
# `doctor scan --fix` / `--diff` on generated huge modules (issue 19): N independent statements
# after the launch, and a chain of N statements that a function needs (each reads the one
# before). Prints the wall time of each run.
#   scripts/bench/scan_fix_big.sh DOCTOR [N_FLAT] [N_CHAIN]
set -eu
doctor=$1
flat=${2:-50000}
chain=${3:-4000}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 - "$dir" "$flat" "$chain" <<'PY'
import sys
d, flat, chain = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(f"{d}/flat.py", "w") as f:
    f.write('import torch.distributed as dist\ndist.init_process_group("gloo")\n')
    f.writelines(f"v{i} = {i}\n" for i in range(flat))
    f.write("def f():\n    return v1\n")
with open(f"{d}/chain.py", "w") as f:
    f.write('import torch.distributed as dist\ndist.init_process_group("gloo")\nv0 = 0\n')
    f.writelines(f"v{i} = v{i - 1} + 1\n" for i in range(1, chain))
    f.write(f"def f():\n    return v{chain - 1}\n")
PY
for name in flat chain; do
    /usr/bin/time -f "$name --diff: %e s" "$doctor" scan --diff "$dir/$name.py" >/dev/null 2>"$dir/err" || true
    tail -1 "$dir/err"
    /usr/bin/time -f "$name --fix: %e s" "$doctor" scan --fix "$dir/$name.py" >/dev/null 2>"$dir/err" || true
    tail -1 "$dir/err"
done
