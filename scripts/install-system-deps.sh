#!/usr/bin/env bash
# Debian packages the test suite needs: a PostgreSQL server for the harness's second pass,
# Chromium and ChromeDriver for the browser tests (Playwright cannot download its own browser
# here), Redis, nginx, Prometheus and Alertmanager for the integration tests, and a font for screenshots.
#
# Checks what is already there first, so a second run installs nothing and takes no time.
# Needs root (or sudo) only when something is missing.
set -euo pipefail

log() { printf 'system-deps: %s\n' "$*"; }

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

missing=()

if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then missing+=(postgresql); fi
have chromium || missing+=(chromium)
have chromedriver || missing+=(chromium-driver)
have redis-server || missing+=(redis-server)
have nginx || missing+=(nginx-light)
have prometheus || missing+=(prometheus)
have prometheus-alertmanager || missing+=(prometheus-alertmanager)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)

# PostgreSQL refuses to run as root; the harness runs it as the `postgres` system user, which
# Debian's package creates. Binaries copied in without the package may lack it.
ensure_postgres_user() {
    if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
        log "creating the postgres system user"
        useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
}

if [ "${#missing[@]}" -eq 0 ]; then
    ensure_postgres_user
    log "all present (postgresql, chromium, chromium-driver, redis-server, nginx-light, prometheus, prometheus-alertmanager, fonts-dejavu-core)"
    exit 0
fi

log "missing: ${missing[*]}"

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    log "not root and no sudo: install these Debian packages as root, then run again:" >&2
    log "  apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    log "no apt-get here: install the equivalents of these Debian packages by hand: ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log "apt-get update"
"${as_root[@]}" apt-get update -qq
log "apt-get install ${missing[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
log "installed: ${missing[*]}"
ensure_postgres_user
