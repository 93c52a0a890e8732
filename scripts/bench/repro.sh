#!/usr/bin/env bash
# Benchmark of `doctor repro` (issue 3): wall time of the full 6-case CPU matrix (Fabric pair x
# spawn/fork/forkserver) with --jobs 1 and with the default concurrency, against the same six
# cases run bare as `python script.py ...` one after another, and the supervision overhead per
# case (each case run bare and under a one-case `doctor repro`, paired, two rounds). Not a test: figures depend on the machine. Results go to docs/performance.md by hand.
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
t2b=$t2

"$DOCTOR" repro --show fabric-buggy > "$WORK/fabric_buggy.py"
"$DOCTOR" repro --show fabric-fixed > "$WORK/fabric_fixed.py"
# Bare runs: the same command lines, each in a session of its own so that the orphans a failing
# run leaves behind (rank 1 of the buggy spawn/forkserver cases) can be cleaned up afterwards;
# the time is taken until the launcher exits. Paired with a one-case `doctor repro` run of the
# same case (whole doctor process: interpreter probe, supervision, leftover check), in two rounds
# with the order swapped (bare first, then doctor first), so that drifting machine load (other
# jobs) falls on both sides alike.
"$PY" - "$WORK" "$PY" "$DOCTOR" > "$WORK/bare.json" <<'PYEOF'
import json, os, signal, socket, subprocess, sys, time
work, py, doctor = sys.argv[1], sys.argv[2], sys.argv[3]
tag = f"BENCH_TAG=bench-{os.getpid()}"

def cleanup():
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            env_b = open(f"/proc/{pid}/environ", "rb").read()
        except OSError:
            continue
        if tag.encode() in env_b.split(b"\0"):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass

def bare(variant, ctx):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
               PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", BENCH_TAG=tag.split("=", 1)[1])
    argv = [py, f"{work}/fabric_{variant}.py", "--ctx", ctx, "--accelerator", "cpu", "--devices", "2"]
    t = time.monotonic()
    p = subprocess.Popen(argv, env=env, cwd=work, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    rc = p.wait(timeout=600)
    secs = time.monotonic() - t
    cleanup()
    return rc, secs

def supervised(variant, ctx):
    t = time.monotonic()
    out = subprocess.run([doctor, "repro", "--no-setup", "--accelerator", "cpu", "--jobs", "1",
                          "--ctx", ctx, "--variant", variant, "--format", "json"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    secs = time.monotonic() - t
    doc = json.loads(out.stdout)
    return doc["cases"][0]["outcome"], doc["cases"][0]["seconds"], secs

rows = []
for rnd in (0, 1):
    for ctx in ["spawn", "fork", "forkserver"]:
        for variant in ["buggy", "fixed"]:
            if rnd == 0:
                rc, b = bare(variant, ctx); time.sleep(0.5)
                outcome, case_s, d = supervised(variant, ctx); time.sleep(0.5)
            else:
                outcome, case_s, d = supervised(variant, ctx); time.sleep(0.5)
                rc, b = bare(variant, ctx); time.sleep(0.5)
            rows.append({"round": rnd, "variant": variant, "ctx": ctx, "bare_exit": rc,
                         "bare_s": round(b, 3), "doctor_wall_s": round(d, 3),
                         "doctor_case_s": case_s, "outcome": outcome})
print(json.dumps(rows))
PYEOF
t3=$(now)

"$PY" - "$WORK" "$t0" "$t1" "$t2" "$t2b" "$t3" <<'PYEOF'
import json, sys
work = sys.argv[1]
t0, t1, t2, t2b, t3 = map(float, sys.argv[2:])
j1 = json.load(open(f"{work}/jobs1.json"))
jd = json.load(open(f"{work}/default.json"))
bare = json.load(open(f"{work}/bare.json"))
wall1, walld, wall2 = t1 - t0, t2 - t1, t2b - t2
print()
print(f"{'case':<20}{'round':>6}{'bare s':>9}{'doctor s':>10}{'diff s':>8}  outcome")
for r in bare:
    print(f"{r['variant'] + ' ' + r['ctx']:<20}{r['round']:>6}{r['bare_s']:>9.2f}{r['doctor_wall_s']:>10.2f}{r['doctor_wall_s'] - r['bare_s']:>+8.2f}  {r['outcome']}")
bare_sum = sum(r["bare_s"] for r in bare)
doc_sum = sum(r["doctor_wall_s"] for r in bare)
n = len(bare)
print()
print(f"paired, {n} case runs: bare sum {bare_sum:.1f} s, doctor sum {doc_sum:.1f} s")
print(f"supervision overhead per case: {(doc_sum - bare_sum) / n:+.2f} s ({100 * (doc_sum - bare_sum) / bare_sum:+.1f}%)")
print()
print(f"full 6-case matrix, doctor repro --jobs 1, wall:   {wall1:6.1f} s  (fix_verified={j1['verdict']['fix_verified']})")
print(f"full 6-case matrix, default (jobs {jd['jobs']}), wall:     {walld:6.1f} s  (fix_verified={jd['verdict']['fix_verified']})")
print(f"bare, round-0 sum of the 6 cases (sequential):      {sum(r['bare_s'] for r in bare if r['round'] == 0):6.1f} s")
case_sum = sum(c["seconds"] for c in j1["cases"])
print(f"doctor's bookkeeping in the --jobs 1 matrix ((wall - sum of case seconds) / 6): {(wall1 - case_sum) / 6:+.2f} s per case")
PYEOF
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
