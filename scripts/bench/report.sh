#!/usr/bin/env bash
# Time and peak memory of `doctor report` against `python -m torch.utils.collect_env`, run side by
# side (alternating) on this machine; prints per-run figures and the medians as a Markdown table.
#
# usage: scripts/bench/report.sh [RUNS] [EXTRA_PROCS]   (default 7 runs, 0 extra processes)
#        EXTRA_PROCS > 0 starts that many idle `sleep` processes first (a busy host), killed at exit
# env:   DOCTOR  the doctor binary   (default: $CARGO_TARGET_DIR or target, /release/doctor)
#        BASELINE another doctor binary run in the same alternation (before/after comparisons)
#        PY      the Python with torch (default: ~/.cache/ddp-doctor/venv/bin/python)
# needs: /usr/bin/time (Debian package `time`)
set -euo pipefail

RUNS=${1:-7}
EXTRA=${2:-0}
DOCTOR=${DOCTOR:-${CARGO_TARGET_DIR:-target}/release/doctor}
PY=${PY:-$HOME/.cache/ddp-doctor/venv/bin/python}
TIME=/usr/bin/time
BASELINE=${BASELINE:-}

[ -x "$TIME" ] || { echo "error: $TIME is missing" >&2; echo "hint: apt-get install time" >&2; exit 2; }
[ -x "$DOCTOR" ] || { echo "error: no doctor binary at $DOCTOR" >&2; echo "hint: cargo build --release, or DOCTOR=path" >&2; exit 2; }
[ -x "$PY" ] || { echo "error: no python at $PY" >&2; echo "hint: PY=/path/to/python-with-torch" >&2; exit 2; }

tmp=$(mktemp -d)
sleepers=()
cleanup() {
    for p in "${sleepers[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
for _ in $(seq 1 "$EXTRA"); do
    sleep 3600 &
    sleepers+=("$!")
done

# One measured run: prints "seconds max_rss_kib".
measure() {
    "$TIME" -v -o "$tmp/time.txt" "$@" >"$tmp/out.txt" 2>"$tmp/err.txt" || true
    awk -F': ' '
        /Elapsed \(wall clock\) time/ {
            n = split($2, t, ":"); s = 0
            for (i = 1; i <= n; i++) s = s * 60 + t[i]
            wall = s
        }
        /Maximum resident set size/ { rss = $2 }
        END { printf "%.3f %d\n", wall, rss }' "$tmp/time.txt"
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# Warm the page cache for both once, unmeasured.
"$DOCTOR" report --format yaml >/dev/null 2>&1 || true
"$PY" -m torch.utils.collect_env >/dev/null 2>&1 || true
[ -z "$BASELINE" ] || "$BASELINE" report --format yaml >/dev/null 2>&1 || true

: >"$tmp/doctor"; : >"$tmp/collect"; : >"$tmp/baseline"
echo "run  doctor_s  doctor_rss_kib  collect_env_s  collect_env_rss_kib${BASELINE:+  baseline_s  baseline_rss_kib}" >&2
for i in $(seq 1 "$RUNS"); do
    d=$(measure "$DOCTOR" report --format yaml)
    c=$(measure "$PY" -m torch.utils.collect_env)
    b=""
    [ -z "$BASELINE" ] || { b=$(measure "$BASELINE" report --format yaml); echo "$b" >>"$tmp/baseline"; }
    echo "$d" >>"$tmp/doctor"; echo "$c" >>"$tmp/collect"
    echo "$i    $d    $c    $b" >&2
done

procs=$(ls /proc | grep -c "^[0-9]")
dt=$(cut -d' ' -f1 "$tmp/doctor" | median); dm=$(cut -d' ' -f2 "$tmp/doctor" | median)
ct=$(cut -d' ' -f1 "$tmp/collect" | median); cm=$(cut -d' ' -f2 "$tmp/collect" | median)
echo
echo "$(nproc) CPUs, load average $(cut -d" " -f1-3 /proc/loadavg), ~${procs} processes, ${RUNS} runs each, medians (peak RSS: the largest process of the tree, from /usr/bin/time -v):"
echo
echo "| command | wall time (s) | peak RSS (MiB) |"
echo "|---|---|---|"
printf '| `doctor report --format yaml` | %s | %.1f |\n' "$dt" "$(echo "$dm / 1024" | bc -l)"
printf '| `python -m torch.utils.collect_env` | %s | %.1f |\n' "$ct" "$(echo "$cm / 1024" | bc -l)"
if [ -n "$BASELINE" ]; then
    bt=$(cut -d' ' -f1 "$tmp/baseline" | median); bm=$(cut -d' ' -f2 "$tmp/baseline" | median)
    printf '| baseline `%s report --format yaml` | %s | %.1f |\n' "$BASELINE" "$bt" "$(echo "$bm / 1024" | bc -l)"
fi
echo
printf 'ratio doctor/collect_env = %.3f\n' "$(echo "$dt / $ct" | bc -l)"
[ -z "$BASELINE" ] || printf 'ratio baseline/collect_env = %.3f\n' "$(echo "$bt / $ct" | bc -l)"
