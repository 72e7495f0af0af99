# tools/lib.sh: shared helpers for tools/run, tools/test and tools/bench.
# Sourced, not executed. Everything here works from any current directory:
# the repository root is derived from this file's location.
#
# Functions:
#   ensure_packages [extra-package...]   install what is missing (apt, as root)
#   ensure_npm_tools                     hook for npm test tools (s3rver, later)
#   build DIR [configure args...]        autoreconf if needed, out-of-tree build
#   ensure_secret FILE                   a random 32-byte hex secret in FILE
#                                        (made once, mode 0600); prints it
#   start_pg DIR PORT [--fast]           initdb if absent, start, create role/db;
#                                        TCP needs the role's password
#   stop_pg DIR
#   start_redis DIR PORT [--durable] / stop_redis DIR   Redis with a password (requirepass)
#   free_port [LOW HIGH]                 a free TCP port on 127.0.0.1 (< 32768)
#   wait_http URL [SECONDS]              wait until URL answers 200
#
# Ports: everything we start listens on 127.0.0.1 below 32768; 32768-60999
# is the kernel's ephemeral range, where a port can be taken by any outgoing
# connection between our check and our bind.

# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VAR_DIR="$ROOT/var"
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

# The packages a fresh Debian 12 machine needs to build, run and test.
BASE_PACKAGES="build-essential autoconf automake libtool pkg-config \
libevent-dev libssl-dev libpq-dev libhiredis-dev libcurl4-openssl-dev \
libarchive-dev libjansson-dev libargon2-dev check postgresql-15 redis-server \
zip unzip python3 graphviz bubblewrap zlib1g-dev libexpat1-dev"

# What tools/test needs besides: the browser tests' headless chromium, its
# WebDriver and the Python client (tests/e2e/browser.py).
# shellcheck disable=SC2034 # used by tools/test
TEST_PACKAGES="chromium chromium-driver python3-selenium"

say() { printf '%s\n' "$*" >&2; }
die() { printf '%s: error: %s\n' "${0##*/}" "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# --- packages ---------------------------------------------------------------

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# ensure_packages [extra...]: the base list plus any extras. As root, missing
# packages are installed with apt-get (running apt-get update first only when
# the install fails, then trying once more); otherwise the exact command to
# run is printed and we exit 1.
ensure_packages() {
    local missing="" p
    # shellcheck disable=SC2086 # BASE_PACKAGES is a word list on purpose
    for p in $BASE_PACKAGES "$@"; do
        pkg_installed "$p" || missing="$missing $p"
    done
    missing=${missing# }
    [ -z "$missing" ] && return 0
    if ! is_root; then
        say "missing packages: $missing"
        say "install them with:"
        say "  sudo apt-get install -y $missing"
        exit 1
    fi
    say "installing:$missing"
    mkdir -p "$VAR_DIR/log"
    local log="$VAR_DIR/log/apt.log"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    if ! apt-get install -y --no-install-recommends $missing >"$log" 2>&1; then
        say "apt-get install failed; running apt-get update and retrying"
        apt-get update >>"$log" 2>&1 || { tail -n 30 "$log" >&2; die "apt-get update failed (log: $log)"; }
        # shellcheck disable=SC2086
        apt-get install -y --no-install-recommends $missing >>"$log" 2>&1 \
            || { tail -n 30 "$log" >&2; die "apt-get install failed (log: $log)"; }
    fi
}

# ensure_npm_tools: hook for test tools that come from npm (the S3-compatible
# test server s3rver, later). Nothing is needed yet.
ensure_npm_tools() {
    ensure_s3rver
    ensure_web_packages
}

# ensure_web_packages: the pages' front-end packages, pinned in
# web/package.json and web/package-lock.json, installed with `npm ci` into
# web/node_modules (git-ignored) when the lock file differs from the one
# last installed (a copy kept beside the packages: a timestamp would miss a
# checkout or merge that brings an older-dated lock); then each file
# web/vendor.list names is copied to static/vendor/<package>@<version>/
# (git-ignored), where the server serves it with a year of caching.
ensure_web_packages() {
    local web="$ROOT/web" stamp="$ROOT/web/node_modules/.studyhub-installed-lock.json"
    if ! cmp -s "$web/package-lock.json" "$stamp"; then
        command -v npm >/dev/null 2>&1 || ensure_packages nodejs npm
        mkdir -p "$VAR_DIR/log"
        local log="$VAR_DIR/log/npm-web.log"
        say "installing the pages' npm packages (web/package-lock.json)"
        if ! (cd "$web" && npm ci --no-audit --no-fund) >"$log" 2>&1; then
            tail -n 30 "$log" >&2
            die "npm ci in web/ failed (log: $log)"
        fi
        cp "$web/package-lock.json" "$stamp"
    fi
    local pkg path version dest
    while read -r pkg path; do
        case $pkg in ''|'#'*) continue ;; esac
        version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$web/node_modules/$pkg/package.json")
        [ -n "$version" ] || die "web/vendor.list: $pkg is not installed in web/node_modules"
        dest="$ROOT/static/vendor/$pkg@$version/$path"
        if [ ! -e "$dest" ] || [ "$web/node_modules/$pkg/$path" -nt "$dest" ]; then
            mkdir -p "$(dirname "$dest")"
            cp "$web/node_modules/$pkg/$path" "$dest"
        fi
    done <"$web/vendor.list"
}

# --- build ------------------------------------------------------------------

# needs_update FILE REF...: true when FILE is missing or older than any REF.
needs_update() {
    local target=$1 ref
    shift
    [ -e "$target" ] || return 0
    for ref in "$@"; do
        [ -e "$ref" ] && [ "$ref" -nt "$target" ] && return 0
    done
    return 1
}

# build DIR [configure args, e.g. CFLAGS=... LDFLAGS=...]: out-of-tree build
# of the project in DIR (relative paths are taken from the repository root).
# Quiet unless something fails; the full output is in DIR/build.log.
build() {
    local dir=$1
    shift
    case $dir in /*) ;; *) dir="$ROOT/$dir" ;; esac
    mkdir -p "$dir"
    local log="$dir/build.log"
    : >"$log"

    if [ -e "$ROOT/config.status" ]; then
        die "the source tree is configured in place ($ROOT/config.status exists);" \
            "out-of-tree builds need it clean: run 'make distclean' in $ROOT"
    fi
    if needs_update "$ROOT/configure" "$ROOT/configure.ac" "$ROOT/Makefile.am"; then
        mkdir -p "$ROOT/m4"   # AC_CONFIG_MACRO_DIRS; empty, so not in git
        if ! (cd "$ROOT" && autoreconf -fi) >>"$log" 2>&1; then
            tail -n 40 "$log" >&2
            die "autoreconf failed (log: $log)"
        fi
    fi

    # Reconfigure when configure is newer than the last run or the arguments
    # changed (a build dir always keeps the flags it was made with).
    local args_file="$dir/.configure-args" args
    args=$(printf '%s\n' "$@")
    if needs_update "$dir/config.status" "$ROOT/configure" \
        || [ ! -e "$dir/Makefile" ] \
        || [ "$(cat "$args_file" 2>/dev/null)" != "$args" ]; then
        if ! (cd "$dir" && "$ROOT/configure" "$@") >>"$log" 2>&1; then
            tail -n 40 "$log" >&2
            die "configure failed in $dir (log: $log; details in $dir/config.log)"
        fi
        printf '%s\n' "$args" >"$args_file"
    fi

    if ! make -C "$dir" -j"$(nproc)" >>"$log" 2>&1; then
        # The compiler's and linker's complaints, or the end of the log.
        local complaints
        complaints=$(grep -E 'error:|warning:|undefined reference|No rule to make' "$log" | head -n 40 || true)
        if [ -n "$complaints" ]; then say "$complaints"; else tail -n 30 "$log" >&2; fi
        die "build failed in $dir (log: $log)"
    fi
}

ASAN_CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

build_normal() { build "${1:-build}" CFLAGS="-O2 -g"; }
build_asan() { build "${1:-build-asan}" CFLAGS="$ASAN_CFLAGS" LDFLAGS="-fsanitize=address,undefined"; }

# --- ports and waiting -------------------------------------------------------

# free_port [LOW HIGH]: print a TCP port on 127.0.0.1 that can be bound now.
free_port() {
    python3 - "${1:-20000}" "${2:-32000}" <<'EOF'
import random, socket, sys
low, high = int(sys.argv[1]), int(sys.argv[2])
for _ in range(200):
    port = random.randint(low, high)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    sys.exit(0)
sys.exit("no free port found")
EOF
}

# wait_http URL [SECONDS]: wait until URL answers 200 (default 30 s).
wait_http() {
    python3 - "$1" "${2:-30}" <<'EOF'
import sys, time, urllib.request
url, limit = sys.argv[1], float(sys.argv[2])
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            # studyhub's /healthz says "starting" while it migrates.
            if r.status == 200 and b'"starting"' not in r.read(4096):
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.1)
sys.exit(1)
EOF
}

# --- secrets -------------------------------------------------------------------
#
# The services tools/ starts want credentials even on loopback: any local
# process (a build script, another user) can reach 127.0.0.1.  Each secret
# is made once into a 0600 file in a 0700 folder and read back on later
# runs, so a restart keeps working with the same database.
#
#   PG_PASSWORD_FILE, REDIS_PASSWORD_FILE, TOTP_KEY_FILE: set by the caller
#   (tools/run: var/secrets/, tools/test: its throwaway folder).

# ensure_secret FILE: print the secret in FILE, making it first if absent.
ensure_secret() {
    local file=$1 dir
    dir=$(dirname "$file")
    if [ ! -d "$dir" ]; then
        (umask 077 && mkdir -p "$dir")
    fi
    chmod 700 "$dir"
    if [ ! -s "$file" ]; then
        (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(32))' >"$file.tmp" \
            && mv "$file.tmp" "$file") || die "cannot write $file"
    fi
    chmod 600 "$file"
    head -n 1 "$file"
}

# --- PostgreSQL ----------------------------------------------------------------

# as_pg CMD...: run a command as the user PostgreSQL runs as (the postgres
# system user when we are root: the server refuses to run as root).
as_pg() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# pg_reachable DIR: true when the postgres user can enter every folder
# above DIR (always, when we are not root: then we are that user's peer).
pg_reachable() {
    is_root || return 0
    local d
    d=$(dirname "$1")
    while [ "$d" != "/" ]; do
        runuser -u postgres -- test -x "$d" || return 1
        d=$(dirname "$d")
    done
}

# pg_parents_traversable DIR: the postgres user must be able to reach DIR.
# Folders inside the repository are opened up (a+x); anything else is an
# error explaining what to change.
pg_parents_traversable() {
    is_root || return 0
    local d
    d=$(dirname "$1")
    while [ "$d" != "/" ]; do
        if ! runuser -u postgres -- test -x "$d"; then
            case $d in
                "$ROOT"|"$ROOT"/*) chmod a+x "$d" ;;
                *) die "the postgres user cannot enter $d (needed for $1): chmod a+x it" ;;
            esac
        fi
        d=$(dirname "$d")
    done
}

# start_pg DIR PORT [--fast]: a PostgreSQL 15 cluster in DIR listening only
# on 127.0.0.1:PORT, its Unix socket in DIR. --fast turns fsync off (tests
# only: a crash can lose data). Creates role and database "studyhub"; the
# role's password is the secret in PG_PASSWORD_FILE. TCP connections need a
# password (scram-sha-256); the Unix socket, in DIR (mode 0700, the
# postgres user's), stays trust for setup: only postgres and root reach it.
start_pg() {
    local dir=$1 port=$2 fast=${3:-}
    case $dir in /*) ;; *) dir="$ROOT/$dir" ;; esac
    [ -x "$PG_BIN/initdb" ] || die "PostgreSQL 15 not found in $PG_BIN (package postgresql-15)"
    mkdir -p "$(dirname "$dir")"
    pg_parents_traversable "$dir"

    if [ ! -s "$dir/PG_VERSION" ]; then
        mkdir -p "$dir"
        if is_root; then chown postgres:postgres "$dir"; fi
        chmod 700 "$dir"
        as_pg "$PG_BIN/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 \
            --locale=C --no-instructions >"$dir.initdb.log" 2>&1 \
            || { cat "$dir.initdb.log" >&2; die "initdb failed in $dir"; }
        rm -f "$dir.initdb.log"
        # Per-start settings (port, socket, fsync) live in an included file
        # that is rewritten at every start.
        printf '%s\n' "include_if_exists = 'studyhub.conf'" \
            | as_pg tee -a "$dir/postgresql.conf" >/dev/null
    fi

    local conf
    conf="listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
log_min_messages = warning
"
    if [ "$fast" = "--fast" ]; then
        conf="${conf}fsync = off
synchronous_commit = off
full_page_writes = off
"
    fi
    printf '%s' "$conf" | as_pg tee "$dir/studyhub.conf" >/dev/null
    printf '%s\n' \
        "# written by tools/lib.sh at every start" \
        "local all all trust" \
        "host all all 127.0.0.1/32 scram-sha-256" \
        "host all all ::1/128 scram-sha-256" \
        | as_pg tee "$dir/pg_hba.conf" >/dev/null

    # A cluster left running by an earlier run (killed before it could stop
    # its services) is restarted so it takes this run's settings.
    if as_pg "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        as_pg "$PG_BIN/pg_ctl" -D "$dir" stop -m fast -w >/dev/null 2>&1 || true
    fi
    if ! as_pg "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/postgresql.log" -w -t 60 start >/dev/null 2>&1; then
        tail -n 20 "$dir/postgresql.log" >&2 || true
        die "PostgreSQL did not start in $dir on port $port"
    fi

    local psql=(psql -X -q -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1)
    if [ "$("${psql[@]}" -Atc "SELECT 1 FROM pg_roles WHERE rolname = 'studyhub'")" != 1 ]; then
        "${psql[@]}" -c "CREATE ROLE studyhub LOGIN CREATEDB" >/dev/null
    fi
    # On stdin, not the command line, where ps would show it. The secret is
    # hex, so it needs no quoting.
    local pw
    pw=$(ensure_secret "${PG_PASSWORD_FILE:?}")
    printf "SET password_encryption = 'scram-sha-256'; ALTER ROLE studyhub PASSWORD '%s';\n" "$pw" \
        | "${psql[@]}" >/dev/null
    if [ "$("${psql[@]}" -Atc "SELECT 1 FROM pg_database WHERE datname = 'studyhub'")" != 1 ]; then
        "${psql[@]}" -c "CREATE DATABASE studyhub OWNER studyhub" >/dev/null
    fi
}

# stop_pg DIR: stop the cluster in DIR if it runs.
stop_pg() {
    local dir=$1
    case $dir in /*) ;; *) dir="$ROOT/$dir" ;; esac
    [ -s "$dir/PG_VERSION" ] || return 0
    if as_pg "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        as_pg "$PG_BIN/pg_ctl" -D "$dir" stop -m fast -w -t 30 >/dev/null 2>&1 \
            || as_pg "$PG_BIN/pg_ctl" -D "$dir" stop -m immediate -w >/dev/null 2>&1 || true
    fi
}

# --- Redis ---------------------------------------------------------------------

# start_redis DIR PORT [--durable]: a Redis on 127.0.0.1:PORT, with an
# append-only file when --durable (else no persistence); its
# pid file, log and configuration (mode 0600: it holds the password, the
# secret in REDIS_PASSWORD_FILE) in DIR.
start_redis() {
    local dir=$1 port=$2 durable=${3:-} pw aof=no
    case $dir in /*) ;; *) dir="$ROOT/$dir" ;; esac
    mkdir -p "$dir"
    stop_redis "$dir"
    pw=$(ensure_secret "${REDIS_PASSWORD_FILE:?}")
    # --durable (tools/run): sessions and login counters survive a restart
    # of Redis; throwaway test services need no such thing.
    [ "$durable" = --durable ] && aof=yes
    (umask 077 && printf '%s\n' "bind 127.0.0.1" "port $port" "save \"\"" \
        "appendonly $aof" "appendfsync everysec" "dir $dir" "daemonize yes" \
        "pidfile $dir/redis.pid" \
        "logfile $dir/redis.log" "requirepass $pw" >"$dir/redis.conf")
    redis-server "$dir/redis.conf" >/dev/null \
        || die "redis-server did not start (log: $dir/redis.log)"

    for _ in $(seq 100); do
        [ "$(REDISCLI_AUTH=$pw redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    tail -n 20 "$dir/redis.log" >&2 || true
    die "Redis did not answer on port $port (log: $dir/redis.log)"
}

# stop_redis DIR: stop the Redis whose pid file is in DIR.
stop_redis() {
    local dir=$1 pid
    case $dir in /*) ;; *) dir="$ROOT/$dir" ;; esac
    [ -s "$dir/redis.pid" ] || return 0
    pid=$(cat "$dir/redis.pid")
    if kill -0 "$pid" 2>/dev/null && grep -q redis "/proc/$pid/cmdline" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/redis.pid"
}

# --- s3rver (the S3-compatible test server; owned by the storage module) -------
#
#   ensure_s3rver                        npm-install s3rver into tools/node_modules
#   start_s3rver DIR PORT BUCKET         s3rver on 127.0.0.1:PORT, data in DIR/data
#   stop_s3rver DIR
#
# s3rver takes the credentials S3RVER / S3RVER and does not verify SigV4
# signatures (the unit tests check those against AWS's examples).

S3RVER_VERSION=3.7.1
S3RVER_BIN="$ROOT/tools/node_modules/.bin/s3rver"

# ensure_s3rver: install s3rver (pinned) into tools/node_modules (git-ignored),
# and node/npm from Debian when missing. --no-save: no package.json or
# lock file appears in tools/.
ensure_s3rver() {
    if [ -x "$S3RVER_BIN" ] && grep -q "\"version\": \"$S3RVER_VERSION\"" \
        "$ROOT/tools/node_modules/s3rver/package.json" 2>/dev/null; then
        return 0
    fi
    command -v npm >/dev/null 2>&1 || ensure_packages nodejs npm
    mkdir -p "$VAR_DIR/log"
    local log="$VAR_DIR/log/npm.log"
    say "installing s3rver $S3RVER_VERSION into tools/node_modules"
    if ! npm install --prefix "$ROOT/tools" --no-save --no-audit --no-fund \
        "s3rver@$S3RVER_VERSION" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "npm install s3rver failed (log: $log)"
    fi
    [ -x "$S3RVER_BIN" ] || die "s3rver was installed but $S3RVER_BIN is missing"
}

# start_s3rver DIR PORT BUCKET: s3rver listening on 127.0.0.1:PORT with BUCKET
# created; its pid file and log in DIR. --service-endpoint localhost also lets
# virtual-hosted requests to BUCKET.s3.localhost:PORT reach it.
start_s3rver() {
    local dir=$1 port=$2 bucket=$3 pid
    case $dir in /*) ;; *) dir="$ROOT/$dir" ;; esac
    [ -x "$S3RVER_BIN" ] || die "s3rver is not installed (run ensure_s3rver)"
    mkdir -p "$dir/data"
    stop_s3rver "$dir"
    # Its continuation tokens use DES, which Node 17+ (OpenSSL 3) only has in
    # the legacy provider: without it every truncated listing answers 500.
    NODE_OPTIONS="${NODE_OPTIONS:+$NODE_OPTIONS }--openssl-legacy-provider" \
    "$S3RVER_BIN" -d "$dir/data" -a 127.0.0.1 -p "$port" \
        --configure-bucket "$bucket" --service-endpoint localhost \
        >"$dir/s3rver.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/s3rver.pid"
    if ! wait_http "http://127.0.0.1:$port/$bucket" 30; then
        tail -n 20 "$dir/s3rver.log" >&2 || true
        stop_s3rver "$dir"
        die "s3rver did not answer on port $port (log: $dir/s3rver.log)"
    fi
}

# stop_s3rver DIR: stop the s3rver whose pid file is in DIR.
stop_s3rver() {
    local dir=$1 pid
    case $dir in /*) ;; *) dir="$ROOT/$dir" ;; esac
    [ -s "$dir/s3rver.pid" ] || return 0
    pid=$(cat "$dir/s3rver.pid")
    if kill -0 "$pid" 2>/dev/null && grep -q s3rver "/proc/$pid/cmdline" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/s3rver.pid"
}
