#!/usr/bin/env bash
# Property-based API testing of `creditgate serve` with schemathesis (PyPI), generated from the server's own
# OpenAPI document, with every check schemathesis has: no 5xx, every status and body as documented, every
# request the document calls valid accepted and every one it calls invalid refused, and so on. The few rules
# OpenAPI cannot state are listed below ("Exceptions"), each narrowing one check for one operation.
#
#   scripts/schemathesis.sh            # runs it; prints a summary line per run on stderr
#
# 1. Creates (or reuses) a virtualenv in target/venv-schemathesis with a pinned schemathesis.
# 2. Starts target/debug/creditgate (`cargo build -p creditgate` first: a no-op after `cargo test`) as
#    `serve` on SQLite in a fresh temp data dir, on a free loopback port, with a known operator token.
# 3. Seeds an org with credits, a price, two keys and an open hold through the API (curl), so that path and body
#    ids (org_id, key_id, hold_id, model) are real most of the time; schemathesis still generates others.
# 4. Runs schemathesis twice: as the operator (Authorization: Bearer TOKEN), then with the org's API key
#    (x-api-key). Bounded: a fixed number of examples per operation, a fixed seed, and an outer `timeout`.
# 5. Stops the server (trap) and removes the temp dir (kept on failure, with the server's log).
#
# Environment:
#   CREDITGATE_BIN                        binary to test (default target/debug/creditgate, brought up to date
#                                         with `cargo build -p creditgate`, a no-op after `cargo test`)
#   CREDITGATE_SCHEMATHESIS_MAX_EXAMPLES  examples per operation and phase (default 100: about 2.5 minutes for both runs)
#   CREDITGATE_SCHEMATHESIS_SEED          hypothesis seed (default 20261124)
#   CREDITGATE_SCHEMATHESIS_CHECKS        checks to run (default all: every check, less the exceptions below;
#                                         a list such as not_a_server_error runs those, exceptions not applied)
#   CREDITGATE_SCHEMATHESIS_TIMEOUT       seconds each schemathesis run may take (default 240)
#   CREDITGATE_SCHEMATHESIS_KEEP          keep the temp dir even on success when set to 1
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"

SCHEMATHESIS_VERSION="4.32.5"
VENV="$ROOT/target/venv-schemathesis"
BIN="${CREDITGATE_BIN:-$ROOT/target/debug/creditgate}"
MAX_EXAMPLES="${CREDITGATE_SCHEMATHESIS_MAX_EXAMPLES:-100}"
SEED="${CREDITGATE_SCHEMATHESIS_SEED:-20261124}"
CHECKS="${CREDITGATE_SCHEMATHESIS_CHECKS:-all}"
RUN_TIMEOUT="${CREDITGATE_SCHEMATHESIS_TIMEOUT:-240}"
OPERATOR_TOKEN="op_schemathesis_$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

log() { printf 'schemathesis.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------------------------
# The virtualenv.
# ---------------------------------------------------------------------------------------------------------------
apt_get() {
    if [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo DEBIAN_FRONTEND=noninteractive apt-get "$@"
    else
        die "need root (or passwordless sudo) to run: apt-get $*"
    fi
}

ensure_venv() {
    if [ -x "$VENV/bin/schemathesis" ] &&
        [ "$("$VENV/bin/schemathesis" --version 2>/dev/null)" = "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
        return 0
    fi
    local python
    python="$(command -v python3 || true)"
    if [ -z "$python" ] || ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        log "installing python3 and python3-venv"
        apt_get update -qq </dev/null
        apt_get install -y -qq --no-install-recommends python3 python3-venv </dev/null
        python="$(command -v python3)"
    fi
    log "creating $VENV with schemathesis==$SCHEMATHESIS_VERSION"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" </dev/null
    "$VENV/bin/schemathesis" --version >/dev/null
}

command -v curl >/dev/null 2>&1 || { apt_get update -qq </dev/null; apt_get install -y -qq curl </dev/null; }
ensure_venv

if [ -z "${CREDITGATE_BIN:-}" ]; then
    # Normally a no-op: `cargo test` built the same binary; this only makes sure it is current.
    cargo build -q -p creditgate </dev/null
fi
[ -x "$BIN" ] || die "$BIN not found"

# ---------------------------------------------------------------------------------------------------------------
# The server.
# ---------------------------------------------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/cg-schemathesis.XXXXXX")"
SERVER_PID=""
status=0
cleanup() {
    local rc=$?
    [ "$rc" -eq 0 ] || [ "$status" -ne 0 ] || status=$rc
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
    if [ "$status" -eq 0 ] && [ "${CREDITGATE_SCHEMATHESIS_KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    else
        log "kept $WORK (server log: $WORK/server.log)"
    fi
}
trap 'cleanup' EXIT
trap 'status=130; exit 130' INT
trap 'status=143; exit 143' TERM

CREDITGATE_DATA_DIR="$WORK/data" \
    CREDITGATE_DATABASE_URL="" \
    CREDITGATE_LISTEN="127.0.0.1:0" \
    CREDITGATE_OPERATOR_TOKEN="$OPERATOR_TOKEN" \
    CREDITGATE_LOG="${CREDITGATE_LOG:-warn}" \
    "$BIN" serve </dev/null >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

ADDR=""
for _ in $(seq 1 300); do
    ADDR="$(sed -n 's/^creditgate listening on http:\/\/\([^ ]*\).*/\1/p' "$WORK/server.log" 2>/dev/null | head -n 1 || true)"
    [ -n "$ADDR" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { status=1; cat "$WORK/server.log" >&2; die "the server exited"; }
    sleep 0.1
done
[ -n "$ADDR" ] || { status=1; cat "$WORK/server.log" >&2; die "the server did not start within 30 s"; }
BASE="http://$ADDR"
log "server at $BASE (log: $WORK/server.log)"

# api METHOD PATH [JSON] [extra curl args]: prints the body; fails on a non-2xx answer.
api() {
    local method="$1" path="$2" body="${3:-}"
    shift 3 || shift $#
    local args=(-sS --max-time 10 -X "$method" -H "Authorization: Bearer $OPERATOR_TOKEN" -w '\n%{http_code}')
    [ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data "$body")
    local out code
    out="$(curl "${args[@]}" "$@" "$BASE$path")"
    code="${out##*$'\n'}"
    out="${out%$'\n'*}"
    case "$code" in
        2??) printf '%s' "$out" ;;
        *) log "seeding: $method $path answered $code: $out"; return 1 ;;
    esac
}
json_field() { "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

MODEL="schemathesis-model"
ORG_ID="$(api POST /v1/orgs '{"name":"schemathesis","billing_emails":["billing@example.com"],"low_thresholds":["10"]}' | json_field id)"
api POST "/v1/orgs/$ORG_ID/grants" '{"amount":"100000","origin":"paid"}' -H "Idempotency-Key: seed-grant" >/dev/null
api PUT "/v1/prices/$MODEL" '{"input":"3","output":"15","cache_read":"0.3"}' >/dev/null
# One key for the operations to act on (DELETE /v1/keys/{key_id} revokes it), one to call with (never given to
# schemathesis as an id, so the operator run cannot revoke it).
TARGET_KEY_ID="$(api POST "/v1/orgs/$ORG_ID/keys" '{"name":"target"}' | json_field id)"
CALLER_KEY_JSON="$(api POST "/v1/orgs/$ORG_ID/keys" '{"name":"caller"}')"
CALLER_KEY_ID="$(printf '%s' "$CALLER_KEY_JSON" | json_field id)"
CALLER_SECRET="$(printf '%s' "$CALLER_KEY_JSON" | json_field secret)"
HOLD_IDS=()
for body in "{\"org_id\":\"$ORG_ID\",\"amount\":\"1\"}" \
    "{\"org_id\":\"$ORG_ID\",\"model\":\"$MODEL\",\"max_input_tokens\":1000}"; do
    HOLD_IDS+=("$(api POST /v1/holds "$body" | json_field id)")
done
log "seeded $ORG_ID, keys $TARGET_KEY_ID and $CALLER_KEY_ID, price $MODEL, holds ${HOLD_IDS[*]}"

# Real ids most of the time; schemathesis' own values otherwise (probability), so malformed and unknown ids are
# exercised too.
CONFIG="$WORK/schemathesis.toml"
cat >"$CONFIG" <<EOF
[dictionaries]
org_ids = { values = ["$ORG_ID"] }
key_ids = { values = ["$TARGET_KEY_ID"] }
hold_ids = { values = ["${HOLD_IDS[0]}", "${HOLD_IDS[1]}"] }
models = { values = ["$MODEL"] }

[parameters]
"path.org_id" = { dictionary = "org_ids", probability = 0.8 }
"path.key_id" = { dictionary = "key_ids", probability = 0.8 }
"path.hold_id" = { dictionary = "hold_ids", probability = 0.8 }
"path.model" = { dictionary = "models", probability = 0.8 }
"query.model" = { dictionary = "models", probability = 0.5 }
"body.org_id" = { dictionary = "org_ids", probability = 0.7 }
"body.model" = { dictionary = "models", probability = 0.7 }
"body.events[*].model" = { dictionary = "models", probability = 0.7 }
"body.events[*].key_id" = { dictionary = "key_ids", probability = 0.5 }
EOF

# ---------------------------------------------------------------------------------------------------------------
# Exceptions: a rule of the server that OpenAPI cannot state. Each is documented in the operation (its
# description and a 400 response) and narrows one check for one operation here, with its reason. A check named
# on the command line overrides these, so `all` is run as "every check, from this file" (no --checks).
# ---------------------------------------------------------------------------------------------------------------
EXCEPTIONS_BOTH="$(cat <<'EOF'
# A page cursor must name an item of this org (else 400); a well-formed id of nothing is valid to OpenAPI.
[[operations]]
include-name = ["GET /v1/orgs/{org_id}/transfers", "GET /v1/orgs/{org_id}/payments"]
checks.positive_data_acceptance.enabled = false

# Future-only: expires_at must be later than now (else 400); OpenAPI has no "now".
[[operations]]
include-name = "POST /v1/orgs/{org_id}/grants"
checks.positive_data_acceptance.enabled = false

# The org's state: a negative adjustment past its available balance is a 400 insufficient_funds.
[[operations]]
include-name = "POST /v1/orgs/{org_id}/adjustments"
checks.positive_data_acceptance.enabled = false

# The hold's state: one placed by amount settles by amount, one placed by model by usage (else 400).
[[operations]]
include-name = "POST /v1/holds/{hold_id}/settle"
checks.positive_data_acceptance.enabled = false

# The deployment's and the org's state: amounts within the configured top-up limits, a saved card for
# saved_card (else 400).
[[operations]]
include-name = "POST /v1/orgs/{org_id}/top_ups"
checks.positive_data_acceptance.enabled = false

# The payment's state: only a succeeded payment with unspent credits is refunded (else 404 or 409
# refund_exceeds_unspent), and amount must be more than zero (else 400), which the whole-cents pattern leaves open.
[[operations]]
include-name = "POST /v1/payments/{payment_id}/refunds"
checks.positive_data_acceptance.enabled = false

# Rules across fields and state: monthly_limit must allow one reload within the configured limits, a target
# above the threshold, the consent (current text version) and a card the first time it is enabled (else 400).
[[operations]]
include-name = "PUT /v1/orgs/{org_id}/auto_reload"
checks.positive_data_acceptance.enabled = false

# Auto-reload exists only once set up (404 before): a new org has none, though schemathesis reads
# /v1/orgs/{org_id}/auto_reload as a part of the org that POST /v1/orgs creates.
[[operations]]
include-name = "GET /v1/orgs/{org_id}/auto_reload"
checks.ensure_resource_availability.enabled = false

# URL syntax: the WHATWG host rules (a numeric last label must be an IPv4 address, percent-escapes must
# decode, ...) are not a regular language worth stating, so the documented pattern is a little wider than the
# server (else 400); and "*" (every event) stands alone in events.
[[operations]]
include-name = "POST /v1/webhook_endpoints"
checks.positive_data_acceptance.enabled = false

# The proxy's bodies are the providers' own APIs (model, messages, ...), which the document does not restate;
# the upstream judges them.
[[operations]]
include-path-regex = "^/(anthropic|openai)/"
include-method = "POST"
checks.positive_data_acceptance.enabled = false

# The proxy judges the org's access before the body: a suspended org (the operator run may suspend it) gets its
# documented 402 whatever it sends, so 402 joins the statuses that count as refusing an invalid request.
[[operations]]
include-path-regex = "^/(anthropic|openai)/"
checks.negative_data_rejection.expected-statuses = ["400", "401", "402", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]

# The proxy answers any method or path it does not serve with a 404 in the provider's own error envelope,
# as README.md describes (the SDKs raise it as NotFoundError), not a 405.
[[operations]]
include-path-regex = "^/(anthropic|openai)/"
checks.unsupported_method.enabled = false
EOF
)"
# Only when calling as the operator.
EXCEPTIONS_OPERATOR="$(cat <<'EOF'
# The caller: org_id is required with the operator token (400 without it), optional with a key (its own org).
[[operations]]
include-name = ["POST /v1/holds", "POST /v1/usage"]
checks.positive_data_acceptance.enabled = false
EOF
)"
# Only when calling with the org's API key.
EXCEPTIONS_KEY="$(cat <<'EOF'
EOF
)"

# run_schemathesis NAME HEADER EXCEPTIONS: one bounded run; its output goes to $WORK/NAME.log.
run_schemathesis() {
    local name="$1" header="$2" exceptions="$3" rc=0
    local out="$WORK/$name.log" config="$WORK/$name.toml"
    local checks_args=(--checks "$CHECKS")
    if [ "$CHECKS" = all ]; then
        checks_args=()
        { cat "$CONFIG"; printf '\n[checks]\nenabled = true\n%s\n%s\n' "$EXCEPTIONS_BOTH" "$exceptions"; } >"$config"
    else
        cp "$CONFIG" "$config"
    fi
    log "run '$name': schemathesis run $BASE/openapi.json --checks $CHECKS --max-examples $MAX_EXAMPLES --seed $SEED"
    # From inside $WORK: schemathesis keeps a cache (.schemathesis/) in its working directory.
    # One worker: with several threads, Python 3.11's ast.parse (used by hypothesis to describe strategies) can
    # fail with "SystemError: AST constructor recursion depth mismatch" (CPython gh-106905).
    (cd "$WORK" && exec timeout -k 10 "$RUN_TIMEOUT" "$VENV/bin/schemathesis" --config-file "$config" run "$BASE/openapi.json" \
        -H "$header" \
        ${checks_args[@]+"${checks_args[@]}"} \
        --max-examples "$MAX_EXAMPLES" \
        --seed "$SEED" \
        --generation-database none \
        --generation-with-security-parameters false \
        --workers 1 \
        --request-timeout 10 \
        --suppress-health-check all \
        --warnings off \
        --no-color \
        --report junit,har --report-junit-path "$WORK/$name.junit.xml" --report-har-path "$WORK/$name.har" \
        </dev/null >"$out" 2>&1) || rc=$?
    # Its closing line ("===== No issues found in 15.44s =====") and its count of test cases.
    local summary cases
    summary="$(grep -E '^=+ .* in [0-9.]+s =+$' "$out" | tail -n 1 | tr -d '=' | sed 's/^ *//; s/ *$//' || true)"
    cases="$(grep -A1 -E '^Test cases:' "$out" | tail -n 1 | sed 's/^ *//' || true)"
    [ -z "$cases" ] || summary="$summary; test cases: $cases"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        log "run '$name': timed out after ${RUN_TIMEOUT}s"
    fi
    if [ "$rc" -eq 0 ]; then
        log "run '$name': ok (${summary:-no summary})"
    else
        log "run '$name': FAILED (exit $rc; ${summary:-no summary}); last lines of $out:"
        tail -n 80 "$out" >&2 || true
        status=1
    fi
}

run_schemathesis operator "Authorization: Bearer $OPERATOR_TOKEN" "$EXCEPTIONS_OPERATOR"
# The operator run may have suspended the org (PATCH suspended): lift it, so the key run meets an org in service.
api PATCH "/v1/orgs/$ORG_ID" '{"suspended":false}' >/dev/null || status=1
run_schemathesis org-key "x-api-key: $CALLER_SECRET" "$EXCEPTIONS_KEY"

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "the server died during the run; last lines of its log:"
    tail -n 40 "$WORK/server.log" >&2 || true
    status=1
fi
if grep -q 'internal error' "$WORK/server.log"; then
    log "the server logged internal errors:"
    grep 'internal error' "$WORK/server.log" | head -n 20 >&2
    status=1
fi

if [ "$status" -eq 0 ]; then
    echo "schemathesis: passed (checks: $CHECKS; operator and org-key runs, $MAX_EXAMPLES examples per operation, seed $SEED)"
else
    echo "schemathesis: FAILED (see above; logs in $WORK)"
fi
exit "$status"
