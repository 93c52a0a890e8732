#!/usr/bin/env bash
# Two simulated nodes (network namespaces joined by a veth pair, 10.77.0.1 and 10.77.0.2) with
# rank processes set up for one scenario; takes `doctor report` in each and merges them.
# The examples in docs/findings/M0xx.md come from this script. Needs root, iproute2, util-linux.
#
# Exit: 0 with the merge printed (reports exit 1 when they find something; that is expected here).
# usage: scripts/demo/merge-netns.sh SCENARIO [OUTDIR]
#   ok         rank 0 listening on node-a, rank 1 on node-b connected to it
#   idle       rank 0 not listening (M002), other run id and SLURM job on node-b (M006), WORLD_SIZE 4 (M010)
#   wrongaddr  MASTER_ADDR names no node (M001), node-b uses another MASTER_PORT (M008)
#   dup        RANK 0 on both nodes (M004), another program holds the port on node-b (M003)
set -euo pipefail
scenario=${1:?scenario: ok, idle, wrongaddr or dup}
out=${2:-.}
doctor=${DOCTOR:-${CARGO_TARGET_DIR:-target}/debug/doctor}
helper=$(cd "$(dirname "$0")/../../tests/helpers" && pwd)/multinode.py
port=${PORT:-28123}
tag=$$
na=dd${tag}a nb=dd${tag}b
pgids=()
cleanup() {
    for g in "${pgids[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
    ip netns del "$na" 2>/dev/null || true
    ip netns del "$nb" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$na"; ip netns add "$nb"
ip link add "v${tag}a" type veth peer name "v${tag}b"
ip link set "v${tag}a" netns "$na"; ip link set "v${tag}b" netns "$nb"
ip -n "$na" addr add 10.77.0.1/24 dev "v${tag}a"; ip -n "$nb" addr add 10.77.0.2/24 dev "v${tag}b"
for n in a b; do ns=dd${tag}$n; ip -n "$ns" link set "v${tag}$n" up; ip -n "$ns" link set lo up; done

# start NS WHAT ENV...: a helper in its own session (process group), waits for READY.
start() {
    local ns=$1 what=$2; shift 2
    local log; log=$(mktemp)
    setsid ip netns exec "$ns" env "$@" python3 "$helper" "$what" "$port" >"$log" 2>&1 &
    pgids+=("$!")
    disown
    for _ in $(seq 100); do grep -q READY "$log" && break; sleep 0.05; done
}
job="WORLD_SIZE=2 TORCHELASTIC_RUN_ID=job-77 SLURM_JOB_ID=4242"
addr=10.77.0.1
case $scenario in
ok)
    start "$na" rank MASTER_ADDR=$addr MASTER_PORT=$port RANK=0 LOCAL_RANK=0 NODE_RANK=0 $job
    start "$nb" rank MASTER_ADDR=$addr MASTER_PORT=$port RANK=1 LOCAL_RANK=0 NODE_RANK=1 $job ;;
idle)
    start "$na" idle MASTER_ADDR=$addr MASTER_PORT=$port RANK=0 LOCAL_RANK=0 NODE_RANK=0 WORLD_SIZE=4 TORCHELASTIC_RUN_ID=job-77 SLURM_JOB_ID=4242
    start "$nb" idle MASTER_ADDR=$addr MASTER_PORT=$port RANK=1 LOCAL_RANK=0 NODE_RANK=1 WORLD_SIZE=4 TORCHELASTIC_RUN_ID=job-78 SLURM_JOB_ID=4243 ;;
wrongaddr)
    start "$na" idle MASTER_ADDR=10.77.0.9 MASTER_PORT=$port RANK=0 LOCAL_RANK=0 NODE_RANK=0 $job
    start "$nb" idle MASTER_ADDR=10.77.0.9 MASTER_PORT=$((port + 1)) RANK=1 LOCAL_RANK=0 NODE_RANK=1 $job ;;
dup)
    start "$na" rank MASTER_ADDR=$addr MASTER_PORT=$port RANK=0 LOCAL_RANK=0 NODE_RANK=0 $job
    start "$nb" rank MASTER_ADDR=$addr MASTER_PORT=$port RANK=1 LOCAL_RANK=0 NODE_RANK=1 $job
    start "$nb" idle MASTER_ADDR=$addr MASTER_PORT=$port RANK=0 LOCAL_RANK=1 NODE_RANK=0 $job
    start "$nb" listen ;;
*) echo "error: unknown scenario $scenario" >&2; exit 2 ;;
esac
slurm_b=4242; [ "$scenario" = idle ] && slurm_b=4243
ip netns exec "$na" unshare --uts sh -c "hostname node-a && SLURM_JOB_ID=4242 exec $doctor report -o $out/report-node-a.yaml" || true
ip netns exec "$nb" unshare --uts sh -c "hostname node-b && SLURM_JOB_ID=$slurm_b exec $doctor report -o $out/report-node-b.yaml" || true
"$doctor" merge --format table "$out/report-node-a.yaml" "$out/report-node-b.yaml" || true
