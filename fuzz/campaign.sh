#!/usr/bin/env bash
# Runs the fuzz targets that have not yet had issue 16's share (10^8 runs or 12 hours of
# one core), one per core, and writes every run into fuzz/ledger.tsv, so that runs on
# different days and machines add up.
#
#   bash fuzz/campaign.sh [--jobs N] [--hours H] [TARGET...]
#
# Without targets it picks those still short of the goal in the ledger; `--hours` bounds
# each run (default 1), `--jobs` the runs at a time (default: the cores). A run stops
# at the goal, at its time bound, or at Ctrl-C / SIGTERM (libFuzzer prints its counts
# and the run is still recorded). Builds are `cargo +nightly fuzz run -O -a -s none`:
# optimized, debug assertions and overflow checks on, no sanitizer (25-40x the runs of
# AddressSanitizer; `ike` forbids unsafe code). The corpus grows in fuzz/corpus/TARGET;
# minimize it afterwards with `cargo +nightly fuzz cmin -O -a -s none TARGET`.
#
# `bash fuzz/campaign.sh --totals` prints each target's totals and stops.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
LEDGER=$HERE/ledger.tsv
GOAL_RUNS=100000000
GOAL_CPU_S=$((12 * 3600))
JOBS=$(nproc)
HOURS=1
TOTALS_ONLY=0
TARGETS=()

while [ $# -gt 0 ]; do
    case $1 in
    --jobs) JOBS=$2; shift 2 ;;
    --hours) HOURS=$2; shift 2 ;;
    --totals) TOTALS_ONLY=1; shift ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "campaign.sh: unknown option $1" >&2; exit 2 ;;
    *) TARGETS+=("$1"); shift ;;
    esac
done

all_targets() {
    (cd "$HERE/fuzz_targets" && ls ./*.rs | sed 's|^\./||; s|\.rs$||' | grep -vx common)
}

# TARGET -> "runs cpu_seconds" summed over the ledger.
totals() {
    awk -F'\t' -v t="$1" '!/^#/ && $2 == t { r += $3; c += $4 } END { printf "%d %d\n", r, c }' "$LEDGER"
}

short_of_goal() {
    local runs cpu
    read -r runs cpu < <(totals "$1")
    [ "$runs" -lt "$GOAL_RUNS" ] && [ "$cpu" -lt "$GOAL_CPU_S" ]
}

print_totals() {
    printf '%-18s %14s %10s  %s\n' target runs cpu_hours goal
    local t runs cpu done_
    for t in $(all_targets); do
        read -r runs cpu < <(totals "$t")
        if short_of_goal "$t"; then done_=no; else done_=yes; fi
        printf '%-18s %14d %10.1f  %s\n' "$t" "$runs" "$(awk -v c="$cpu" 'BEGIN { print c / 3600 }')" "$done_"
    done
}

if [ "$TOTALS_ONLY" = 1 ]; then
    print_totals
    exit 0
fi

command -v cargo-fuzz >/dev/null || {
    echo "campaign.sh: cargo-fuzz is missing (cargo install cargo-fuzz; rustup toolchain install nightly)" >&2
    exit 1
}
if [ ${#TARGETS[@]} -eq 0 ]; then
    for t in $(all_targets); do
        if short_of_goal "$t"; then TARGETS+=("$t"); fi
    done
fi
if [ ${#TARGETS[@]} -eq 0 ]; then
    echo "every target has had its share"
    print_totals
    exit 0
fi

cd "$HERE"
cargo +nightly fuzz build -O -a -s none
LOGS=$(mktemp -d /tmp/esprit-fuzz.XXXXXX)
echo "logs in $LOGS"
# Ctrl-C reaches the whole process group; SIGTERM is passed on to it as SIGINT, which
# libFuzzer answers by printing its counts.
trap 'trap "" INT TERM; kill -INT 0' INT TERM

# Runs one target to its goal or time bound and appends its line to the ledger.
run_one() {
    local t=$1 runs cpu left secs log start end rc outcome
    read -r runs cpu < <(totals "$t")
    left=$((GOAL_RUNS - runs))
    [ "$left" -gt 0 ] || left=-1 # named on the command line past its goal: no bound
    secs=$(awk -v h="$HOURS" 'BEGIN { printf "%d\n", h * 3600 }')
    if [ $((GOAL_CPU_S - cpu)) -gt 0 ] && [ $((GOAL_CPU_S - cpu)) -lt "$secs" ]; then
        secs=$((GOAL_CPU_S - cpu))
    fi
    log=$LOGS/$t.log
    start=$(date +%s)
    rc=0
    # CPU seconds come from the kernel's accounting of the child, not the wall clock,
    # so a paused (SIGSTOP) or starved run is not counted as fuzzing.
    /usr/bin/env bash -c 'cargo +nightly fuzz run -O -a -s none "$@"; rc=$?; times >&2; exit $rc' \
        _ "$t" -- -runs="$left" -max_total_time="$secs" -print_final_stats=1 \
        >"$log" 2>&1 || rc=$?
    end=$(date +%s)
    local n cpu_s
    n=$(awk '/^stat::number_of_executed_units:/ { print $2 }' "$log" | tail -n1)
    # `times` prints the shell's then its children's user and system time.
    cpu_s=$(tail -n1 "$log" | awk '{
        split($1, u, /m|s/); split($2, s, /m|s/); printf "%d\n", u[1] * 60 + u[2] + s[1] * 60 + s[2] }')
    if [ "$rc" = 0 ]; then
        outcome=ok
    elif grep -q 'libFuzzer: run interrupted' "$log"; then
        outcome=interrupted
    elif grep -q 'Test unit written to' "$log"; then
        outcome="crash:$(sed -n 's/.*Test unit written to \(.*\)/\1/p' "$log" | tail -n1)"
    else
        outcome="failed:rc=$rc"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "${n:-0}" "${cpu_s:-0}" \
        $((end - start)) "$outcome" "-O -a -s none" >>"$LEDGER"
    echo "$t: ${n:-0} runs, ${cpu_s:-0} CPU s, $outcome"
}

for t in "${TARGETS[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
    run_one "$t" &
done
wait || true
print_totals
