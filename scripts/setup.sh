#!/usr/bin/env bash
# Installs everything Firebreak needs into .venv. Idempotent: a second run with an
# unchanged pyproject.toml does nothing. Works as root and as a normal user.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP="$VENV/.firebreak-setup"

# Prefer the distribution's interpreter: it lives under /usr, so the unprivileged user that
# the lab runs PostgreSQL and Patroni as (when started by root) can execute the venv too.
# An interpreter under root's home (pyenv) would be unreadable for that user.
pick_python() {
    for p in "${FIREBREAK_PYTHON:-}" /usr/bin/python3 python3; do
        [ -n "$p" ] || continue
        command -v "$p" >/dev/null 2>&1 || continue
        if "$p" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            echo "$p"; return 0
        fi
    done
    return 1
}

apt_update() {
    # As root, refresh the package lists at most once a day; a normal user uses them as they are.
    [ "$(id -u)" -eq 0 ] || return 0
    if [ ! -f /var/lib/firebreak-apt-updated ] || [ -n "$(find /var/lib/firebreak-apt-updated -mmin +1440 2>/dev/null)" ]; then
        apt-get update -qq >/dev/null && touch /var/lib/firebreak-apt-updated
    fi
}

apt_install() {
    # Only root can install system packages; a normal user is told what is missing instead.
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing system packages: $*; ask an administrator to install them (apt-get install $*)" >&2
        return 1
    fi
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# promtool checks and tests the alert rules in deploy/prometheus/. Debian ships it only inside its
# prometheus package, and installing that enables and starts a Prometheus server on the machine.
# Instead the package is fetched, not installed (`apt-get download` needs no root), and promtool
# alone is taken out of it into .venv/bin: root and normal users alike, no service.
install_promtool() {
    [ -x "$VENV/bin/promtool" ] && return 0
    if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
        echo "setup: no apt-get/dpkg-deb here; put promtool in $VENV/bin for the alert-rule tests" >&2
        return 0
    fi
    apt_update
    local tmp
    tmp=$(mktemp -d)
    # As root, apt hands the download to its unprivileged _apt user, which must be able to write here.
    chmod 0755 "$tmp"
    if (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1) \
       && dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/pkg" && [ -x "$tmp/pkg/usr/bin/promtool" ]; then
        install -m 0755 "$tmp/pkg/usr/bin/promtool" "$VENV/bin/promtool.new"
        mv "$VENV/bin/promtool.new" "$VENV/bin/promtool"
    else
        echo "setup: could not fetch promtool (apt-get download prometheus); the alert-rule tests will skip" >&2
    fi
    rm -rf "$tmp"
}

PY=$(pick_python) || { echo "setup: Python 3.11 or newer is required (set FIREBREAK_PYTHON to its path)" >&2; exit 1; }

if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install python3-venv
fi

# System tools: the lab's network faults (nftables, iproute2), browser checks (chromium with a
# Korean font), the intake benchmark's load generator (wrk), the database doors (haproxy). Missing
# ones only matter for the features that use them. promtool: install_promtool, above.
# Debian puts nft and ip in /usr/sbin, which is not on a normal user's PATH: look there too.
have_tool() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
SYSTEM_PKGS=()
have_tool nft || SYSTEM_PKGS+=(nftables)
have_tool ip || SYSTEM_PKGS+=(iproute2)
have_tool chromium || SYSTEM_PKGS+=(chromium)
[ -d /usr/share/fonts/truetype/nanum ] || SYSTEM_PKGS+=(fonts-nanum)
have_tool wrk || SYSTEM_PKGS+=(wrk)
have_tool haproxy || SYSTEM_PKGS+=(haproxy)
if [ ${#SYSTEM_PKGS[@]} -gt 0 ]; then
    apt_install "${SYSTEM_PKGS[@]}" || echo "setup: continuing without ${SYSTEM_PKGS[*]}; features that need them will say so" >&2
fi

LOCK=requirements/dev.lock
want=$(cat pyproject.toml "$LOCK" | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
   && "$VENV/bin/python" -c 'import firebreak' 2>/dev/null; then
    install_promtool
    exit 0
fi

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
# Exact versions with hashes (scripts/lock.sh makes the lock from pyproject.toml): a machine set
# up next month gets what this one has. Then Firebreak itself, editable, without re-resolving.
"$VENV/bin/python" -m pip install -q --require-hashes -r "$LOCK"
"$VENV/bin/python" -m pip install -q --no-deps -e .
echo "$want" > "$STAMP"
install_promtool
echo "setup: .venv ready ($("$VENV/bin/python" --version)); CLI at $VENV/bin/firebreak"
