#!/usr/bin/env bash
# Holds 10,000 req/s against the zero-latency simulator? Prints one table row per run:
# achieved/target, P50/P99 from the intended and from the actual send time, send lateness,
# the generator's CPU.
#
#   benches/load_10k.sh                    # 15 s, 3 runs
#   DURATION=60s RUNS=1 benches/load_10k.sh   # the acceptance run
#   RATE=2000 DURATION=5s benches/load_10k.sh # the CI-sized smoke
source "$(dirname "${BASH_SOURCE[0]}")/load_common.sh"

RATE="${RATE:-10000}"
DURATION="${DURATION:-15s}"
CONNECTIONS="${CONNECTIONS:-32}"
RUNS="${RUNS:-3}"

build
start_sim --profile python
echo "simulator (python profile, no injected latency) at $SIM_URL; runs in $OUT" >&2
header
sim_cpu_before="$(cpu_seconds "$SIM_PID")"
for i in $(seq 1 "$RUNS"); do
    run_load "$OUT/run-$i" --target "$SIM_URL" --scenario "$SCENARIO" \
        --rate "$RATE" --duration "$DURATION" --connections "$CONNECTIONS" ${EXTRA:-}
    figures "$OUT/run-$i"
done
sim_cpu_after="$(cpu_seconds "$SIM_PID")"
echo "simulator CPU over all runs: $(echo "$sim_cpu_after - $sim_cpu_before" | bc) s" >&2
