#!/usr/bin/env bash
# The one command that runs every test of the workspace.
#
#   scripts/test.sh [extra args for `cargo test --workspace --all-targets`]
#
# 1. Installs what the tests need and is missing (see install_deps).
# 2. Uses CREDITGATE_TEST_DATABASE_URL if set; otherwise starts a throwaway PostgreSQL cluster with scripts/pg.sh
#    in a fresh temp dir, exports CREDITGATE_TEST_DATABASE_URL, and always stops it on exit.
# 3. Runs `cargo test --workspace --all-targets "$@"`, then `cargo test --workspace --doc`.
# 4. Runs scripts/schemathesis.sh (property-based tests of the HTTP API from its OpenAPI document, with every
#    check schemathesis has but the few exceptions listed in that script), logging to target/schemathesis.log and
#    printing one `schemathesis result:` line.
#    CREDITGATE_SCHEMATHESIS=0 skips it.
# Exits non-zero if anything fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"

PG_BIN="${CREDITGATE_PG_BIN:-/usr/lib/postgresql/15/bin}"

log() { printf 'test.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Run apt-get as root, or through passwordless sudo when not root.
apt_get() {
    if [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo DEBIAN_FRONTEND=noninteractive apt-get "$@"
    else
        die "need root (or passwordless sudo) to run: apt-get $*"
    fi
}

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        apt_get update -qq </dev/null
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    apt_get install -y -qq --no-install-recommends "$@" </dev/null
}

# ---------------------------------------------------------------------------------------------------------------
# install_deps: everything the test suite needs that may be missing on a fresh machine.
# Later issues add their apt / pip / npm installs HERE (each guarded by a cheap "already installed?" check).
# ---------------------------------------------------------------------------------------------------------------
install_deps() {
    # PostgreSQL 15 server binaries (only needed when we start our own cluster).
    if [ -z "${CREDITGATE_TEST_DATABASE_URL:-}" ] && [ ! -x "$PG_BIN/initdb" ]; then
        apt_install postgresql-15 || apt_install postgresql
        [ -x "$PG_BIN/initdb" ] || die "PostgreSQL installed but $PG_BIN/initdb is still missing"
        # If the distro package auto-started its own cluster, that's fine: we don't use it.
    fi

    # fakellm (PyPI), the real LLM-style upstream of crates/creditgate/tests/proxy_fakellm.rs, in a virtualenv
    # under target/ (the test installs it the same way if it is missing; both hold target/venv-fakellm.lock).
    local fakellm_version=0.3.5 fakellm_venv="$ROOT/target/venv-fakellm"
    if ! "$fakellm_venv/bin/fakellm" --version 2>/dev/null | grep -qxF "fakellm, version $fakellm_version"; then
        if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
            apt_install python3 python3-venv
        fi
        log "installing fakellm==$fakellm_version into $fakellm_venv"
        mkdir -p "$ROOT/target"
        (
            flock 9
            "$fakellm_venv/bin/fakellm" --version 2>/dev/null | grep -qxF "fakellm, version $fakellm_version" && exit 0
            python3 -m venv --clear "$fakellm_venv"
            "$fakellm_venv/bin/pip" install -q --disable-pip-version-check --no-input "fakellm==$fakellm_version" </dev/null
        ) 9>"$ROOT/target/venv-fakellm.lock"
        "$fakellm_venv/bin/fakellm" --version >/dev/null || die "fakellm did not install"
    fi

    # aiosmtpd (PyPI), the real SMTP server of crates/creditgate/tests/notices.rs, in a virtualenv under target/
    # (the test installs it the same way if it is missing; both hold target/venv-aiosmtpd.lock).
    local aiosmtpd_version=1.4.6 aiosmtpd_venv="$ROOT/target/venv-aiosmtpd"
    local aiosmtpd_check="import sys, aiosmtpd; sys.exit(aiosmtpd.__version__ != '$aiosmtpd_version')"
    if ! "$aiosmtpd_venv/bin/python" -c "$aiosmtpd_check" >/dev/null 2>&1; then
        if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
            apt_install python3 python3-venv
        fi
        log "installing aiosmtpd==$aiosmtpd_version into $aiosmtpd_venv"
        mkdir -p "$ROOT/target"
        (
            flock 9
            "$aiosmtpd_venv/bin/python" -c "$aiosmtpd_check" >/dev/null 2>&1 && exit 0
            python3 -m venv --clear "$aiosmtpd_venv"
            "$aiosmtpd_venv/bin/pip" install -q --disable-pip-version-check --no-input "aiosmtpd==$aiosmtpd_version" </dev/null
        ) 9>"$ROOT/target/venv-aiosmtpd.lock"
        "$aiosmtpd_venv/bin/python" -c "$aiosmtpd_check" || die "aiosmtpd did not install"
    fi

    # localstripe (PyPI), the Stripe fake behind crates/creditgate/tests/stripe_support/ (extended there with
    # Checkout Sessions), in a virtualenv under target/ (the tests install it the same way if it is missing; both
    # hold target/venv-localstripe.lock).
    local localstripe_version=1.15.10 localstripe_venv="$ROOT/target/venv-localstripe"
    local localstripe_check="import sys, localstripe, localstripe.server; sys.exit(localstripe.__version__ != '$localstripe_version')"
    if ! "$localstripe_venv/bin/python" -c "$localstripe_check" >/dev/null 2>&1; then
        if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
            apt_install python3 python3-venv
        fi
        log "installing localstripe==$localstripe_version into $localstripe_venv"
        mkdir -p "$ROOT/target"
        (
            flock 9
            "$localstripe_venv/bin/python" -c "$localstripe_check" >/dev/null 2>&1 && exit 0
            python3 -m venv --clear "$localstripe_venv"
            "$localstripe_venv/bin/pip" install -q --disable-pip-version-check --no-input "localstripe==$localstripe_version" </dev/null
        ) 9>"$ROOT/target/venv-localstripe.lock"
        "$localstripe_venv/bin/python" -c "$localstripe_check" || die "localstripe did not install"
    fi

    # The official Python SDKs (PyPI anthropic and openai, pinned), the customer's code of
    # crates/creditgate/tests/sdk_cutoff.rs, in one virtualenv under target/ (the test installs them the same way if
    # they are missing; both hold target/venv-sdk.lock).
    local anthropic_version=2.10.0 openai_version=3.51.0 sdk_venv="$ROOT/target/venv-sdk"
    local sdk_check="import sys, anthropic, openai; sys.exit((anthropic.__version__, openai.__version__) != ('$anthropic_version', '$openai_version'))"
    if ! "$sdk_venv/bin/python" -c "$sdk_check" >/dev/null 2>&1; then
        if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
            apt_install python3 python3-venv
        fi
        log "installing anthropic==$anthropic_version openai==$openai_version into $sdk_venv"
        mkdir -p "$ROOT/target"
        (
            flock 9
            "$sdk_venv/bin/python" -c "$sdk_check" >/dev/null 2>&1 && exit 0
            python3 -m venv --clear "$sdk_venv"
            "$sdk_venv/bin/pip" install -q --disable-pip-version-check --no-input \
                "anthropic==$anthropic_version" "openai==$openai_version" </dev/null
        ) 9>"$ROOT/target/venv-sdk.lock"
        "$sdk_venv/bin/python" -c "$sdk_check" || die "the Python SDKs did not install"
    fi

    # Debian's Chromium and its WebDriver, driven by the browser tests (crates/creditgate/tests/browser_support/)
    # through chromedriver; no tool downloads a browser of its own.
    have_chromedriver() { command -v chromedriver >/dev/null 2>&1 || [ -x /usr/bin/chromedriver ]; }
    if [ ! -x /usr/bin/chromium ] || ! have_chromedriver; then
        apt_install chromium chromium-driver
        [ -x /usr/bin/chromium ] || die "chromium installed but /usr/bin/chromium is still missing"
        have_chromedriver || die "chromium-driver installed but chromedriver is still missing"
    fi

    # --- add further dependencies below (apt/pip/npm).
}

PG_DIR=""
CLEANED_UP=0
cleanup() {
    [ "$CLEANED_UP" -eq 0 ] || return 0
    CLEANED_UP=1
    if [ -n "$PG_DIR" ]; then
        bash "$ROOT/scripts/pg.sh" stop "$PG_DIR" >&2 || log "warning: could not stop PostgreSQL in $PG_DIR"
        rm -rf "$PG_DIR" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

install_deps

if [ -n "${CREDITGATE_TEST_DATABASE_URL:-}" ]; then
    log "using CREDITGATE_TEST_DATABASE_URL from the environment"
else
    # Short path under TMPDIR (the server's Unix socket lives in it), traversable by the postgres user.
    tmp_base="${TMPDIR:-/tmp}"
    if [ "${#tmp_base}" -gt 60 ] ||
        { [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$tmp_base" 2>/dev/null; }; then
        log "TMPDIR=$tmp_base is too long or not reachable by the postgres user; using /tmp"
        tmp_base=/tmp
    fi
    PG_DIR="$(mktemp -d "$tmp_base/cg-pg.XXXXXX")"
    CREDITGATE_TEST_DATABASE_URL="$(bash "$ROOT/scripts/pg.sh" start "$PG_DIR")"
    export CREDITGATE_TEST_DATABASE_URL
    log "started PostgreSQL: $CREDITGATE_TEST_DATABASE_URL"
fi

status=0

log "cargo test --workspace --all-targets --no-fail-fast $*"
cargo test --workspace --all-targets --no-fail-fast "$@" </dev/null || status=$?

log "cargo test --workspace --doc"
doc_out="$(mktemp)"
if cargo test --workspace --doc </dev/null 2>&1 | tee "$doc_out"; then
    :
elif grep -q 'no library targets found' "$doc_out"; then
    log "no library targets: no doc tests to run"
else
    status=1
fi
rm -f "$doc_out"

# Property-based API tests of the built server (scripts/schemathesis.sh): quiet here, the details in a log.
# Its one-line result ("schemathesis result: ok|FAILED|skipped ...") is what .ci/run reports.
SCHEMATHESIS_LOG="$ROOT/target/schemathesis.log"
if [ "${CREDITGATE_SCHEMATHESIS:-1}" = 0 ]; then
    echo "schemathesis result: skipped (CREDITGATE_SCHEMATHESIS=0)"
else
    log "bash scripts/schemathesis.sh (log: $SCHEMATHESIS_LOG)"
    mkdir -p "$(dirname "$SCHEMATHESIS_LOG")"
    if timeout -k 30 900 bash "$ROOT/scripts/schemathesis.sh" </dev/null >"$SCHEMATHESIS_LOG" 2>&1; then
        echo "schemathesis result: ok. $(grep -E '^schemathesis: ' "$SCHEMATHESIS_LOG" | tail -n 1 | sed 's/^schemathesis: //')"
    else
        schemathesis_status=$?
        status=1
        log "schemathesis FAILED (exit $schemathesis_status); last lines of $SCHEMATHESIS_LOG:"
        tail -n 120 "$SCHEMATHESIS_LOG" >&2 || true
        echo "schemathesis result: FAILED (exit $schemathesis_status; see $SCHEMATHESIS_LOG)"
    fi
fi

if [ "$status" -ne 0 ] && [ -n "$PG_DIR" ] && [ -f "$PG_DIR/pg.log" ]; then
    log "tests failed; last lines of the PostgreSQL log ($PG_DIR/pg.log):"
    tail -n 50 "$PG_DIR/pg.log" >&2 || true
fi

if [ "$status" -eq 0 ]; then
    log "all tests passed"
else
    log "some tests FAILED"
fi
exit "$status"
