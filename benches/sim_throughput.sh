#!/usr/bin/env bash
# Throughput of `shadowgate sim` on GET /api/market, per profile, with zero injected latency.
#
#   benches/sim_throughput.sh            # build release, wrk -t1 -c64 -d10s, both profiles
#   DURATION=30s CONNECTIONS=128 benches/sim_throughput.sh
#   NO_BUILD=1 ROUNDS=3 benches/sim_throughput.sh
#
# wrk runs on the same machine as the simulator, so the figure is what one box can do with
# both; the simulator must not be the bottleneck of later load tests (target: >= 40k req/s
# on 2 cores). Authentication is switched off for the cpp profile (on by default there) so
# that both profiles answer 200. Each round starts a fresh simulator on 127.0.0.1:0, reads
# the bound address from its one stdout line, and stops it with SIGTERM.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/target/release/shadowgate}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-1}"
ROUNDS="${ROUNDS:-1}"
OUT="$(mktemp -d /tmp/shadowgate-sim-bench.XXXXXX)"

command -v wrk >/dev/null || {
    echo "wrk is not installed (apt-get install -y wrk)" >&2
    exit 2
}
if [[ "${NO_BUILD:-0}" != 1 ]]; then
    (cd "$ROOT" && cargo build --release -p shadowgate >&2)
fi

SIM_PID=""
stop_sim() {
    if [[ -n "$SIM_PID" ]]; then
        kill -TERM "$SIM_PID" 2>/dev/null || true
        wait "$SIM_PID" 2>/dev/null || true
        SIM_PID=""
    fi
}
trap stop_sim EXIT

# start_sim ARGS... : sets SIM_PID and SIM_URL from the simulator's first stdout line.
start_sim() {
    local log="$OUT/sim.$RANDOM.out"
    "$BIN" sim --listen 127.0.0.1:0 "$@" >"$log" 2>"$log.err" &
    SIM_PID=$!
    SIM_URL=""
    for _ in $(seq 1 100); do
        SIM_URL="$(head -1 "$log" 2>/dev/null | grep -o 'http://[0-9.:]*' || true)"
        [[ -n "$SIM_URL" ]] && return 0
        sleep 0.1
    done
    echo "the simulator did not start:" >&2
    cat "$log" "$log.err" >&2
    exit 1
}

printf '%-8s %-6s %12s %10s %10s %8s\n' profile round req/s p50 p99 non2xx
for profile in python cpp; do
    for round in $(seq 1 "$ROUNDS"); do
        args=(--profile "$profile")
        [[ "$profile" == cpp ]] && args+=(--auth off)
        start_sim "${args[@]}"
        out="$OUT/wrk.$profile.$round.txt"
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$SIM_URL/api/market" >"$out"
        stop_sim
        rps="$(awk '/^Requests\/sec:/ { print $2 }' "$out")"
        p50="$(awk '$1 == "50%" { print $2 }' "$out")"
        p99="$(awk '$1 == "99%" { print $2 }' "$out")"
        non2xx="$(awk '/Non-2xx/ { print $NF }' "$out")"
        printf '%-8s %-6s %12s %10s %10s %8s\n' "$profile" "$round" "$rps" "$p50" "$p99" "${non2xx:-0}"
    done
done
echo "(wrk -t$THREADS -c$CONNECTIONS -d$DURATION on $(nproc) cores; raw output in $OUT)"
