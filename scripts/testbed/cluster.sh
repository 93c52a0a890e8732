#!/usr/bin/env bash
# The multi-node test bed: three nodes, each its own network, PID, UTS and mount namespace (as
# containers or cluster nodes are), joined by veth pairs on a bridge (10.78.0.1-3), running real
# `torchrun` (static or c10d rendezvous, gloo) with real ranks from the managed venv. For each
# scenario the nodes get fresh PID namespaces, the scenario is injected, `doctor report` is taken
# inside each node's namespaces (as `srun doctor report` or `kubectl exec` would) into
# OUT/SCENARIO/, and `doctor merge OUT/SCENARIO` writes OUT/SCENARIO/merge.json (its exit code in
# OUT/SCENARIO/merge.rc). Everything is torn down at the end, pass or fail: each node's PID
# namespace is ended by killing its init (the kernel kills every process in it), then the network
# namespaces (and their veths) are deleted. A bed killed with SIGKILL runs no trap: the next run
# removes what it left (its namespaces and every process in them) before it starts.
#
# usage: scripts/testbed/cluster.sh OUT SCENARIO...
#   healthy       static rendezvous, two nodes, ranks up
#   healthy-c10d  c10d rendezvous, two nodes, ranks up
#   leftover      a leftover TCPStore of an earlier job (run id job-old) holds the master port on node-a
#   foreign       another program (python -m http.server) holds the master port on node-a
#   wrongport     node-b started with MASTER_PORT + 1
#   wrongaddr     node-b started with MASTER_ADDR 10.78.0.9 (no such node)
#   missing       --nnodes 3, node-c never started
#   agentkilled   healthy start, then node-b's agent killed (SIGKILL)
#   duprank       both nodes started with --node-rank 0
# Exit: 0 when every scenario ran (the merges' own codes are in merge.rc), 3 when a facility is
# missing (root, ip, unshare, nsenter, the venv), 1 when the bed itself failed.
set -euo pipefail
out=${1:?usage: cluster.sh OUT SCENARIO...}; shift
root=$(cd "$(dirname "$0")/../.." && pwd)
doctor=${DOCTOR:-$root/target/debug/doctor}
venv=${DDP_DOCTOR_VENV:-$HOME/.cache/ddp-doctor/venv}
train=$root/tests/helpers/cluster_train.py
port=${PORT:-29577}
missing=()
[ "$(id -u)" = 0 ] || missing+=("root")
for t in ip unshare nsenter setsid; do command -v "$t" >/dev/null || missing+=("$t"); done
[ -x "$venv/bin/torchrun" ] || missing+=("torchrun in $venv (doctor repro --setup)")
[ -x "$doctor" ] || missing+=("$doctor (cargo build)")
if [ ${#missing[@]} -gt 0 ]; then echo "missing: ${missing[*]}" >&2; exit 3; fi
mkdir -p "$out"; out=$(cd "$out" && pwd); : >"$out/inits"
# The nodes' names, each node's /etc/hosts (bound over it in the node's mount namespace).
printf '127.0.0.1 localhost\n10.78.0.1 node-a\n10.78.0.2 node-b\n10.78.0.3 node-c\n' >"$out/hosts"

tag=$(printf '%x' $$)
sw=ddc${tag}s
names=(node-a node-b node-c)
declare -A ns init
cleanup() {
    set +e
    for n in "${names[@]}"; do halt "$n"; done
    for n in "${names[@]}"; do [ -n "${ns[$n]:-}" ] && ip netns del "${ns[$n]}" 2>/dev/null; done
    ip netns del "$sw" 2>/dev/null
    true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Leftovers of an earlier bed killed with SIGKILL (no trap ran): its network namespaces
# (ddc<TAG>s, ddc<TAG>1-3; TAG is the hex pid of its shell) when that shell is gone, and every
# process in them (the nodes' inits: killing one ends its PID namespace). A bed still running is
# left alone.
for old in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^ddc[0-9a-f]+[s1-9]$' || true); do
    t=${old#ddc}; t=${t%?}
    if tr '\0' ' ' <"/proc/$((16#$t))/cmdline" 2>/dev/null | grep -q 'testbed/cluster.sh'; then continue; fi
    pids=$(ip netns pids "$old" 2>/dev/null || true)
    for q in $pids; do kill -KILL "$q" 2>/dev/null || true; done
    for q in $pids; do for _ in $(seq 100); do [ -e "/proc/$q" ] || break; sleep 0.02; done; done
    ip netns del "$old" 2>/dev/null || true
done

if ! ip netns add "$sw" 2>/dev/null; then echo "missing: network namespaces (ip netns add)" >&2; exit 3; fi
ip -n "$sw" link add br0 type bridge
ip -n "$sw" link set br0 up
i=0
for n in "${names[@]}"; do
    i=$((i + 1))
    ns[$n]=ddc${tag}$i
    ip netns add "${ns[$n]}"
    ip link add "dc${tag}n$i" netns "${ns[$n]}" type veth peer name "dc${tag}s$i" netns "$sw"
    ip -n "$sw" link set "dc${tag}s$i" master br0 up
    ip -n "${ns[$n]}" link set "dc${tag}n$i" name eth0
    ip -n "${ns[$n]}" addr add "10.78.0.$i/24" dev eth0
    ip -n "${ns[$n]}" link set eth0 up
    ip -n "${ns[$n]}" link set lo up
done

# boot NAME: a fresh PID (+ UTS, mount) namespace in the node's network namespace; its init's
# host pid in init[NAME].
boot() {
    local n=$1 u c=""
    setsid ip netns exec "${ns[$n]}" unshare --pid --fork --mount-proc --uts --mount \
        sh -c "hostname $n && mount --bind $out/hosts /etc/hosts && exec sleep 100000" </dev/null >/dev/null 2>&1 &
    u=$!
    for _ in $(seq 200); do
        c=$(cat "/proc/$u/task/$u/children" 2>/dev/null || true)
        [ -n "$c" ] && [ "$(cat "/proc/${c%% *}/comm" 2>/dev/null)" = sleep ] && break
        sleep 0.02
    done
    init[$n]=${c%% *}
    [ -n "${init[$n]}" ] || { echo "cannot boot $n" >&2; exit 1; }
    echo "${init[$n]}" >>"$out/inits"
}
# halt NAME: end the node's PID namespace (killing its init kills every process in it), and wait
# until its init is gone.
halt() {
    local n=$1 p=${init[$1]:-}
    [ -n "$p" ] || return 0
    kill -KILL "$p" 2>/dev/null || true
    for _ in $(seq 100); do [ -e "/proc/$p" ] || break; sleep 0.02; done
    init[$n]=""
}

# on NAME CMD...: run CMD inside the node's namespaces (what srun or kubectl exec do).
on() {
    local n=$1; shift
    nsenter -t "${init[$n]}" --net --pid --uts --mount --wd="$root" -- \
        env PATH="$venv/bin:/usr/local/bin:/usr/bin:/bin" HOME="$HOME" GLOO_SOCKET_IFNAME=eth0 "$@"
}
# bg NAME LOG CMD...: the same in the background, logging to LOG.
bg() { local n=$1 log=$2; shift 2; on "$n" "$@" >"$log" 2>&1 </dev/null & }

wait_for() { # SECONDS CONDITION...
    local t=$1; shift
    for _ in $(seq $((t * 10))); do "$@" && return 0; sleep 0.1; done
    echo "timed out waiting for: $*" >&2
    return 1
}
ready() { # LOG: READY printed; a failure stops the bed at once
    grep -q READY "$1" 2>/dev/null && return 0
    if grep -q "FAILED\|Traceback" "$1" 2>/dev/null; then echo "failed: $1" >&2; tail -n 30 "$1" >&2; exit 1; fi
    return 1
}
# estab NAME PORT: a TCP connection of the node to a peer's PORT is established.
estab() { ip netns exec "${ns[$1]}" ss -Htn state established "( dport = :$2 )" | grep -q .; }
listening() { ip netns exec "${ns[$1]}" ss -Htln "( sport = :$2 )" | grep -q .; }
exited() { ! kill -0 "$1" 2>/dev/null; }

torchrun_on() { # NAME LOG NODE_RANK NNODES ADDR PORT [static|c10d]
    local n=$1 log=$2 nr=$3 nn=$4 addr=$5 p=$6 how=${7:-static} rdzv
    if [ "$how" = c10d ]; then
        rdzv=(--rdzv-backend=c10d --rdzv-endpoint="$addr:$p" --rdzv-id=job-77)
    else
        rdzv=(--node-rank="$nr" --master-addr="$addr" --master-port="$p")
    fi
    bg "$n" "$log" SLURM_JOB_ID=4242 torchrun --nnodes="$nn" --nproc-per-node=1 "${rdzv[@]}" \
        --rdzv-conf=timeout=300,join_timeout=300 --max-restarts=0 "$train"
    echo $!
}

report_all() { # DIR NAME...
    local d=$1; shift
    for n in "$@"; do
        on "$n" SLURM_JOB_ID=4242 MASTER_ADDR=10.78.0.1 MASTER_PORT=$port "$doctor" report \
            -o "$d/report-$n.yaml" -q || true
    done
}

run_scenario() {
    local s=$1 d=$out/$1 a b
    rm -rf "$d"; mkdir -p "$d"
    local t0=$SECONDS up=(node-a node-b)
    for n in node-a node-b; do boot "$n"; done
    case $s in
    healthy|healthy-c10d)
        local how=static; [ "$s" = healthy-c10d ] && how=c10d
        torchrun_on node-a "$d/a.log" 0 2 10.78.0.1 $port $how >/dev/null
        torchrun_on node-b "$d/b.log" 1 2 10.78.0.1 $port $how >/dev/null
        wait_for 90 ready "$d/a.log"; wait_for 30 ready "$d/b.log" ;;
    leftover)
        # An earlier job's rank 0, still up; started from outside the node's process groups.
        bg node-a "$d/old.log" TORCHELASTIC_RUN_ID=job-old RANK=0 LOCAL_RANK=0 WORLD_SIZE=2 \
            MASTER_ADDR=10.78.0.1 MASTER_PORT=$port SLURM_JOB_ID=4100 python "$train" store $port
        wait_for 60 ready "$d/old.log"
        a=$(torchrun_on node-a "$d/a.log" 0 2 10.78.0.1 $port)
        torchrun_on node-b "$d/b.log" 1 2 10.78.0.1 $port >/dev/null
        wait_for 60 exited "$a"; wait_for 60 estab node-b $port ;;
    foreign)
        bg node-a "$d/http.log" python3 -m http.server $port --bind 0.0.0.0
        wait_for 30 listening node-a $port
        a=$(torchrun_on node-a "$d/a.log" 0 2 10.78.0.1 $port)
        torchrun_on node-b "$d/b.log" 1 2 10.78.0.1 $port >/dev/null
        wait_for 60 exited "$a"; wait_for 60 estab node-b $port ;;
    wrongport)
        torchrun_on node-a "$d/a.log" 0 2 10.78.0.1 $port >/dev/null
        torchrun_on node-b "$d/b.log" 1 2 10.78.0.1 $((port + 1)) >/dev/null
        wait_for 60 listening node-a $port; sleep 3 ;;
    wrongaddr)
        torchrun_on node-a "$d/a.log" 0 2 10.78.0.1 $port >/dev/null
        torchrun_on node-b "$d/b.log" 1 2 10.78.0.9 $port >/dev/null
        wait_for 60 listening node-a $port; sleep 3 ;;
    missing)
        torchrun_on node-a "$d/a.log" 0 3 10.78.0.1 $port >/dev/null
        torchrun_on node-b "$d/b.log" 1 3 10.78.0.1 $port >/dev/null
        wait_for 60 estab node-b $port; sleep 1 ;;
    agentkilled)
        torchrun_on node-a "$d/a.log" 0 2 10.78.0.1 $port >/dev/null
        b=$(torchrun_on node-b "$d/b.log" 1 2 10.78.0.1 $port)
        wait_for 90 ready "$d/a.log"; wait_for 30 ready "$d/b.log"
        # The agent: below the background shell and nsenter, the process running torchrun.
        local agent=$b
        while ! tr '\0' ' ' <"/proc/$agent/cmdline" | grep -q "^[^ ]*python[^ ]* [^ ]*torchrun"; do
            agent=$(cut -d' ' -f1 "/proc/$agent/task/$agent/children")
        done
        kill -KILL "$agent"; sleep 1 ;;
    duprank)
        torchrun_on node-a "$d/a.log" 0 2 10.78.0.1 $port >/dev/null
        torchrun_on node-b "$d/b.log" 0 2 10.78.0.1 $port >/dev/null
        wait_for 60 listening node-a $port; wait_for 60 listening node-b $port; sleep 2 ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
    esac
    report_all "$d" "${up[@]}"
    local rc=0
    "$doctor" merge --format json "$d" >"$d/merge.json" 2>"$d/merge.err" || rc=$?
    echo "$rc" >"$d/merge.rc"
    NO_COLOR=1 "$doctor" merge --format table "$d" >"$d/merge.txt" 2>/dev/null || true
    for n in node-a node-b node-c; do halt "$n"; done
    echo "$s: merge exit $rc, $((SECONDS - t0)) s" >&2
}

echo "netns: $sw ${ns[*]}" >"$out/netns"
for s in "$@"; do run_scenario "$s"; done
