#!/usr/bin/env bash
# Benchmark `doctor scan` against `ruff check --select E9` (parse + syntax errors only) on the same
# files: torch + lightning from the managed venv. Median of 5 runs each; prints the ratio.
#
#   scripts/bench/scan.sh            # venv at ~/.cache/ddp-doctor/venv
#   DOCTOR_VENV=/path/to/venv RUNS=5 scripts/bench/scan.sh
#   DOCTOR_BASELINE=/path/to/older/doctor scripts/bench/scan.sh   # also time and count an older build
set -euo pipefail

RUNS="${RUNS:-5}"
VENV="${DOCTOR_VENV:-$HOME/.cache/ddp-doctor/venv}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "error: no managed venv at $VENV (the project's setup creates it)" >&2
    exit 2
fi
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
DIRS=()
for d in torch lightning lightning_fabric pytorch_lightning; do
    [[ -d "$SITE/$d" ]] && DIRS+=("$SITE/$d")
done

FILES=$(find "${DIRS[@]}" -name '*.py' -type f | wc -l)
LINES=$(find "${DIRS[@]}" -name '*.py' -type f -print0 | xargs -0 cat | wc -l)
BYTES=$(find "${DIRS[@]}" -name '*.py' -type f -print0 | xargs -0 cat | wc -c)
echo "corpus: ${DIRS[*]}"
echo "corpus: $FILES files, $LINES lines, $BYTES bytes of *.py"

# doctor, release build.
(cd "$ROOT" && cargo build --release --quiet 2>/dev/null) || { echo "error: cargo build --release failed" >&2; exit 2; }
DOCTOR="${CARGO_TARGET_DIR:-$ROOT/target}/release/doctor"
[[ "$DOCTOR" = /* ]] || DOCTOR="$ROOT/$DOCTOR"

# ruff: the one on PATH, else a throwaway venv.
RUFF="$(command -v ruff || true)"
if [[ -z "$RUFF" ]]; then
    python3 -m venv "$TMP/ruff-venv"
    "$TMP/ruff-venv/bin/pip" install --quiet ruff
    RUFF="$TMP/ruff-venv/bin/ruff"
fi
echo "ruff: $("$RUFF" --version)    doctor: $("$DOCTOR" --version)    cores: $(nproc)    load: $(cut -d' ' -f1-3 /proc/loadavg)"

DOCTOR_CMD="$DOCTOR scan --exit-zero --format json --python-version 3.11 --platform linux ${DIRS[*]}"
RUFF_CMD="$RUFF check --isolated --no-cache --select E9 --exit-zero --extend-exclude '*.pyi' --extend-exclude '*.ipynb' --output-format concise ${DIRS[*]}"

# Same files on both sides?
D_FILES=$($DOCTOR_CMD 2>/dev/null | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["files_scanned"])')
R_FILES=$(eval "$RUFF check --isolated --no-cache --select E9 --extend-exclude '*.pyi' --extend-exclude '*.ipynb' --show-files ${DIRS[*]}" | grep -c '\.py$' || true)
echo "files scanned: doctor $D_FILES, ruff $R_FILES"
# Findings by code: the prefilter (files naming none of scan::NEEDLES are not parsed) must not
# change them; compare with a run of an older build (DOCTOR_BASELINE=/path/to/doctor).
counts() { $1 scan --exit-zero --format json --python-version 3.11 --platform linux ${DIRS[*]} 2>/dev/null \
    | "$VENV/bin/python" -c 'import json,sys,collections; j=json.load(sys.stdin); d=j.get("findings", j.get("diagnostics", [])); print(dict(sorted(collections.Counter(x["code"] for x in d).items())))'; }
echo "findings: doctor $(counts "$DOCTOR")"
if [[ -n "${DOCTOR_BASELINE:-}" ]]; then
    echo "findings: baseline $(counts "$DOCTOR_BASELINE")"
fi
PARSED=$(find "${DIRS[@]}" -name '*.py' -type f -print0 | xargs -0 grep -l -E 'init_process_group|TCPStore|spawn|start_processes|elastic_launch|Accelerator|notebook_launcher|deepspeed|LightningCLI|Fabric|Trainer|cuda' | wc -l)
echo "files doctor parses (naming a rule's needle): $PARSED of $FILES"

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f\n", m}'; }

if command -v hyperfine >/dev/null; then
    BASE=()
    if [[ -n "${DOCTOR_BASELINE:-}" ]]; then
        BASE=(-n "baseline doctor scan" "${DOCTOR_CMD/#$DOCTOR/$DOCTOR_BASELINE} > /dev/null 2>&1")
    fi
    hyperfine --warmup 1 --runs "$RUNS" --style basic --export-json "$TMP/h.json" \
        -n "doctor scan" "$DOCTOR_CMD > /dev/null 2>&1" \
        -n "ruff check --select E9" "$RUFF_CMD > /dev/null 2>&1" "${BASE[@]}"
    read -r D R < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print(r[0]["median"], r[1]["median"])' "$TMP/h.json")
else
    run() { for _ in $(seq "$RUNS"); do s=$(date +%s.%N); eval "$1" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc -l; done | median; }
    eval "$DOCTOR_CMD" >/dev/null 2>&1; eval "$RUFF_CMD" >/dev/null 2>&1   # warm the page cache
    D=$(run "$DOCTOR_CMD"); R=$(run "$RUFF_CMD")
    if [[ -n "${DOCTOR_BASELINE:-}" ]]; then
        B=$(run "${DOCTOR_CMD/#$DOCTOR/$DOCTOR_BASELINE}")
        echo "median baseline doctor scan: $B s (current/baseline $(echo "$D / $B" | bc -l | cut -c1-5)x)"
    fi
fi
python3 - "$D" "$R" "$LINES" <<'PY'
import sys
d, r, lines = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
print(f"median doctor scan: {d:.3f} s ({lines / d / 1e6:.2f} M lines/s)")
print(f"median ruff E9:     {r:.3f} s ({lines / r / 1e6:.2f} M lines/s)")
print(f"ratio doctor/ruff:  {d / r:.2f}x")
PY
