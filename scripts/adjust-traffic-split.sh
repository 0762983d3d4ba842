#!/usr/bin/env bash
# Change the VeloZ rollout's nginx traffic split: the rollout plan's adjust_traffic_split.sh,
# built on `shadowgate nginx-config` (scenarios/nginx/README.md explains the config).
#
#   scripts/adjust-traffic-split.sh N      # N = percent of the traffic C++ serves, 0..100
#                                          # (rollout phases: 5, 25, 50, 100; 0 = none)
#
# Renders the split for N into $NGINX_CONF, runs `nginx -t`, and reloads nginx only when the
# test passes. On a failed test the previous file is put back and nginx is not reloaded.
#
# Environment:
#   NGINX_CONF   the rendered file (default /etc/nginx/conf.d/veloz-split.conf)
#   NGINX        the nginx binary (default: nginx on PATH, else /usr/sbin/nginx)
#   NGINX_ARGS   extra nginx arguments for both `-t` and `-s reload`, e.g.
#                "-p /srv/nginx -c /srv/nginx/nginx.conf" (default: the system config)
#   SHADOWGATE   the shadowgate binary (default: shadowgate on PATH)
#   SPLIT_ARGS   extra `nginx-config` arguments, e.g. "--header-switch --mirror 10.0.0.5:8000
#                --python http://10.0.0.3:8080 --cpp http://10.0.0.4:8081 --listen 80"
#
# Exit codes: 0 nginx reloaded with the new split; 1 `nginx -t` or the reload failed (the
# previous file is back in place); 2 bad N or a missing tool.
set -euo pipefail

usage() { echo "usage: $0 N   (N = percent of traffic to C++, 0..100)" >&2; exit 2; }
[ $# -eq 1 ] || usage
N="$1"
if ! [[ "$N" =~ ^[0-9]+$ ]] || [ "$N" -gt 100 ]; then
    echo "error: C++ weight '$N' is out of range: give a percentage from 0 to 100" >&2
    exit 2
fi

NGINX_CONF="${NGINX_CONF:-/etc/nginx/conf.d/veloz-split.conf}"
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
SHADOWGATE="${SHADOWGATE:-shadowgate}"
# Word splitting of the two argument lists is intended.
read -r -a nginx_args <<<"${NGINX_ARGS:-}"
read -r -a split_args <<<"${SPLIT_ARGS:-}"

[ -x "$NGINX" ] || { echo "error: nginx not found at $NGINX (set NGINX)" >&2; exit 2; }
command -v "$SHADOWGATE" >/dev/null 2>&1 \
    || { echo "error: shadowgate not found (set SHADOWGATE)" >&2; exit 2; }

dir="$(dirname "$NGINX_CONF")"
base="$(basename "$NGINX_CONF")"
# The new and the saved file are hidden and do not end in .conf, so a conf.d/*.conf include
# never picks them up.
new="$dir/.$base.new"
saved="$dir/.$base.previous"

"$SHADOWGATE" nginx-config --cpp-weight "$N" "${split_args[@]}" --out "$new" || {
    rm -f "$new"
    exit 2
}

had_previous=0
if [ -e "$NGINX_CONF" ]; then
    cp -p "$NGINX_CONF" "$saved"
    had_previous=1
fi
mv -f "$new" "$NGINX_CONF"

restore() {
    if [ "$had_previous" -eq 1 ]; then
        mv -f "$saved" "$NGINX_CONF"
        echo "the previous $NGINX_CONF is back in place; nginx was not reloaded" >&2
    else
        rm -f "$NGINX_CONF"
        echo "$NGINX_CONF removed; nginx was not reloaded" >&2
    fi
}

if ! "$NGINX" "${nginx_args[@]}" -t; then
    echo "error: nginx -t rejected the split for C++ weight $N" >&2
    restore
    exit 1
fi
if ! "$NGINX" "${nginx_args[@]}" -s reload; then
    echo "error: nginx -s reload failed (is nginx running with this config?)" >&2
    restore
    exit 1
fi
rm -f "$saved"
echo "nginx reloaded: $((100 - N)) % Python (through the mirror), $N % C++"
