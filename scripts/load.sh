#!/usr/bin/env bash
# Load figures for the metering API with wrk: hold + settle pairs over HTTP on loopback.
#
#   bash scripts/load.sh
#
# 1. Installs wrk (Debian package) if missing and builds the release binary (`cargo build --release -p creditgate`).
# 2. Starts `creditgate serve` on SQLite (synchronous=FULL, the default) in a temp data dir on a free loopback port,
#    seeds an org with plenty of credits, an API key and a price.
# 3. Runs scripts/wrk/hold_settle.lua (POST /v1/holds {"amount":"0.01"}, then POST /v1/holds/{id}/settle
#    {"amount":"0.005"}, alternately, with the key as x-api-key):
#      a. max throughput:  wrk -t2 -c64 -d15s --latency          → hold+settle pairs per second
#      b. paced:           wrk -t2 -c64 -d15s --latency at 5000 requests/s (the script's delay() hook)
#                                                                → p50 / p99 at the achieved rate
#    after a short warm-up, and reports the server's CPU use (cores busy) during each run from /proc.
# 4. With CREDITGATE_LOAD_DATABASE_URL (postgres://… admin URL), the same on PostgreSQL, in a fresh database that is
#    dropped afterwards.
# Every wait and run is bounded in time; the server is stopped on exit.
#
# Environment:
#   CREDITGATE_LOAD_DURATION      seconds per measured run (default 15)
#   CREDITGATE_LOAD_CONNECTIONS   connections (default 64)
#   CREDITGATE_LOAD_THREADS       wrk threads (default 2)
#   CREDITGATE_LOAD_RATE          requests/s of the paced run (default 5000)
#   CREDITGATE_LOAD_DATABASE_URL  also run on this PostgreSQL server
#   CREDITGATE_LOAD_PERF          1: sample the server with `perf record` during the max-throughput run and print
#                                 the top symbols (needs perf)
#   CREDITGATE_BIN                binary to run (default: target/release/creditgate, built first)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"

DURATION="${CREDITGATE_LOAD_DURATION:-15}"
CONNECTIONS="${CREDITGATE_LOAD_CONNECTIONS:-64}"
THREADS="${CREDITGATE_LOAD_THREADS:-2}"
RATE="${CREDITGATE_LOAD_RATE:-5000}"
SCRIPT="$ROOT/scripts/wrk/hold_settle.lua"
OPERATOR_TOKEN="op_load_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

log() { printf 'load.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

apt_get() {
    if [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo DEBIAN_FRONTEND=noninteractive apt-get "$@"
    else
        die "need root (or passwordless sudo) to run: apt-get $*"
    fi
}

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    apt_get update -qq </dev/null
    apt_get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi

if [ -n "${CREDITGATE_BIN:-}" ]; then
    BIN="$CREDITGATE_BIN"
else
    log "cargo build --release -p creditgate"
    cargo build -q --release -p creditgate </dev/null
    BIN="$ROOT/target/release/creditgate"
fi
[ -x "$BIN" ] || die "$BIN not found"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cg-load.XXXXXX")"
SERVER_PID=""
PG_DB=""
PG_ADMIN_URL=""

stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
drop_pg_db() {
    if [ -n "$PG_DB" ]; then
        timeout 30 psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 ||
            log "warning: could not drop database $PG_DB"
        PG_DB=""
    fi
}
cleanup() {
    stop_server
    drop_pg_db
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_server NAME DATABASE_URL: starts the server, sets SERVER_PID and BASE.
start_server() {
    local name="$1" url="$2" addr=""
    local server_log="$WORK/$name.server.log"
    CREDITGATE_DATA_DIR="$WORK/$name.data" \
        CREDITGATE_DATABASE_URL="$url" \
        CREDITGATE_LISTEN="127.0.0.1:0" \
        CREDITGATE_OPERATOR_TOKEN="$OPERATOR_TOKEN" \
        CREDITGATE_LOG="${CREDITGATE_LOG:-warn}" \
        "$BIN" serve </dev/null >"$server_log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        addr="$(sed -n 's/^creditgate listening on http:\/\/\([^ ]*\).*/\1/p' "$server_log" | head -n 1)"
        [ -n "$addr" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$server_log" >&2; die "the server exited"; }
        sleep 0.1
    done
    [ -n "$addr" ] || { cat "$server_log" >&2; die "the server did not start within 30 s"; }
    BASE="http://$addr"
}

# api METHOD PATH JSON [curl args]: the body of a 2xx answer, else fails.
api() {
    local method="$1" path="$2" body="$3" out code
    shift 3
    out="$(curl -sS --max-time 10 -X "$method" -H "Authorization: Bearer $OPERATOR_TOKEN" \
        -H 'Content-Type: application/json' --data "$body" -w '\n%{http_code}' "$@" "$BASE$path")"
    code="${out##*$'\n'}"
    out="${out%$'\n'*}"
    case "$code" in
        2??) printf '%s' "$out" ;;
        *) log "seeding: $method $path answered $code: $out"; return 1 ;;
    esac
}
# The value of the first "NAME":"…" in a compact JSON object.
field() { sed -n "s/^{\"$1\":\"\([^\"]*\)\".*/\1/p"; }

# cpu_ticks PID: user + system clock ticks used so far by the process.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# busy_ticks: clock ticks all cores spent busy so far (everything but idle and iowait).
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# measure LABEL RATE WRK_ARGS...: one bounded wrk run with the server's CPU use over it.
measure() {
    local label="$1" rate="$2"
    shift 2
    local hz ticks_before ticks_after busy_before busy_after started ended out="$WORK/wrk.out"
    hz="$(getconf CLK_TCK)"
    ticks_before="$(cpu_ticks "$SERVER_PID")"
    busy_before="$(busy_ticks)"
    started="$(date +%s.%N)"
    echo "\$ wrk $* -s scripts/wrk/hold_settle.lua $BASE -- KEY $rate $THREADS"
    timeout -k 10 "$((DURATION + 60))" wrk "$@" -s "$SCRIPT" "$BASE" -- "$KEY" "$rate" "$THREADS" \
        </dev/null >"$out" 2>&1 || { cat "$out"; die "wrk failed"; }
    ended="$(date +%s.%N)"
    ticks_after="$(cpu_ticks "$SERVER_PID")"
    busy_after="$(busy_ticks)"
    cat "$out"
    awk -v t="$((ticks_after - ticks_before))" -v b="$((busy_after - busy_before))" -v hz="$hz" \
        -v s="$started" -v e="$ended" -v n="$(nproc)" -v label="$label" \
        'BEGIN { printf "%s: CPU over the run: server %.2f cores, whole machine (server + wrk + anything else) %.2f of %d cores\n",
                 label, t / hz / (e - s), b / hz / (e - s), n }'
    echo
}

# run_backend NAME DATABASE_URL: seed, warm up, measure max throughput and the paced run.
run_backend() {
    local name="$1" url="$2" org
    start_server "$name" "$url"
    log "$name: server at $BASE (pid $SERVER_PID)"
    org="$(api POST /v1/orgs '{"name":"load"}' | field id)"
    [ -n "$org" ] || die "no org id"
    api POST "/v1/orgs/$org/grants" '{"amount":"10000000","origin":"paid"}' -H "Idempotency-Key: load-$org" >/dev/null
    api PUT /v1/prices/load-model '{"input":"3","output":"15"}' >/dev/null
    KEY="$(api POST "/v1/orgs/$org/keys" '{"name":"load"}' | sed -n 's/.*"secret":"\([^"]*\)".*/\1/p')"
    [ -n "$KEY" ] || die "no key secret"

    echo "=== $name ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ))"
    timeout -k 10 60 wrk -t"$THREADS" -c"$CONNECTIONS" -d3s -s "$SCRIPT" "$BASE" -- "$KEY" 0 "$THREADS" \
        </dev/null >/dev/null 2>&1 || log "warning: warm-up run failed"
    if [ -n "$url" ]; then
        # A fresh PostgreSQL database has no planner statistics until autovacuum's ANALYZE comes round: until then
        # the writer's batches run several times slower. Measure the steady state.
        echo "(ANALYZE after the warm-up)"
        timeout 60 psql -q "$url" -c ANALYZE >/dev/null || log "warning: ANALYZE failed"
    fi

    echo "--- $name (a) max throughput"
    local perf_pid=""
    if [ "${CREDITGATE_LOAD_PERF:-0}" = 1 ] && command -v perf >/dev/null 2>&1; then
        perf record -q -F 499 -g -p "$SERVER_PID" -o "$WORK/perf.data" -- sleep "$((DURATION > 5 ? DURATION - 2 : DURATION))" \
            >/dev/null 2>&1 &
        perf_pid=$!
    fi
    measure "$name (a)" 0 -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency
    if [ -n "$perf_pid" ]; then
        wait "$perf_pid" 2>/dev/null || true
        echo "--- $name: perf, top symbols of the server during (a)"
        timeout 120 perf report -i "$WORK/perf.data" --stdio --no-children -g none --sort comm \
            --percent-limit 1 2>/dev/null | grep -E '^ +[0-9]' | head -n 10 || true
        timeout 120 perf report -i "$WORK/perf.data" --stdio --no-children -g none --sort dso,symbol \
            --percent-limit 0.8 2>/dev/null | grep -E '^ +[0-9]' | cut -c1-110 | head -n 25 || true
        echo
    fi

    echo "--- $name (b) paced at $RATE requests/s"
    measure "$name (b)" "$RATE" -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency

    curl -sS --max-time 10 -H "Authorization: Bearer $OPERATOR_TOKEN" "$BASE/v1/orgs/$org/balance"
    echo
    stop_server
}

run_backend sqlite ""

if [ -n "${CREDITGATE_LOAD_DATABASE_URL:-}" ]; then
    command -v psql >/dev/null 2>&1 || die "psql is needed to make a fresh database on CREDITGATE_LOAD_DATABASE_URL"
    PG_ADMIN_URL="$CREDITGATE_LOAD_DATABASE_URL"
    PG_DB="creditgate_load_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
    timeout 30 psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE \"$PG_DB\"" >/dev/null
    # The same server and credentials, another database name.
    pg_url="$(printf '%s' "$PG_ADMIN_URL" | sed -E "s#^(postgres(ql)?://[^/]*)(/[^?]*)?#\1/$PG_DB#")"
    run_backend postgres "$pg_url"
    drop_pg_db
fi
