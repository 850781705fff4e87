#!/usr/bin/env bash
# Throwaway PostgreSQL 15 cluster for tests.
#
#   scripts/pg.sh start DIR   # prints exactly one line on stdout: postgres://postgres@127.0.0.1:PORT/postgres
#   scripts/pg.sh stop DIR    # fast shutdown, then removes DIR
#
# The cluster lives entirely in DIR (data in DIR/data, log in DIR/pg.log, Unix socket in DIR), listens on
# 127.0.0.1 only, on a free port, with trust auth for user `postgres`. When run as root, the server runs as the
# `postgres` OS user (PostgreSQL refuses to run as root) and DIR is chowned to it.
# `start` on a DIR whose cluster is already running reuses it and prints its URL again.
# Everything except the URL goes to stderr.
#
# Environment:
#   CREDITGATE_PG_BIN   server binaries (default /usr/lib/postgresql/15/bin)
set -euo pipefail

PG_BIN="${CREDITGATE_PG_BIN:-/usr/lib/postgresql/15/bin}"
MARKER=".creditgate-pg"

log() { printf 'pg.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    echo "usage: $0 start|stop DIR" >&2
    exit 2
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Run a command as the user that owns the cluster, with DIR as the working directory (the postgres user may not
# be able to enter the caller's cwd, e.g. /root).
as_pg() {
    if is_root; then
        (cd "$DIR" && runuser -u postgres -- "$@")
    else
        (cd "$DIR" && "$@")
    fi
}

# Print a free TCP port on 127.0.0.1.
free_port() {
    local py
    for py in /usr/bin/python3 python3; do
        if command -v "$py" >/dev/null 2>&1 &&
            "$py" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' 2>/dev/null; then
            return 0
        fi
    done
    # Fallback: walk from a random base in a range outside the usual ephemeral range, skipping listeners.
    local port tries
    port=$((20000 + RANDOM % 10000))
    for ((tries = 0; tries < 500; tries++)); do
        if ! ss -Htln "sport = :$port" 2>/dev/null | grep -q .; then
            echo "$port"
            return 0
        fi
        port=$((port + 1))
    done
    die "could not find a free port"
}

# Port of the running cluster, from postmaster.pid (line 4).
running_port() {
    sed -n 4p "$DIR/data/postmaster.pid" 2>/dev/null
}

is_running() {
    [ -f "$DIR/data/PG_VERSION" ] && [ -f "$DIR/data/postmaster.pid" ] &&
        as_pg "$PG_BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1
}

print_url() {
    echo "postgres://postgres@127.0.0.1:$1/postgres"
}

cmd_start() {
    [ -x "$PG_BIN/initdb" ] || die "$PG_BIN/initdb not found (install postgresql-15, or set CREDITGATE_PG_BIN)"

    mkdir -p "$DIR"
    DIR="$(cd "$DIR" && pwd -P)"
    # Unix socket paths are limited to 107 bytes: DIR/.s.PGSQL.PORT must fit.
    [ "${#DIR}" -le 90 ] || die "DIR path too long for a Unix socket (${#DIR} > 90 chars): $DIR"

    if is_running; then
        local port
        port="$(running_port)"
        [ -n "$port" ] || die "cluster in $DIR is running but its port is unknown"
        log "reusing running cluster in $DIR on port $port"
        print_url "$port"
        return 0
    fi

    touch "$DIR/$MARKER"
    if is_root; then
        id postgres >/dev/null 2>&1 || die "no 'postgres' OS user (install postgresql-15, which creates it)"
        chown postgres: "$DIR" "$DIR/$MARKER"
        chmod 0700 "$DIR"
        as_pg test -w "$DIR" ||
            die "user postgres cannot write $DIR (a parent directory is not traversable?); use a DIR under /tmp"
    fi

    # A data dir without PG_VERSION is a leftover of an interrupted initdb: start over.
    if [ -d "$DIR/data" ] && [ ! -f "$DIR/data/PG_VERSION" ]; then
        rm -rf "$DIR/data"
    fi
    if [ ! -d "$DIR/data" ]; then
        log "initdb in $DIR/data"
        if ! as_pg "$PG_BIN/initdb" -D "$DIR/data" -A trust -U postgres -E UTF8 --locale=C --no-sync \
            >"$DIR/initdb.log" 2>&1; then
            cat "$DIR/initdb.log" >&2
            die "initdb failed"
        fi
    fi
    # A stale pid file from a crashed server is handled by postgres itself.

    local port attempt
    for attempt in 1 2 3 4 5; do
        port="$(free_port)"
        log "starting PostgreSQL on 127.0.0.1:$port (attempt $attempt)"
        # pg_ctl's own chatter goes to stderr; the server's output goes to pg.log (so it never holds our stdout).
        if as_pg "$PG_BIN/pg_ctl" -D "$DIR/data" \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $DIR -c max_connections=300 -c fsync=on" \
            -l "$DIR/pg.log" -w -t 60 start >&2 </dev/null; then
            print_url "$port"
            return 0
        fi
        if is_running; then
            # Timed out waiting but it came up after all.
            print_url "$(running_port)"
            return 0
        fi
        if tail -n 20 "$DIR/pg.log" 2>/dev/null | grep -qiE 'could not (bind|create listen)|address already in use'; then
            log "port $port was taken, retrying with another"
            continue
        fi
        break
    done
    log "PostgreSQL failed to start; last lines of $DIR/pg.log:"
    tail -n 40 "$DIR/pg.log" >&2 2>/dev/null || true
    exit 1
}

cmd_stop() {
    if [ ! -e "$DIR" ]; then
        return 0
    fi
    DIR="$(cd "$DIR" && pwd -P)"
    case "$DIR" in
        / | /tmp | /root | /home | /work | "$HOME") die "refusing to remove $DIR" ;;
    esac
    if [ -x "$PG_BIN/pg_ctl" ] && is_running; then
        log "stopping PostgreSQL in $DIR"
        if ! as_pg "$PG_BIN/pg_ctl" -D "$DIR/data" -m fast -w -t 30 stop >&2 </dev/null; then
            log "fast shutdown failed; trying immediate"
            as_pg "$PG_BIN/pg_ctl" -D "$DIR/data" -m immediate -w -t 30 stop >&2 </dev/null || true
        fi
    fi
    # Only delete directories that look like ours.
    if [ -f "$DIR/$MARKER" ] || [ -f "$DIR/data/PG_VERSION" ] || [ -z "$(ls -A "$DIR")" ]; then
        rm -rf "$DIR"
    else
        die "$DIR does not look like a pg.sh cluster directory; not removing it"
    fi
}

[ $# -eq 2 ] || usage
DIR="$2"
[ -n "$DIR" ] || usage
case "$1" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    *) usage ;;
esac
