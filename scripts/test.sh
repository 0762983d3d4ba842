#!/usr/bin/env bash
# The one test command: installs what the tests need (Debian), then runs
# rustfmt, clippy and the whole workspace's tests, failing fast.
#
#   bash scripts/test.sh
#
# Honours CARGO_TARGET_DIR (keep a warm build cache between runs). System packages
# are installed only when missing; `apt-get update` runs at most once.
set -euo pipefail

cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
fi

APT_UPDATED=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: $* missing and apt-get is not available; install it by hand" >&2
        exit 1
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
        APT_UPDATED=1
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# need_pkg COMMAND [DEBIAN_PACKAGE]: install the package unless COMMAND is on PATH.
need_pkg() {
    local cmd="$1" pkg="${2:-$1}"
    if command -v "$cmd" >/dev/null 2>&1; then
        echo "ok: $cmd"
    else
        echo "installing $pkg (for $cmd)"
        apt_install "$pkg"
    fi
}

# need_pip MODULE PYPI_PACKAGE: make `python3 -c 'import MODULE'` work.
need_pip() {
    local module="$1" pkg="$2"
    if python3 -c "import $module" >/dev/null 2>&1; then
        echo "ok: python module $module"
        return
    fi
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
    echo "installing $pkg from PyPI (for python module $module)"
    # Debian's python is "externally managed" (PEP 668); fall back to the override there.
    python3 -m pip install --quiet "$pkg" \
        || python3 -m pip install --quiet --break-system-packages "$pkg"
    python3 -c "import $module"
}

step "system packages"
need_pkg python3
need_pip hdrh hdrhistogram   # the record crate's interop test reads .hlog files with it
need_pkg wrk                 # side-by-side benches only
need_pkg chromium            # the report crate opens report.html headless and checks a screenshot
need_pkg promtool prometheus # check-alerts test: promtool check rules on the shipped alerts
# nginx test (tests/nginx.rs): a real nginx split in front of the mirror, failover drill.
# Debian puts these in /usr/sbin, which is not on every user's PATH: check the full path.
need_pkg /usr/sbin/nginx nginx
need_pkg /usr/sbin/haproxy haproxy  # haproxy -c on scenarios/haproxy/veloz.cfg

if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    echo "CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
fi

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace"
cargo test --workspace

step "all checks passed"
