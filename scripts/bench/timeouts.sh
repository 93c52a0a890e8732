#!/usr/bin/env bash
# How long doctor takes past a time limit to stop a command tree (issue 24: the tests assert that
# the tree is gone, not a time). Two commands, RUNS runs each, interleaved:
#   run:   doctor run --timeout 1 --grace 1 -- python3 tests/helpers/run_cases.py wait-int
#          (the command would sleep 30 s; it exits on the SIGINT of the limit)
#   repro: doctor repro tests/helpers/tree.py --ctx spawn --timeout 3 -- hang PIDFILE
#          (launcher, child rank, worker and a setsid daemon that sleep for ever; killed whole)
# Prints each run's wall time and the median overshoot past the limit, and checks after every
# run that no process of the run is left (the pids each helper wrote).
#
# Usage: scripts/bench/timeouts.sh [DOCTOR_BINARY]   (default: a release build of this tree)
# Knobs: RUNS=5.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh
DOCTOR=${1:-$(release_doctor)}
RUNS=${RUNS:-5}
echo "doctor: $DOCTOR"
echo "cores: $(nproc); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$DOCTOR" "$RUNS" <<'PY'
import os, statistics, subprocess, sys, tempfile, time

doctor, runs = sys.argv[1], int(sys.argv[2])

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

def once(kind):
    with tempfile.TemporaryDirectory(prefix="doctor-timeouts.") as d:
        pidfile = os.path.join(d, "pids")
        env = dict(os.environ, NO_COLOR="1", PIDFILE=pidfile)
        if kind == "run":
            limit = 1.0
            argv = [doctor, "run", "--timeout", "1", "--grace", "1", "--",
                    "python3", "tests/helpers/run_cases.py", "wait-int"]
        else:
            limit = 3.0
            argv = [doctor, "repro", "tests/helpers/tree.py", "--python", "python3",
                    "--ctx", "spawn", "--timeout", "3", "--format", "json", "--", "hang", pidfile]
        t0 = time.monotonic()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       start_new_session=True)
        wall = time.monotonic() - t0
        pids = []
        if os.path.exists(pidfile):
            pids = [int(l.split()[0]) for l in open(pidfile) if l.strip()]
        left = [p for p in pids if alive(p)]
        if not pids or left:
            sys.exit(f"{kind}: pids {pids}, left running {left}")
        return wall, limit

res = {"run": [], "repro": []}
for _ in range(runs):
    for kind in res:
        res[kind].append(once(kind))
print(f"{'command':<8}{'limit_s':>9}{'median_s':>10}{'min_s':>8}{'max_s':>8}{'overshoot_s':>13}")
for kind, xs in res.items():
    walls = [w for w, _ in xs]
    limit = xs[0][1]
    med = statistics.median(walls)
    print(f"{kind:<8}{limit:>9.1f}{med:>10.3f}{min(walls):>8.3f}{max(walls):>8.3f}{med - limit:>13.3f}")
print("left running after every run: 0")
PY
