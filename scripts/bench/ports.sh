#!/usr/bin/env bash
# Benchmark `doctor ports` on a busy machine: start PROCS extra processes holding more than ten
# thousand TCP sockets (some carrying MASTER_PORT/LOCAL_RANK, as training ranks do), then time
# `doctor ports --all` against `ss -ltnp` and `lsof -nP -iTCP -sTCP:LISTEN`, interleaved, and print
# the medians side by side with the ratios. Before the load starts it also measures `doctor ports`
# on the idle machine: wall time and peak RSS (`/usr/bin/time -v`).
#
# Every helper process lives in one new session / process group; a trap kills that group (never
# anything by name) on EXIT, INT and TERM and checks that nothing of it is left.
#
# Knobs (environment): PROCS=1000 extra bulk processes, LISTEN_PER=9 listening sockets each (plus
# one connected pair, so LISTEN_PER+2 sockets each), JOBS=4 fake training jobs of RANKS=4 ranks,
# each rank with KIDS=2 fork children, RUNS=9 timed runs per command under load, IDLE_RUNS=9,
# LIFETIME=900 seconds after which every helper exits on its own even if this script is killed.
# BASELINE=/path/to/another/doctor adds that binary's `ports --all` to the same interleaved runs
# (e.g. a build of an earlier commit, for a before/after comparison). DOCTOR=/path/to/doctor
# measures that binary instead of building this tree's.
set -euo pipefail
export LC_ALL=C

PROCS=${PROCS:-1000}
LISTEN_PER=${LISTEN_PER:-9}
JOBS=${JOBS:-4}
RANKS=${RANKS:-4}
KIDS=${KIDS:-2}
RUNS=${RUNS:-9}
IDLE_RUNS=${IDLE_RUNS:-9}
LIFETIME=${LIFETIME:-900}
BASELINE=${BASELINE:-}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "error: $1 not found" >&2
        echo "hint: apt-get install -y $2" >&2
        exit 2
    }
}
need python3 python3
need ss iproute2
need lsof lsof
[[ -x /usr/bin/time ]] || {
    echo "error: /usr/bin/time not found" >&2
    echo "hint: apt-get install -y time" >&2
    exit 2
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/doctor-bench.XXXXXX")
LOAD_PID=""
LOAD_PGID=""
TIMEIT_PID=""
MY_PGID=$(ps -o pgid= -p $$ | tr -d ' ')

# Processes (pid) whose process group is $1, zombies included.
group_members() {
    local pgid=$1 f rest
    for f in /proc/[0-9]*/stat; do
        read -r rest 2>/dev/null <"$f" || continue
        rest=${rest##*") "}
        # rest: state ppid pgrp ...
        set -- $rest
        [[ "${3:-}" == "$pgid" ]] && { f=${f#/proc/}; echo "${f%/stat}"; }
    done
    return 0
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n "$TIMEIT_PID" ]] && kill "$TIMEIT_PID" 2>/dev/null
    if [[ -n "$LOAD_PGID" && "$LOAD_PGID" != "$MY_PGID" && "$LOAD_PGID" -gt 1 ]]; then
        kill -TERM -- "-$LOAD_PGID" 2>/dev/null || true
        # The load's main process is a subreaper: it reaps every helper, then exits.
        for _ in $(seq 1 100); do
            [[ -z "$(group_members "$LOAD_PGID")" ]] && break
            sleep 0.1
        done
        if [[ -n "$(group_members "$LOAD_PGID")" ]]; then
            kill -KILL -- "-$LOAD_PGID" 2>/dev/null || true
            sleep 1
        fi
    elif [[ -n "$LOAD_PID" ]]; then
        kill -TERM "$LOAD_PID" 2>/dev/null || true
    fi
    [[ -n "$LOAD_PID" ]] && wait "$LOAD_PID" 2>/dev/null || true
    if [[ -n "$LOAD_PGID" ]]; then
        local left
        left=$(group_members "$LOAD_PGID" | wc -l)
        echo "cleanup: killed process group $LOAD_PGID; processes left in it: $left" >&2
        [[ "$left" -eq 0 ]] || rc=3
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
if [[ -n "${DOCTOR:-}" ]]; then
    echo "== build: skipped, DOCTOR=$DOCTOR given"
else
    echo "== build"
    . scripts/bench/lib.sh
    DOCTOR=$(release_doctor)
fi
[[ -x "$DOCTOR" ]] || { echo "error: $DOCTOR not built" >&2; exit 2; }
echo "doctor: $DOCTOR"

# Timing: runs commands round-robin (the order rotates every round, after one warm-up round that
# is not counted), each with stdout and stderr to /dev/null; wall time from a monotonic clock
# around fork..wait4, CPU time (user+sys) from the child's rusage. Exit status must be 0 or 1
# (doctor exits 1 when it finds something). Prints one line per command:
#   name median_wall_s min_wall_s max_wall_s median_cpu_s
cat >"$WORK/timeit.py" <<'PY'
import json, os, statistics, subprocess, sys, time
runs = int(sys.argv[1])
specs = [(sys.argv[i], json.loads(sys.argv[i + 1])) for i in range(2, len(sys.argv), 2)]
null = os.open(os.devnull, os.O_RDWR)

def once(argv):
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=null, stdout=null, stderr=null)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = rc = os.waitstatus_to_exitcode(status)
    if rc not in (0, 1):
        sys.exit(f"error: {' '.join(argv)} exited {rc}")
    return wall, ru.ru_utime + ru.ru_stime

for _, argv in specs:
    once(argv)
wall = {n: [] for n, _ in specs}
cpu = {n: [] for n, _ in specs}
for i in range(runs):
    for k in range(len(specs)):
        name, argv = specs[(i + k) % len(specs)]
        w, c = once(argv)
        wall[name].append(w)
        cpu[name].append(c)
for name, _ in specs:
    w = wall[name]
    print(name, f"{statistics.median(w):.4f} {min(w):.4f} {max(w):.4f} {statistics.median(cpu[name]):.4f}")
PY
timeit() { python3 "$WORK/timeit.py" "$@"; }
json_argv() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$@"; }

peak_rss_kb() {
    /usr/bin/time -v -o "$WORK/time.txt" "$@" >/dev/null 2>&1 || true
    awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt"
}

machine_facts() {
    echo "cores: $(nproc); kernel: $(uname -r); $(grep -m1 'model name' /proc/cpuinfo | sed 's/\t//')"
    echo "processes on the machine: $(ls -d /proc/[0-9]* | wc -l); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "sockets: $(ss -s | sed -n '1p;2p' | tr '\n' ' ')"
}

# ---------------------------------------------------------------------------------------------
echo
echo "== idle: doctor ports ($IDLE_RUNS runs)"
machine_facts
read -r _ idle_med idle_min idle_max idle_cpu <<<"$(timeit "$IDLE_RUNS" doctor "$(json_argv "$DOCTOR" ports)")"
idle_rss=()
for _ in $(seq 1 "$IDLE_RUNS"); do
    idle_rss+=("$(peak_rss_kb "$DOCTOR" ports)")
done
rss_sorted=($(printf '%s\n' "${idle_rss[@]}" | sort -n))
idle_rss_med=${rss_sorted[$((${#rss_sorted[@]} / 2))]}
idle_rss_max=${rss_sorted[-1]}
printf 'idle doctor ports: median %.4f s (min %.4f, max %.4f; CPU median %.4f s); peak RSS median %d KiB, max %d KiB\n' \
    "$idle_med" "$idle_min" "$idle_max" "$idle_cpu" "$idle_rss_med" "$idle_rss_max"

# ---------------------------------------------------------------------------------------------
cat >"$WORK/load.py" <<'PY'
"""Load for the benchmark: fake training ranks plus PROCS bulk processes holding sockets."""
import ctypes, gc, json, os, select, signal, socket, subprocess, sys, time

def pause_forever():
    while True:
        signal.pause()

def listeners(n):
    out = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        out.append(s)
    return out

def connected_pair(listener):
    c = socket.create_connection(listener.getsockname())
    a, _ = listener.accept()
    return [c, a]

def rank(lifetime, kids, listen_per):
    """A training rank: env carries MASTER_PORT etc.; rank 0 listens on it, the others connect."""
    signal.alarm(lifetime)
    port = int(os.environ["MASTER_PORT"])
    held = []
    if os.environ["RANK"] == "0":
        store = socket.socket()
        store.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        store.bind(("127.0.0.1", port))
        store.listen(64)
        held.append(store)
    else:
        held.append(socket.create_connection(("127.0.0.1", port)))
    held += listeners(listen_per)
    r, w = os.pipe()
    for _ in range(kids):  # fork children (DataLoader-worker-like); they inherit the sockets
        if os.fork() == 0:
            os.close(r)
            mine = listeners(2)
            os.write(w, b".")
            pause_forever()
    os.close(w)
    got = 0
    while got < kids:
        got += len(os.read(r, kids))
    print("ready", flush=True)
    if os.environ["RANK"] == "0":
        import threading
        def accept_loop():
            while True:
                held.append(store.accept()[0])
        threading.Thread(target=accept_loop, daemon=True).start()
    pause_forever()

def bulk_child(w, lifetime, listen_per):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(lifetime)
    gc.disable()
    try:
        socks = listeners(listen_per)
        socks += connected_pair(socks[0])
        os.write(w, b".")
    except Exception as e:
        os.write(w, b"E")
        sys.stderr.write(f"bulk child {os.getpid()}: {e}\n")
        os._exit(1)
    os.close(w)
    pause_forever()

def group_count(pgid):
    procs = 0
    fds = 0
    inodes = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                st = f.read()
            if int(st[st.rindex(b")") + 2:].split()[2]) != pgid:
                continue
            procs += 1
            for fd in os.listdir(f"/proc/{d}/fd"):
                try:
                    t = os.readlink(f"/proc/{d}/fd/{fd}")
                except OSError:
                    continue
                if t.startswith("socket:["):
                    fds += 1
                    inodes.add(t)
        except (OSError, ValueError):
            continue
    return procs, fds, len(inodes)

def main(procs, listen_per, jobs, ranks, kids, lifetime, ready_file):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans of our ranks come back to us
    children = []

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.killpg(0, signal.SIGTERM)  # our own (new) group: ranks' fork children included
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:  # reap everything, grandchildren included (we are their subreaper)
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(lifetime + 5)

    # Fake jobs: JOBS jobs of RANKS ranks each, each with its own MASTER_PORT.
    rank_procs = []
    for j in range(jobs):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        for r in range(ranks):
            env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                       WORLD_SIZE=str(ranks), RANK=str(r), LOCAL_RANK=str(r), NODE_RANK="0",
                       TORCHELASTIC_RUN_ID=f"bench-job-{j}")
            p = subprocess.Popen([sys.executable, __file__, "rank", str(lifetime), str(kids),
                                  str(listen_per)], env=env, stdout=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL)
            children.append(p.pid)
            rank_procs.append(p)
            if p.stdout.readline().strip() != b"ready":
                raise SystemExit(f"rank {r} of job {j} failed")

    # Bulk: fork PROCS children from this one interpreter (cheap: copy-on-write, gc frozen).
    gc.collect()
    gc.freeze()
    r, w = os.pipe()
    errors = 0
    for _ in range(procs):
        pid = os.fork()
        if pid == 0:
            os.close(r)
            bulk_child(w, lifetime, listen_per)
        children.append(pid)
    os.close(w)
    got = 0
    deadline = time.time() + 300
    while got < procs and time.time() < deadline:
        if select.select([r], [], [], 5)[0]:
            data = os.read(r, 65536)
            if not data:
                break
            got += len(data)
            errors += data.count(b"E")
    time.sleep(0.5)  # let rank 0 accept its connections
    n_procs, n_fds, n_socks = group_count(os.getpgid(0))
    info = dict(pgid=os.getpgid(0), sid=os.getsid(0), procs=n_procs, socket_fds=n_fds,
                sockets=n_socks, bulk_ready=got - errors, errors=errors,
                rank_procs=jobs * ranks, rank_kids=jobs * ranks * kids)
    with open(ready_file + ".tmp", "w") as f:
        json.dump(info, f)
    os.rename(ready_file + ".tmp", ready_file)
    pause_forever()

if __name__ == "__main__":
    if sys.argv[1] == "rank":
        rank(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        main(*map(int, sys.argv[1:7]), sys.argv[7])
PY

echo
echo "== load: $PROCS bulk processes x ($LISTEN_PER listening + 2 connected) sockets," \
    "$JOBS jobs x $RANKS ranks x $KIDS fork children"
for k in MASTER_PORT MASTER_ADDR LOCAL_RANK RANK WORLD_SIZE NODE_RANK TORCHELASTIC_RUN_ID; do
    unset "$k"
done
t_load=$EPOCHREALTIME
setsid -w python3 "$WORK/load.py" "$PROCS" "$LISTEN_PER" "$JOBS" "$RANKS" "$KIDS" "$LIFETIME" \
    "$WORK/ready.json" </dev/null >/dev/null 2>"$WORK/load.err" &
LOAD_PID=$!
# The session id is the python process's pid (setsid only forks when it would be a group leader,
# and -w then waits for it); take the group from what the load reports.
for _ in $(seq 1 1200); do
    [[ -s "$WORK/ready.json" ]] && break
    kill -0 "$LOAD_PID" 2>/dev/null || { cat "$WORK/load.err" >&2; echo "error: load died" >&2; exit 2; }
    sleep 0.25
done
[[ -s "$WORK/ready.json" ]] || { echo "error: load not ready" >&2; exit 2; }
read -r LOAD_PGID n_procs n_fds n_socks n_err <<<"$(python3 -c '
import json,sys; d=json.load(open(sys.argv[1]))
print(d["pgid"], d["procs"], d["socket_fds"], d["sockets"], d["errors"])' "$WORK/ready.json")"
[[ "$LOAD_PGID" != "$MY_PGID" ]] || { echo "error: load shares our process group" >&2; exit 2; }
printf 'load ready in %.1f s: process group %s holds %s processes, %s distinct sockets (%s socket fds), %s errors\n' \
    "$(awk "BEGIN{print (${EPOCHREALTIME/./} - ${t_load/./})/1e6}")" "$LOAD_PGID" "$n_procs" "$n_socks" "$n_fds" "$n_err"
[[ "$n_err" -eq 0 ]] || { cat "$WORK/load.err" >&2; exit 2; }
machine_facts
free -m | sed -n 2p | awk '{print "memory: used " $3 " MiB of " $2 " MiB"}'

# Same answer? Listening TCP sockets seen by ss and by doctor (distinct inodes, with a holder).
ss_listen=$(ss -Hltn | wc -l)
"$DOCTOR" ports --all --format json >"$WORK/ports.json" 2>/dev/null || true
doc_listen=$(python3 -c '
import json,sys; d=json.load(sys.stdin)
rows=[h for h in d["holders"] if h["proto"]=="tcp" and h["state"]=="LISTEN"]
print(len({h["inode"] for h in rows}), len({h["inode"] for h in rows if h["pid"] is not None}), len(d["findings"]))' <"$WORK/ports.json")
echo "listening TCP sockets: ss -ltn $ss_listen; doctor ports --all (sockets, with holder, findings): $doc_listen"

# ---------------------------------------------------------------------------------------------
echo
echo "== under load: $RUNS runs each, interleaved (order rotates every round; one uncounted warm-up round)"
extra=()
# With a baseline, both builds' `snapshot` too: the observation alone (the /proc walk and the
# socket tables), which never inspects anyone's hung ranks (`ports` runs py-spy on the ranks of
# any job on the machine that looks stuck at rendezvous, including other people's).
[[ -n "$BASELINE" ]] && extra=(baseline "$(json_argv "$BASELINE" ports --all)"
    snap "$(json_argv "$DOCTOR" snapshot --format json)"
    base_snap "$(json_argv "$BASELINE" snapshot --format json)")
# In the background so that INT/TERM reach the trap at once (bash defers traps while a
# foreground command runs); the trap then stops the runner by its pid.
timeit "$RUNS" \
    doctor "$(json_argv "$DOCTOR" ports --all)" \
    ss "$(json_argv ss -ltnp)" \
    lsof "$(json_argv lsof -nP -iTCP -sTCP:LISTEN)" "${extra[@]}" >"$WORK/times.txt" &
TIMEIT_PID=$!
wait "$TIMEIT_PID"
TIMEIT_PID=""
read -r _ d_med d_min d_max d_cpu < <(grep '^doctor ' "$WORK/times.txt")
read -r _ s_med s_min s_max s_cpu < <(grep '^ss ' "$WORK/times.txt")
read -r _ l_med l_min l_max l_cpu < <(grep '^lsof ' "$WORK/times.txt")
printf '%-30s %9s %9s %9s %9s\n' command median_s min_s max_s cpu_med_s
printf '%-30s %9.4f %9.4f %9.4f %9.4f\n' "doctor ports --all" "$d_med" "$d_min" "$d_max" "$d_cpu"
printf '%-30s %9.4f %9.4f %9.4f %9.4f\n' "ss -ltnp" "$s_med" "$s_min" "$s_max" "$s_cpu"
printf '%-30s %9.4f %9.4f %9.4f %9.4f\n' "lsof -nP -iTCP -sTCP:LISTEN" "$l_med" "$l_min" "$l_max" "$l_cpu"
if [[ -n "$BASELINE" ]]; then
    read -r _ b_med b_min b_max b_cpu < <(grep '^baseline ' "$WORK/times.txt")
    printf '%-30s %9.4f %9.4f %9.4f %9.4f\n' "baseline ports --all" "$b_med" "$b_min" "$b_max" "$b_cpu"
    for k in snap base_snap; do
        read -r _ x_med x_min x_max x_cpu < <(grep "^$k " "$WORK/times.txt")
        printf '%-30s %9.4f %9.4f %9.4f %9.4f\n' "$k (snapshot --format json)" "$x_med" "$x_min" "$x_max" "$x_cpu"
    done
    echo "baseline: $BASELINE"
    awk -v d="$d_med" -v b="$b_med" -v dc="$d_cpu" -v bc="$b_cpu" 'BEGIN {
        printf "ratio doctor/baseline ports --all = %.3f (wall) %.3f (CPU)\n", d/b, dc/bc }'
    awk -v d="$(grep '^snap ' "$WORK/times.txt" | cut -d' ' -f2)" -v b="$(grep '^base_snap ' "$WORK/times.txt" | cut -d' ' -f2)" 'BEGIN {
        printf "ratio doctor/baseline snapshot = %.3f (wall)\n", d/b }' 
fi
awk -v d="$d_med" -v s="$s_med" -v l="$l_med" -v dc="$d_cpu" -v sc="$s_cpu" -v lc="$l_cpu" 'BEGIN {
    printf "ratio doctor/ss = %.2f   doctor/lsof = %.2f   (wall medians)\n", d/s, d/l
    printf "ratio doctor/ss = %.2f   doctor/lsof = %.2f   (CPU medians, user+sys)\n", dc/sc, dc/lc }'
load_rss=$(peak_rss_kb "$DOCTOR" ports --all)
echo "doctor ports --all peak RSS under load: $load_rss KiB"
echo
echo "summary: idle_median_s=$idle_med idle_peak_rss_kib=$idle_rss_med load_procs=$n_procs" \
    "load_sockets=$n_socks doctor_s=$d_med ss_s=$s_med lsof_s=$l_med" \
    "doctor_cpu_s=$d_cpu ss_cpu_s=$s_cpu lsof_cpu_s=$l_cpu"
