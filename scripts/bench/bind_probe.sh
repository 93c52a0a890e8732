#!/usr/bin/env bash
# The window of doctor's real binds (sys/bindable.rs, the D005/D007 probe; sys/freeport.rs,
# the free port a fix names): how long `doctor ports` holds a port bound while it checks that
# torch's store could bind it, and whether it listens meanwhile (a listener makes a store's
# bind fail; a bound socket that never listens does not). A real situation where doctor looks
# for a free port (tests/helpers/situations.py d005: an outgoing connection uses the port as
# its local port, nobody listens; the probe of that port fails, as it should, and the fixes
# name a free port), `doctor ports --port PORT` run RUNS times under strace; the window is from
# a successful `bind` returning to that socket's `close` returning (strace's timestamps; its
# own cost is inside, so the figures are an upper bound). Prints the median, 90th percentile
# and largest window, and how many of the bound sockets listened.
#
# Usage: scripts/bench/bind_probe.sh [DOCTOR_BINARY]   (default: a release build of this tree)
# Knobs: RUNS=200. Needs strace.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh
DOCTOR=${1:-$(release_doctor)}
RUNS=${RUNS:-200}
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WORK=$(mktemp -d "${TMPDIR:-/tmp}/doctor-bindprobe.XXXXXX")
setsid python3 tests/helpers/situations.py d005 "$PORT" > "$WORK/situation" 2>&1 &
HELPER=$!
disown "$HELPER"
trap 'kill -KILL -- -$HELPER 2>/dev/null; rm -rf "$WORK"' EXIT
until grep -q READY "$WORK/situation"; do sleep 0.05; done
echo "doctor: $DOCTOR; port $PORT; cores: $(nproc); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$RUNS"); do
    strace -f -ttt -T -e trace=bind,listen,close -o "$WORK/trace.$i" "$DOCTOR" ports --port "$PORT" > /dev/null 2>&1 || true
done
python3 - "$WORK" "$RUNS" "$PORT" <<'PY'
import re, statistics, sys
work, runs, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
windows, listened = [], 0
for i in range(1, runs + 1):
    bound = {}
    for line in open(f"{work}/trace.{i}"):
        m = re.match(r"(\d+)\s+([\d.]+) (bind|listen|close)\((\d+)(.*)\)\s+=\s+(-?\d+).*<([\d.]+)>", line)
        if not m:
            continue
        pid, t, call, fd, args, ret, took = m.groups()
        end = float(t) + float(took)
        if call == "bind" and "htons(" in args and ret == "0":
            bound[(pid, fd)] = [end, False]
        elif call == "listen" and (pid, fd) in bound:
            bound[(pid, fd)][1] = True
        elif call == "close" and (pid, fd) in bound:
            start, listening = bound.pop((pid, fd))
            windows.append(end - start)
            listened += listening
if not windows:
    sys.exit("no bind seen")
us = sorted(w * 1e6 for w in windows)
print(f"successful binds seen: {len(us)} in {runs} runs; of them listened: {listened}")
print(f"window (bind returned -> close returned), microseconds: median {statistics.median(us):.0f}, "
      f"90th percentile {us[int(len(us) * 0.9) - 1]:.0f}, largest {us[-1]:.0f}")
PY
