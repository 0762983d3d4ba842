#!/usr/bin/env bash
# Shared helpers for the load-generator benchmark scripts (sourced, not run).
#
# Runs on one machine: a release `shadowgate sim` on 127.0.0.1:0 and the release generator.
# Nothing here is a test: the scripts print figures for BENCHMARKS.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/target/release/shadowgate}"
OUT="${OUT:-$(mktemp -d /tmp/shadowgate-bench.XXXXXX)}"
SCENARIO="${SCENARIO:-$ROOT/scenarios/smoke.load.toml}"
# Optional CPU pinning (taskset lists, e.g. "0"): SIM_CPUS for the simulator, GEN_CPUS for
# the generators (ours and oha alike). On a VM whose idle vCPUs halt, whether generator and
# server share a vCPU moves every latency figure by tens of µs (a wake-up across vCPUs is an
# inter-processor interrupt, i.e. a VM exit); pinning makes that placement a chosen condition
# instead of the scheduler's draw. Empty = not pinned.
SIM_CPUS="${SIM_CPUS:-}"
GEN_CPUS="${GEN_CPUS:-}"

ALL_CPUS="0-$(($(nproc) - 1))"

# pinned CPUS CMD... : runs CMD on CPUS, a taskset list; on every CPU when CPUS is empty.
pinned() {
    local cpus="${1:-$ALL_CPUS}"
    shift
    taskset -c "$cpus" "$@"
}

build() {
    if [[ "${NO_BUILD:-0}" != 1 ]]; then
        (cd "$ROOT" && cargo build --release -p shadowgate >&2)
    fi
}

# start_sim ARGS... : starts a simulator, sets SIM_PID and SIM_URL.
start_sim() {
    local log="$OUT/sim.$$.$RANDOM.out"
    taskset -c "${SIM_CPUS:-$ALL_CPUS}" "$BIN" sim --listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
    SIM_PID=$!
    SIM_URL=""
    for _ in $(seq 1 100); do
        SIM_URL="$(head -1 "$log" 2>/dev/null | grep -o 'http://[0-9.:]*' || true)"
        [[ -n "$SIM_URL" ]] && break
        sleep 0.1
    done
    if [[ -z "$SIM_URL" ]]; then
        echo "the simulator did not start:" >&2
        cat "$log" >&2
        exit 1
    fi
}

stop_sim() {
    if [[ -n "${SIM_PID:-}" ]]; then
        kill "$SIM_PID" 2>/dev/null || true
        wait "$SIM_PID" 2>/dev/null || true
        SIM_PID=""
    fi
}
trap stop_sim EXIT

# cpu_seconds PID : user+system CPU seconds a process used so far.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

# steal_mark : "steal total" clock ticks of the machine and of each CPU so far (/proc/stat's
# cpu lines), on one line.
steal_mark() {
    awk '/^cpu/{ printf "%s %s ", $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}

# steal_since MARK : the share of the machine's CPU time the hypervisor took (steal) since
# MARK, in %, and in brackets the largest share of one CPU. A run with more than ~0.5 % of
# the machine, or 1 % of one vCPU (as much as the P99 tail), was disturbed by the host,
# whichever tool ran; the load generator marks its own run generator-limited from 1 % of a
# vCPU.
steal_since() {
    local now
    now="$(steal_mark)"
    echo "$1 | $now" | awk -F'|' '{
        n = split($1, a, " "); split($2, b, " ");
        worst = 0;
        for (i = 1; i < n; i += 2) {
            d = b[i + 1] - a[i + 1];
            s = (d > 0 ? 100 * (b[i] - a[i]) / d : 0);
            if (i == 1) machine = s; else if (s > worst) worst = s;
        }
        printf "%.2f %% (vCPU max %.2f %%)", machine, worst
    }'
}

# run_load DIR ARGS... : one generator run into DIR; records its CPU in DIR/cpu.txt
# ("user_s sys_s elapsed_s").
run_load() {
    local dir="$1"
    shift
    pinned "$GEN_CPUS" /usr/bin/time -f '%U %S %e' -o "$dir.cpu" \
        "$BIN" load --progress off --out "$dir" "$@" >"$dir.summary" 2>"$dir.stderr" || {
        cat "$dir.stderr" >&2
        return 1
    }
    mv "$dir.cpu" "$dir/cpu.txt"
}

# figures DIR [ANALYTIC_P99_NS] : one table row from a run directory's manifest.
figures() {
    python3 - "$@" <<'PY'
import json, sys
d = sys.argv[1]
m = json.load(open(f"{d}/manifest.json"))["extra"]
user, sys_, elapsed = (float(x) for x in open(f"{d}/cpu.txt").read().split())
sent = m["requests"] + m["sent_warmup"] + m["sent_tail"]
cpu = user + sys_
us = lambda p: "-" if p is None else f"{p / 1000:.0f}"
r, s, l = m["response"] or {}, m["service"] or {}, m["send_lateness"] or {}
cal = (m.get("calibration") or {}).get("response") or {}
row = [
    f"{m['target_rate']:.0f}",
    f"{m['achieved_rate'] / m['target_rate']:.4f}",
    us(r.get("p50_ns")), us(r.get("p99_ns")), us(r.get("p999_ns")),
    us(s.get("p50_ns")), us(s.get("p99_ns")),
    us(l.get("p50_ns")), us(l.get("p99_ns")),
    f"{100 * cpu / elapsed:.0f}%", f"{1e6 * cpu / max(sent, 1):.1f}",
    us(cal.get("p50_ns")), us(cal.get("p99_ns")),
    us((m.get("receive_delay") or {}).get("p50_ns")),
    "yes" if m["generator_limited"] else "no",
]
print("| " + " | ".join(row) + " |")
if m["generator_limited"]:
    for reason in m["generator_limited_reasons"]:
        print(f"  generator-limited: {reason}", file=sys.stderr)
PY
}

header() {
    echo "| target req/s | achieved/target | P50 µs (intended) | P99 µs | P99.9 µs | P50 µs (actual) | P99 µs | lateness P50 µs | P99 µs | generator CPU (of one core) | CPU µs/request | floor P50 µs | floor P99 µs | read after arrival P50 µs | generator-limited |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
}
