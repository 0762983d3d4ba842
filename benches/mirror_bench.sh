#!/usr/bin/env bash
# Side-by-side benchmark of the shadow proxy (run by hand, release build; prints the tables
# for BENCHMARKS.md). Everything runs on this machine, on loopback:
#
#   two zero-latency python simulators (primary, candidate)
#   direct            load generator -> primary
#   mirror            load generator -> shadowgate mirror -> primary (+ shadow -> candidate)
#   mirror-noshadow   the same proxy hop with sampling at 0 % (what the hop alone costs)
#   nginx             load generator -> nginx 1.22 (`mirror /m;`, keepalive upstreams, one
#                     worker, no master process) -> primary (+ mirror -> candidate)
#   nginx-plain       the same nginx without `mirror` (healthy rounds only): what a plain
#                     proxy hop costs on this box, the floor for any mirroring proxy
#
# Fixed rates (RATES, default 2000 and 5000 req/s) use `shadowgate load` (open model, latency
# from the intended send time, 32 connections); the max rate uses wrk (closed model, -c32).
# Then the candidate is made slow (+100 ms), hanging (accepts, never answers) and refusing
# (closed port), at FAULT_RATE (default 2000 req/s) and at max rate. Every case runs RUNS times
# (default 3), the targets alternating within each round; tables show medians.
#
#   benches/mirror_bench.sh                       # everything (about 20 minutes)
#   RUNS=1 DURATION=5s benches/mirror_bench.sh     # a quick look
#   SKIP_FAULTS=1 benches/mirror_bench.sh          # healthy candidate only
#   NO_BUILD=1 OUT=/tmp/mb benches/mirror_bench.sh
#   MODE=p99 RUNS=5 benches/mirror_bench.sh        # only: does a faulty candidate move P99?
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/target/release/shadowgate}"
OUT="${OUT:-$(mktemp -d /tmp/shadowgate-mirror-bench.XXXXXX)}"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
RATES="${RATES:-2000 5000}"
FAULT_RATE="${FAULT_RATE:-2000}"
MAX_DURATION="${MAX_DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
FAULTS="${FAULTS:-slow hang refuse}"
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
mkdir -p "$OUT"
RESULTS="$OUT/results.tsv"
: >"$RESULTS"

if [[ "${NO_BUILD:-0}" != 1 ]]; then
    (cd "$ROOT" && cargo build --release -p shadowgate >&2)
fi
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }
[[ -x "$NGINX" ]] || { echo "nginx not found (apt-get install nginx)" >&2; exit 1; }

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# first_url LOG : waits (bounded) for a server's first stdout line and prints its first URL.
first_url() {
    local log="$1" url=""
    for _ in $(seq 1 100); do
        url="$(head -1 "$log" 2>/dev/null | grep -o 'http://[0-9.:]*' | head -1 || true)"
        [[ -n "$url" ]] && { echo "$url"; return; }
        sleep 0.1
    done
    echo "server did not start:" >&2
    cat "$log" >&2
    exit 1
}

# start_sim NAME ARGS... : sets SIM_URL.
start_sim() {
    local name="$1"
    shift
    "$BIN" sim --profile python --listen 127.0.0.1:0 "$@" >"$OUT/$name.log" 2>&1 &
    PIDS+=($!)
    SIM_URL="$(first_url "$OUT/$name.log")"
}

start_sim primary
PRIMARY="$SIM_URL"
start_sim candidate
CANDIDATE="$SIM_URL"
# nginx mirrors to a candidate of its own: it opens a connection per mirrored request, and
# the TIME_WAIT sockets and accept load that leaves behind must not land on the mirror's runs.
start_sim candidate-nginx
CANDIDATE_NGINX="$SIM_URL"
echo "primary $PRIMARY, candidates $CANDIDATE (mirror) $CANDIDATE_NGINX (nginx), results in $OUT" >&2

# The load scenario: one cheap read every gateway answers alike.
cat >"$OUT/health.load.toml" <<EOF
name = "mirror-bench"
description = "GET /health at a fixed rate"
rate = 1000
arrival = "fixed"
duration = "$DURATION"
warmup = "$WARMUP"
connections = $CONNECTIONS
timeout = "5s"
connect_timeout = "2s"

[[request]]
weight = 1
method = "GET"
path = "/health"
EOF
# Rules that mirror nothing (the proxy hop alone).
cat >"$OUT/noshadow.toml" <<'EOF'
[[routes]]
template = "/{*rest}"
sample_percent = 0
EOF

# The mirror's /summary, condensed to one note.
cat >"$OUT/shadow.py" <<'EOF'
import json, sys
s = json.load(sys.stdin)
sh, c = s["shadow"], s["connections"]
cov = s["coverage"]
print(";".join([
    f"coverage={'-' if cov is None else round(cov, 4)}",
    f"dropped={sh['dropped_budget']}",
    f"breaker_open={sh['breaker_open']}",
    f"timeouts={sh['timeout']}",
    f"connect_errors={sh['connect_error']}",
    f"candidate_conns_opened={c['candidate']}",
    f"primary_conns_opened={c['primary']}",
]))
EOF

# start_mirror CANDIDATE_URL ARGS... : sets PROXY_URL, ADMIN_URL, PROXY_PID.
start_mirror() {
    local cand="$1"
    shift
    local dir="$OUT/mirror-run-$RANDOM$RANDOM"
    "$BIN" mirror --primary "$PRIMARY" --candidate "$cand" --listen 127.0.0.1:0 \
        --admin 127.0.0.1:0 --out "$dir" "$@" >"$dir.log" 2>&1 &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    PROXY_URL="$(first_url "$dir.log")"
    ADMIN_URL="$(head -1 "$dir.log" | grep -o 'admin http://[0-9.:]*' | sed 's/admin //')"
}

# start_nginx CANDIDATE_URL [plain] : sets PROXY_URL, PROXY_PID. With "plain", no `mirror`
# (nginx as a plain reverse proxy: what any proxy hop costs on this box).
start_nginx() {
    local cand="${1#http://}" prim="${PRIMARY#http://}" mirror_line="mirror /m;"
    [[ "${2:-}" == plain ]] && mirror_line=""
    local dir="$OUT/nginx-$RANDOM$RANDOM"
    mkdir -p "$dir/logs" "$dir/tmp"
    local port
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $dir/logs/error.log warn;
pid $dir/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    upstream primary { server $prim; keepalive 64; }
    upstream candidate { server $cand; keepalive 64; }
    server {
        listen 127.0.0.1:$port;
        location / {
            $mirror_line
            proxy_pass http://primary;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location = /m {
            internal;
            proxy_pass http://candidate\$request_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 1s;
            proxy_read_timeout 2s;
            proxy_send_timeout 2s;
        }
    }
}
EOF
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    PROXY_URL="http://127.0.0.1:$port"
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "$PROXY_URL/health" && return
        sleep 0.1
    done
    echo "nginx did not start:" >&2
    cat "$dir/logs/error.log" >&2
    exit 1
}

stop_proxy() {
    kill -TERM "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
}

# candidate_conns : established connections to the candidate's port right now.
candidate_conns() {
    local port="${1##*:}"
    ss -Htn state established "( dport = :$port )" 2>/dev/null | wc -l
}

# candidate_time_wait : connections to the candidate closed in the last minute (churn).
candidate_time_wait() {
    local port="${1##*:}"
    ss -Htn state time-wait "( dport = :$port )" 2>/dev/null | wc -l
}

# cpu_seconds PID : user+system CPU seconds a process used so far.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

# record CASE TARGET RATE RUN ACHIEVED P50_US P99_US ERRORS EXTRA
record() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"
}

# fixed CASE TARGET URL RATE RUN [CAND_URL] : one fixed-rate load run.
fixed() {
    local case="$1" target="$2" url="$3" rate="$4" run="$5" cand="${6:-}"
    local dir="$OUT/load-$case-$target-$rate-$run"
    local cpu0=0
    [[ "$target" != direct ]] && cpu0="$(cpu_seconds "$PROXY_PID")"
    "$BIN" load --progress off --no-goose-reports --target "$url" --scenario "$OUT/health.load.toml" \
        --rate "$rate" --out "$dir" >"$dir.summary" 2>"$dir.stderr" || { cat "$dir.stderr" >&2; return 1; }
    local extra="-"
    if [[ "$target" != direct ]]; then
        # The proxy's CPU over the whole load run (warm-up included), per request sent.
        local cpu1 sent
        cpu1="$(cpu_seconds "$PROXY_PID")"
        sent="$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["extra"]; print(m["requests"]+m["sent_warmup"]+m["sent_tail"])' "$dir/manifest.json")"
        extra="proxy-cpu-us/req=$(echo "scale=1; 1000000 * ($cpu1 - $cpu0) / $sent" | bc)"
    fi
    if [[ -n "$cand" ]]; then
        extra="$extra;candidate-conns=$(candidate_conns "$cand");candidate-time-wait=$(candidate_time_wait "$cand")"
    fi
    if [[ "$target" == mirror* && -n "${ADMIN_URL:-}" ]]; then
        extra="$extra;$(curl -s "$ADMIN_URL/summary" | python3 "$OUT/shadow.py")"
    fi
    python3 - "$dir/manifest.json" "$case" "$target" "$rate" "$run" "$extra" >>"$RESULTS" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["extra"]
r = m.get("response") or {}
us = lambda v: "-" if v is None else f"{v / 1000:.0f}"
limited = "generator-limited" if m.get("generator_limited") else ""
extra = sys.argv[6] + (";" + limited if limited else "")
print("\t".join([sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5],
                 f"{m['achieved_rate']:.0f}", us(r.get("p50_ns")), us(r.get("p99_ns")),
                 str(m["errors"]), extra]))
PY
    tail -1 "$RESULTS" >&2
}

# maxrate CASE TARGET URL RUN : wrk, closed model, 32 connections.
maxrate() {
    local case="$1" target="$2" url="$3" run="$4"
    local out="$OUT/wrk-$case-$target-$run.txt"
    wrk -t1 -c"$CONNECTIONS" -d"$MAX_DURATION" --latency "$url/health" >"$out" 2>&1 || true
    local rps p50 p99 errs
    rps="$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$out")"
    p50="$(awk '$1=="50%" {print $2}' "$out")"
    p99="$(awk '$1=="99%" {print $2}' "$out")"
    errs="$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' "$out")"
    record "$case" "$target" max "$run" "${rps:-0}" "${p50:--}" "${p99:--}" "${errs:-0}" "wrk"
    tail -1 "$RESULTS" >&2
}

# One round of a case: direct, mirror, (mirror-noshadow), nginx, alternating.
round() {
    local case="$1" cand="$2" cand_nginx="$3" run="$4" rates="$5"
    for rate in $rates; do
        fixed "$case" direct "$PRIMARY" "$rate" "$run"
        start_mirror "$cand"
        fixed "$case" mirror "$PROXY_URL" "$rate" "$run" "$cand"
        stop_proxy
        if [[ "$case" == healthy ]]; then
            start_mirror "$cand" --rules "$OUT/noshadow.toml"
            fixed "$case" mirror-noshadow "$PROXY_URL" "$rate" "$run"
            stop_proxy
        fi
        ADMIN_URL=""
        start_nginx "$cand_nginx"
        fixed "$case" nginx "$PROXY_URL" "$rate" "$run" "$cand_nginx"
        stop_proxy
        if [[ "$case" == healthy ]]; then
            start_nginx "$cand_nginx" plain
            fixed "$case" nginx-plain "$PROXY_URL" "$rate" "$run"
            stop_proxy
        fi
    done
    maxrate "$case" direct "$PRIMARY" "$run"
    start_mirror "$cand"
    maxrate "$case" mirror "$PROXY_URL" "$run"
    stop_proxy
    ADMIN_URL=""
    start_nginx "$cand_nginx"
    maxrate "$case" nginx "$PROXY_URL" "$run"
    stop_proxy
}

if [[ "${MODE:-full}" == p99 ]]; then
    # Does a faulty candidate move the clients' P99? The mirror alone, every candidate state
    # in every round (interleaved, so background load on the box hits all alike).
    start_sim cand-slow --latency fixed:100ms
    slow="$SIM_URL"
    start_sim cand-hang --fault hang
    hang="$SIM_URL"
    refuse="http://127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    for run in $(seq 1 "$RUNS"); do
        for rate in $RATES; do
            fixed p99 direct "$PRIMARY" "$rate" "$run"
            for c in "healthy $CANDIDATE" "slow $slow" "hang $hang" "refuse $refuse"; do
                set -- $c
                start_mirror "$2"
                fixed "p99" "mirror-$1" "$PROXY_URL" "$rate" "$run"
                stop_proxy
            done
        done
    done
    python3 - "$RESULTS" <<'PY'
import sys, statistics, collections
g = collections.defaultdict(list)
for l in open(sys.argv[1]):
    case, target, rate, run, ach, p50, p99, errs, extra = l.rstrip("\n").split("\t")
    g[(rate, target)].append((float(ach), float(p50), float(p99), extra))
print("| rate | target | runs | achieved req/s | P50 µs | P99 µs | P99 vs healthy candidate | notes (last run) |")
print("|---|---|---|---|---|---|---|---|")
for rate in sorted({k[0] for k in g}, key=int):
    base = statistics.median(r[2] for r in g[(rate, "mirror-healthy")])
    for t in ("direct", "mirror-healthy", "mirror-slow", "mirror-hang", "mirror-refuse"):
        rows = g[(rate, t)]
        p99 = statistics.median(r[2] for r in rows)
        print(f"| {rate} | {t} | {len(rows)} | {statistics.median(r[0] for r in rows):,.0f} | "
              f"{statistics.median(r[1] for r in rows):,.0f} | {p99:,.0f} | "
              f"{'-' if t == 'direct' else f'{100 * (p99 / base - 1):+.0f} %'} | {rows[-1][3]} |")
PY
    exit 0
fi

for run in $(seq 1 "$RUNS"); do
    round healthy "$CANDIDATE" "$CANDIDATE_NGINX" "$run" "$RATES"
done

if [[ "${SKIP_FAULTS:-0}" != 1 ]]; then
    for fault in $FAULTS; do
        case "$fault" in
            slow)
                start_sim cand-slow --latency fixed:100ms; cand="$SIM_URL"
                start_sim cand-slow-nginx --latency fixed:100ms; cand_nginx="$SIM_URL"
                ;;
            hang)
                start_sim cand-hang --fault hang; cand="$SIM_URL"
                start_sim cand-hang-nginx --fault hang; cand_nginx="$SIM_URL"
                ;;
            refuse)
                cand="http://127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
                cand_nginx="$cand"
                ;;
            *) echo "unknown fault $fault" >&2; exit 1 ;;
        esac
        for run in $(seq 1 "$RUNS"); do
            round "$fault" "$cand" "$cand_nginx" "$run" "$FAULT_RATE"
        done
    done
fi

# Tables: medians per case/target/rate, added latency over direct.
python3 - "$RESULTS" <<'PY'
import sys, statistics, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
groups = collections.defaultdict(list)
for case, target, rate, run, ach, p50, p99, errs, extra in rows:
    groups[(case, rate, target)].append((ach, p50, p99, errs, extra))

def num(s):
    s = s.strip()
    for suf, mul in (("us", 1), ("ms", 1000), ("s", 1e6)):
        if s.endswith(suf):
            try:
                return float(s[: -len(suf)]) * mul
            except ValueError:
                return None
    try:
        return float(s)
    except ValueError:
        return None

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None

def fmt(v, nd=0):
    return "-" if v is None else f"{v:,.{nd}f}"

cases = []
for (case, rate, target) in groups:
    if (case, rate) not in cases:
        cases.append((case, rate))
print("| case | rate | target | runs | achieved req/s | P50 µs | P99 µs | +P50 µs vs direct | +P99 µs vs direct | errors | notes (last run) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for case, rate in cases:
    base = groups.get((case, rate, "direct"))
    b50 = med([num(r[1]) for r in base]) if base else None
    b99 = med([num(r[2]) for r in base]) if base else None
    for target in ("direct", "mirror-noshadow", "mirror", "nginx-plain", "nginx"):
        g = groups.get((case, rate, target))
        if not g:
            continue
        a = med([num(r[0]) for r in g])
        p50 = med([num(r[1]) for r in g])
        p99 = med([num(r[2]) for r in g])
        d50 = None if (p50 is None or b50 is None or target == "direct") else p50 - b50
        d99 = None if (p99 is None or b99 is None or target == "direct") else p99 - b99
        errs = ", ".join(r[3] for r in g)
        print(f"| {case} | {rate} | {target} | {len(g)} | {fmt(a)} | {fmt(p50)} | {fmt(p99)} | {fmt(d50)} | {fmt(d99)} | {errs} | {g[-1][4]} |")
PY
