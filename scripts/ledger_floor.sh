#!/usr/bin/env bash
# The floor of the SQLite schema under `creditgate bench ledger`'s batched figure: how fast SQLite
# itself writes the rows a debit leaves (one `transfers` row with its three index entries, the
# org account's and the org grant's updates), with no engine, no loading, no binding, no Rust:
# per transaction one INSERT … SELECT of the debits, then one UPDATE of the accounts and one of
# the grants they touched (each row once, as the writer does).
#
#   bash scripts/ledger_floor.sh            # 10,000 orgs, then one hot org
#
# It uses the real migrations (crates/store/migrations/sqlite), WAL and synchronous=FULL like the
# writer, a history of 1,000,000 transfers first (as the benchmark has by its batched figure),
# and transactions of BATCH_LEN debits (default 5,000, the writer's batch size there), each
# committed (WAL write and fsync). Needs the sqlite3 command-line shell.
set -euo pipefail

BATCH_LEN="${BATCH_LEN:-5000}"
BATCHES="${BATCHES:-40}"
HISTORY="${HISTORY:-1000000}"
ORGS=10000
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="$(mktemp -d)"
trap 'rm -rf "$DIR"' EXIT
DB="$DIR/floor.db"

{
  echo "PRAGMA journal_mode=WAL;"
  cat "$ROOT"/crates/store/migrations/sqlite/*.sql
  cat <<SQL
WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < $ORGS - 1)
INSERT INTO accounts SELECT printf('acct_org_bench_%05d', n), 'org_credit', 0, 1000000000000, 0, 0, 0, 0 FROM s;
INSERT INTO accounts VALUES ('acct_op_usage_revenue', 'usage_revenue', NULL, 0, 0, 0, 0, 0);
WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < $ORGS - 1)
INSERT INTO grants SELECT printf('grt_acct_org_bench_%05d', n), printf('acct_org_bench_%05d', n), 'paid', 0,
  NULL, 1000000000000, 0, 0, 0, NULL, 0, 1 FROM s;
WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < $HISTORY - 1)
INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, kind, reference, debit_balance_after,
  credit_balance_after, overspend, created_at)
SELECT printf('bench_single_%012d_%04d', n / 256, n % 256), printf('acct_org_bench_%05d', n % $ORGS),
  'acct_op_usage_revenue', 1000, 'usage', '', 0, 0, 0, 0 FROM s;
SQL
} | sqlite3 "$DB" >/dev/null

# One run of BATCHES transactions; $1 names it, $2 is the SQL of a debit's org given n, $3 is
# the transactions run before it.
run() {
  local name="$1" org="$2" batch_offset="$3"
  {
    echo "PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-262144;"
    echo "SELECT 'start', strftime('%s','now') || substr(strftime('%f','now'), 3);"
    for batch in $(seq 0 $((BATCHES - 1))); do
      cat <<SQL
BEGIN IMMEDIATE;
WITH RECURSIVE s(n) AS (SELECT $((batch * BATCH_LEN)) UNION ALL SELECT n + 1 FROM s WHERE n < $(((batch + 1) * BATCH_LEN - 1)))
INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, kind, reference, debit_balance_after,
  credit_balance_after, overspend, created_at)
SELECT printf('bench_${name}_%012d_%04d', n / 16, n % 16), $org, 'acct_op_usage_revenue', 1000, 'usage', '',
  0, 0, 0, 0 FROM s;
-- Each account and grant updated once per transaction, as the writer does.
UPDATE accounts SET posted = posted - (SELECT sum(amount) FROM transfers WHERE debit_account_id = accounts.id
  AND seq > $((HISTORY + (batch_offset + batch) * BATCH_LEN)))
  WHERE id IN (SELECT debit_account_id FROM transfers WHERE seq > $((HISTORY + (batch_offset + batch) * BATCH_LEN)));
UPDATE grants SET consumed = consumed + (SELECT sum(amount) FROM transfers WHERE debit_account_id = grants.account_id
  AND seq > $((HISTORY + (batch_offset + batch) * BATCH_LEN)))
  WHERE id IN (SELECT 'grt_' || debit_account_id FROM transfers WHERE seq > $((HISTORY + (batch_offset + batch) * BATCH_LEN)));
UPDATE accounts SET posted = posted + $((BATCH_LEN * 1000)) WHERE id = 'acct_op_usage_revenue';
COMMIT;
SQL
    done
    echo "SELECT 'end', strftime('%s','now') || substr(strftime('%f','now'), 3);"
    echo "PRAGMA wal_checkpoint(PASSIVE);"
    echo "SELECT 'page', page_size FROM pragma_page_size;"
  } | sqlite3 "$DB" | awk -F'|' -v name="$name" -v ops=$((BATCHES * BATCH_LEN)) '
      $1 == "start" { start = $2 } $1 == "end" { end = $2 } NF == 3 && $1 == "0" { frames = $2 } $1 == "page" { page = $2 }
      END {
        ms = (end - start) * 1000
        printf "floor %-8s %8d debits/s  (%d in %d ms, %d per transaction, %.1f KiB of WAL per debit)\n",
          name, ops * 1000 / ms, ops, ms, ops / '"$BATCHES"', frames * page / 1024 / ops
      }'
}

run batched "printf('acct_org_bench_%05d', (n * 7) % $ORGS)" 0
run hot "'acct_org_bench_00000'" "$BATCHES"
