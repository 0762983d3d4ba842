#!/usr/bin/env bash
# Side by side with oha (`cargo install oha --locked`) at the same rate against the same
# zero-latency simulator, alternating runs (P99.9 varies 3-4x between identical runs on two
# shared cores, so compare over several).
#
# PLACEMENTS="same apart" runs each round once per placement, both generators pinned alike:
# `same` = simulator and generator on vCPU 0, `apart` = simulator on vCPU 0 and generator on
# vCPU 1 (see load_common.sh). Default: not pinned (the scheduler's placement). Each row
# names the hypervisor's steal during that run: a run with more than ~0.5 % was disturbed by
# the host, whichever tool ran.
source "$(dirname "${BASH_SOURCE[0]}")/load_common.sh"

RATE="${RATE:-10000}"
DURATION="${DURATION:-15s}"
CONNECTIONS="${CONNECTIONS:-32}"
RUNS="${RUNS:-3}"
OHA="${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}"
[[ -x "$OHA" ]] || { echo "oha not found: cargo install oha --locked" >&2; exit 1; }

build
start_sim --profile python
echo "simulator at $SIM_URL; runs in $OUT" >&2
PLACEMENTS="${PLACEMENTS:-free}"
# place PLACEMENT: sets SIM_CPUS/GEN_CPUS and moves every simulator thread accordingly.
place() {
    case "$1" in
        free) SIM_CPUS="" GEN_CPUS="" ;;
        same) SIM_CPUS=0 GEN_CPUS=0 ;;
        apart) SIM_CPUS=0 GEN_CPUS=1 ;;
        *) echo "PLACEMENTS: \`$1\` is not free, same or apart" >&2; exit 2 ;;
    esac
    taskset -a -pc "${SIM_CPUS:-$ALL_CPUS}" "$SIM_PID" >/dev/null
}
for i in $(seq 1 "$RUNS"); do
  for placement in $PLACEMENTS; do
    place "$placement"
    echo "round $i, placement $placement (simulator on ${SIM_CPUS:-any}, generators on ${GEN_CPUS:-any})"
    mark="$(steal_mark)"
    run_load "$OUT/shadowgate-$i-$placement" --target "$SIM_URL" --scenario "$SCENARIO" \
        --rate "$RATE" --duration "$DURATION" --connections "$CONNECTIONS"
    echo -n "shadowgate run $i ($placement, steal $(steal_since "$mark")): "
    figures "$OUT/shadowgate-$i-$placement"
    mark="$(steal_mark)"
    pinned "$GEN_CPUS" /usr/bin/time -f '%U %S %e' -o "$OUT/oha-$i-$placement.cpu" "$OHA" --no-tui --output-format json \
        -q "$RATE" -z "$DURATION" -c "$CONNECTIONS" --latency-correction \
        "$SIM_URL/health" >"$OUT/oha-$i-$placement.json"
    python3 - "$OUT/oha-$i-$placement.json" "$OUT/oha-$i-$placement.cpu" "$placement, steal $(steal_since "$mark")" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))
user, sys_, elapsed = (float(x) for x in open(sys.argv[2]).read().split())
p = o["latencyPercentiles"]
s = o["summary"]
n = sum(o.get("statusCodeDistribution", {}).values())
print(f"oha run ({sys.argv[3]}): {s['requestsPerSec']:.0f} req/s, P50 {p['p50'] * 1e6:.0f} µs, P99 {p['p99'] * 1e6:.0f} µs, "
      f"P99.9 {p['p99.9'] * 1e6:.0f} µs, CPU {100 * (user + sys_) / elapsed:.0f}% of a core, "
      f"{1e6 * (user + sys_) / max(n, 1):.1f} µs/request")
PY
  done
done
