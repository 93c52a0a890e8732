#!/usr/bin/env bash
# doctor run: overhead on the fixed Fabric reproduction (bare vs under `doctor run`), doctor's
# own CPU time, and the shortest-lived listener it sees with and without tracing.
#
#   scripts/bench/run.sh                          # RUNS=5 by default
#   BEFORE=/path/to/older/doctor scripts/bench/run.sh   # the same runs with an older build, side by side
#
# Needs the managed environment (`doctor repro --setup`). Everything it starts is killed by
# process group at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-5}
cargo build --release --locked -q
DOCTOR=$PWD/target/release/doctor
BEFORE=${BEFORE:-}
PY=$("$DOCTOR" repro --setup 2>/dev/null)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SCRIPT=$PWD/repro/fabric_fixed.py

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== overhead: $SCRIPT --ctx fork, $RUNS runs each, alternating (python: $PY)"
: > "$WORK/bare"; : > "$WORK/doctor"; : > "$WORK/cpu"; : > "$WORK/before"
for i in $(seq "$RUNS"); do
  port=$(free_port)
  t0=$(now); MASTER_PORT=$port "$PY" "$SCRIPT" --ctx fork > /dev/null 2>&1; t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}' >> "$WORK/bare"
  port=$(free_port)
  t0=$(now); MASTER_PORT=$port "$DOCTOR" run --record "$WORK/rec.json" -- "$PY" "$SCRIPT" --ctx fork > /dev/null 2>&1; t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}' >> "$WORK/doctor"
  python3 -c "import json; print(json.load(open('$WORK/rec.json'))['doctor_cpu_seconds'])" >> "$WORK/cpu"
  if [ -n "$BEFORE" ]; then
    port=$(free_port)
    t0=$(now); MASTER_PORT=$port "$BEFORE" run -- "$PY" "$SCRIPT" --ctx fork > /dev/null 2>&1; t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}' >> "$WORK/before"
  fi
done
bare=$(median < "$WORK/bare"); wrapped=$(median < "$WORK/doctor"); cpu=$(median < "$WORK/cpu")
printf 'bare python          median %.2f s  (%s)\n' "$bare" "$(tr '\n' ' ' < "$WORK/bare")"
printf 'under doctor run     median %.2f s  (%s)\n' "$wrapped" "$(tr '\n' ' ' < "$WORK/doctor")"
printf 'overhead             %+.1f %%\n' "$(awk -v w="$wrapped" -v b="$bare" 'BEGIN {print (w / b - 1) * 100}')"
printf "doctor's own CPU     median %.3f s per run (default interval 50 ms, tracing on)\n" "$cpu"
if [ -n "$BEFORE" ]; then
  before=$(median < "$WORK/before")
  printf 'under BEFORE         median %.2f s  (%+.1f %% against bare)\n' "$before" "$(awk -v w="$before" -v b="$bare" 'BEGIN {print (w / b - 1) * 100}')"
fi

echo "== shortest-lived listener seen (10 tries each)"
printf '%-8s %-18s %-18s\n' "lifetime" "polling (50 ms)" "tracing"
for ms in 200 100 50 20 5; do
  seen_poll=0; seen_trace=0
  for _ in $(seq 10); do
    port=$(free_port)
    "$DOCTOR" run --no-trace --record "$WORK/p.json" -- python3 tests/helpers/run_cases.py short-listener "$port" "$ms" > /dev/null 2>&1 || true
    python3 - "$WORK/p.json" "$port" <<'PY' && seen_poll=$((seen_poll+1)) || true
import json, sys
d = json.load(open(sys.argv[1])); port = int(sys.argv[2])
sys.exit(0 if any(s["socket"]["local_port"] == port and s["socket"]["state"] == "LISTEN" for s in d["sockets"]) else 1)
PY
    port=$(free_port)
    "$DOCTOR" run --record "$WORK/t.json" -- python3 tests/helpers/run_cases.py short-listener "$port" "$ms" > /dev/null 2>&1 || true
    python3 - "$WORK/t.json" "$port" <<'PY' && seen_trace=$((seen_trace+1)) || true
import json, sys
d = json.load(open(sys.argv[1])); port = int(sys.argv[2])
sys.exit(0 if any(e["syscall"] == "listen" and e.get("port") == port for e in d["syscalls"]) else 1)
PY
  done
  printf '%-8s %-18s %-18s\n' "${ms} ms" "$seen_poll/10" "$seen_trace/10"
done

echo "== bind-heavy: 2000 x (socket, bind port 0, listen, close) in one process, $RUNS runs each"
BINDS='import socket
for _ in range(2000):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); s.close()'
: > "$WORK/b_bare"; : > "$WORK/b_doctor"; : > "$WORK/b_before"
for i in $(seq "$RUNS"); do
  t0=$(now); python3 -c "$BINDS"; t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}' >> "$WORK/b_bare"
  t0=$(now); "$DOCTOR" run -- python3 -c "$BINDS" > /dev/null 2>&1; t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}' >> "$WORK/b_doctor"
  if [ -n "$BEFORE" ]; then
    t0=$(now); "$BEFORE" run -- python3 -c "$BINDS" > /dev/null 2>&1; t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}' >> "$WORK/b_before"
  fi
done
b_bare=$(median < "$WORK/b_bare"); b_doc=$(median < "$WORK/b_doctor")
printf 'bare python          median %.3f s\n' "$b_bare"
printf 'under doctor run     median %.3f s  (%.2fx bare)\n' "$b_doc" "$(awk -v w="$b_doc" -v b="$b_bare" 'BEGIN {print w / b}')"
if [ -n "$BEFORE" ]; then
  b_bef=$(median < "$WORK/b_before")
  printf 'under BEFORE         median %.3f s  (%.2fx bare)\n' "$b_bef" "$(awk -v w="$b_bef" -v b="$b_bare" 'BEGIN {print w / b}')"
fi
