#!/usr/bin/env bash
# Benchmark of `doctor repro` (issue 3): wall time of the full 6-case CPU matrix (Fabric pair x
# spawn/fork/forkserver) with --jobs 1 and with the default concurrency, against the same six
# cases run bare as `python script.py ...` one after another, and the supervision overhead per
# case. Not a test: figures depend on the machine. Results go to docs/performance.md by hand.
#
# Usage: scripts/bench/repro.sh [DOCTOR_BINARY]   (default: target/debug/doctor via cargo build)
set -euo pipefail
cd "$(dirname "$0")/../.."
DOCTOR=${1:-}
if [[ -z "$DOCTOR" ]]; then
  cargo build -q
  DOCTOR="${CARGO_TARGET_DIR:-target}/debug/doctor"
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PY=$("$DOCTOR" repro --setup --no-setup 2>/dev/null)
echo "doctor: $DOCTOR"
echo "python: $PY ($("$PY" -c 'import importlib.metadata as m; print("torch", m.version("torch"), "lightning", m.version("lightning"))'))"
echo "cpus: $(nproc), load before: $(cut -d' ' -f1-3 /proc/loadavg)"

now() { date +%s.%N; }

t0=$(now)
"$DOCTOR" repro --accelerator cpu --no-setup --jobs 1 --format json > "$WORK/jobs1.json" 2>/dev/null || true
t1=$(now)
"$DOCTOR" repro --accelerator cpu --no-setup --format json > "$WORK/default.json" 2>/dev/null || true
t2=$(now)
"$DOCTOR" repro --accelerator cpu --no-setup --jobs 2 --format json > "$WORK/jobs2.json" 2>/dev/null || true
t2b=$(now)

"$DOCTOR" repro --show fabric-buggy > "$WORK/fabric_buggy.py"
"$DOCTOR" repro --show fabric-fixed > "$WORK/fabric_fixed.py"
# Bare runs: the same command lines, each in a session of its own so that the orphans a failing
# run leaves behind (rank 1 of the buggy spawn/forkserver cases) can be cleaned up afterwards;
# the time is taken until the launcher exits, as doctor's `seconds` is.
"$PY" - "$WORK" "$PY" > "$WORK/bare.json" <<'PYEOF'
import json, os, signal, socket, subprocess, sys, time
work, py = sys.argv[1], sys.argv[2]
out = []
for ctx in ["spawn", "fork", "forkserver"]:
    for variant in ["buggy", "fixed"]:
        s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", BENCH_TAG=f"bench-{os.getpid()}")
        argv = [py, f"{work}/fabric_{variant}.py", "--ctx", ctx, "--accelerator", "cpu", "--devices", "2"]
        t = time.monotonic()
        p = subprocess.Popen(argv, env=env, cwd=work, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        rc = p.wait(timeout=600)
        secs = time.monotonic() - t
        # Clean up what the run left behind: its session, and anything carrying our marker.
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                env_b = open(f"/proc/{pid}/environ", "rb").read()
            except OSError:
                continue
            if f"BENCH_TAG=bench-{os.getpid()}".encode() in env_b.split(b"\0"):
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
        out.append({"variant": variant, "ctx": ctx, "exit_code": rc, "seconds": round(secs, 3)})
        time.sleep(0.5)
print(json.dumps(out))
PYEOF
t3=$(now)

"$PY" - "$WORK" "$t0" "$t1" "$t2" "$t2b" "$t3" <<'PYEOF'
import json, sys
work = sys.argv[1]
t0, t1, t2, t2b, t3 = map(float, sys.argv[2:])
j1 = json.load(open(f"{work}/jobs1.json"))
jd = json.load(open(f"{work}/default.json"))
j2 = json.load(open(f"{work}/jobs2.json"))
bare = json.load(open(f"{work}/bare.json"))
bare_sum = sum(b["seconds"] for b in bare)
wall1, walld, wall2 = t1 - t0, t2 - t1, t2b - t2
print()
print(f"{'case':<24}{'bare s':>8}{'doctor s':>10}{'outcome':>12}")
for b in bare:
    c = next(c for c in j1["cases"] if c["variant"] == b["variant"] and c["ctx"] == b["ctx"])
    print(f"{b['variant'] + ' ' + b['ctx']:<24}{b['seconds']:>8.1f}{c['seconds']:>10.1f}{c['outcome']:>12}")
print()
print(f"bare, sum of 6 runs:              {bare_sum:7.1f} s")
print(f"doctor repro --jobs 1, wall:      {wall1:7.1f} s  (fix_verified={j1['verdict']['fix_verified']})")
print(f"doctor repro (default, jobs {jd['jobs']}), wall: {walld:7.1f} s  (fix_verified={jd['verdict']['fix_verified']})")
print(f"doctor repro --jobs 2, wall:      {wall2:7.1f} s  (fix_verified={j2['verdict']['fix_verified']})")
over = (wall1 - bare_sum) / 6
print(f"supervision overhead per case (jobs 1 wall - bare sum) / 6: {over:+.2f} s ({100 * (wall1 - bare_sum) / bare_sum:+.1f}%)")
case_sum = sum(c["seconds"] for c in j1["cases"])
print(f"doctor's own bookkeeping per case (jobs 1 wall - sum of case seconds) / 6: {(wall1 - case_sum) / 6:+.2f} s")
PYEOF
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
