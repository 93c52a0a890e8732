#!/usr/bin/env bash
# Benchmark of deep parent chains (issue 24: the hostile-input test asserts only correctness, this
# measures the time). Snapshots like tests/hostile_input.rs builds them: a chain of N processes
# (each the parent of the next) and a flat snapshot of the same size (every process a child of
# init), loaded with `doctor ports --from` and `doctor tree --from --format json`. Prints the
# median wall time of RUNS runs of each (interleaved) and the ratio chain/flat: linear work keeps
# it near 1.
#
# Usage: scripts/bench/deep_chains.sh [DOCTOR_BINARY]   (default: a release build of this tree)
# Knobs: SIZES="10000 100000", RUNS=5.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh
DOCTOR=${1:-$(release_doctor)}
SIZES=${SIZES:-"10000 100000"}
RUNS=${RUNS:-5}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/doctor-chains.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
echo "doctor: $DOCTOR"
echo "cores: $(nproc); load average: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$WORK" "$DOCTOR" "$RUNS" $SIZES <<'PY'
import json, os, statistics, subprocess, sys, time

work, doctor, runs, sizes = sys.argv[1], sys.argv[2], int(sys.argv[3]), [int(s) for s in sys.argv[4:]]

def process(pid, ppid, argv):
    return {"pid": pid, "ppid": ppid, "pgid": pid, "sid": 1, "uid": 0, "state": "S",
            "start_time": float(pid), "comm": "python", "exe": None, "argv": argv,
            "env": {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "RANK": "0",
                    "LOCAL_RANK": "0", "WORLD_SIZE": "2"},
            "socket_inodes": [], "gpu": False}

def snapshot(name, procs):
    # The fields tests/hostile_input.rs::snapshot_with writes (a snapshot of doctor's own schema).
    base_path = os.path.join(work, "base.json")
    if not os.path.exists(base_path):
        subprocess.run([doctor, "snapshot", "-o", base_path], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(base_path) as f:
        base = json.load(f)
    base["processes"] = procs
    base["sockets"] = []
    path = os.path.join(work, name)
    with open(path, "w") as f:
        json.dump(base, f)
    return path

def once(argv):
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if p.returncode not in (0, 1):
        sys.exit(f"error: {argv} exited {p.returncode}")
    return time.perf_counter() - t0

print(f"{'snapshot':<14} {'command':<22} {'median_s':>9} {'min_s':>9}")
for n in sizes:
    chain = [process(1, 0, ["init"])] + [process(p, p - 1, ["python", "train.py"]) for p in range(2, n + 2)]
    flat = [process(1, 0, ["init"])] + [process(p, 1, ["python", "train.py"]) for p in range(2, n + 2)]
    files = {"chain": snapshot(f"chain{n}.json", chain), "flat": snapshot(f"flat{n}.json", flat)}
    cmds = {"ports --from": ["ports", "--from"], "tree --from --json": ["tree", "--format", "json", "--from"]}
    times = {(k, c): [] for k in files for c in cmds}
    keys = list(times)
    for k in keys:  # warm-up, not counted
        once([doctor, *cmds[k[1]], files[k[0]]])
    for i in range(runs):
        for j in range(len(keys)):
            k = keys[(i + j) % len(keys)]
            times[k].append(once([doctor, *cmds[k[1]], files[k[0]]]))
    for c in cmds:
        for k in files:
            t = times[(k, c)]
            print(f"{k + str(n):<14} {c:<22} {statistics.median(t):9.4f} {min(t):9.4f}")
        ratio = statistics.median(times[("chain", c)]) / statistics.median(times[("flat", c)])
        print(f"{'':<14} {c:<22} ratio chain/flat = {ratio:.2f}")
PY
