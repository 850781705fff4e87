-- The ledger, SQLite flavour. Money is INTEGER micro-units; times are unix milliseconds.
CREATE TABLE accounts (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    floor      INTEGER,            -- NULL: no floor (operator accounts)
    posted     INTEGER NOT NULL,
    reserved   INTEGER NOT NULL,
    unbacked   INTEGER NOT NULL,
    overspend  INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE transfers (
    seq                  INTEGER PRIMARY KEY,   -- append order
    id                   TEXT NOT NULL UNIQUE,  -- the client id: idempotency key
    debit_account_id     TEXT NOT NULL REFERENCES accounts(id),
    credit_account_id    TEXT NOT NULL REFERENCES accounts(id),
    amount               INTEGER NOT NULL CHECK (amount > 0),
    kind                 TEXT NOT NULL,
    reference            TEXT NOT NULL,
    hold_id              TEXT,
    grant_id             TEXT,
    debit_balance_after  INTEGER NOT NULL,
    credit_balance_after INTEGER NOT NULL,
    overspend            INTEGER NOT NULL,
    created_at           INTEGER NOT NULL
);
CREATE INDEX transfers_debit ON transfers (debit_account_id, seq);
CREATE INDEX transfers_credit ON transfers (credit_account_id, seq);

CREATE TABLE holds (
    id                TEXT PRIMARY KEY,
    debit_account_id  TEXT NOT NULL REFERENCES accounts(id),
    credit_account_id TEXT NOT NULL REFERENCES accounts(id),
    amount            INTEGER NOT NULL,
    reference         TEXT NOT NULL,
    ttl_ms            INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    state             TEXT NOT NULL,
    allocations       TEXT NOT NULL,   -- "micros grant_id" lines, in consumption order
    unbacked          INTEGER NOT NULL,
    closed_by         TEXT,
    settled_amount    INTEGER,
    created_at        INTEGER NOT NULL,
    closed_at         INTEGER
);
CREATE INDEX holds_open_by_expiry ON holds (expires_at) WHERE state = 'open';
-- Voids, expiries and zero settlements record no transfer, so their ids are found here (a
-- positive settlement's id is a transfer id, unique in transfers).
CREATE UNIQUE INDEX holds_closed_without_transfer ON holds (closed_by)
    WHERE closed_by IS NOT NULL AND (settled_amount IS NULL OR settled_amount = 0);

CREATE TABLE grants (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    origin      TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    expires_at  INTEGER,
    amount      INTEGER NOT NULL,
    consumed    INTEGER NOT NULL,
    reserved    INTEGER NOT NULL,
    expired     INTEGER NOT NULL,
    expired_at  INTEGER,
    created_at  INTEGER NOT NULL,
    open        INTEGER NOT NULL   -- 1 while consumed + expired < amount
);
CREATE INDEX grants_open_by_account ON grants (account_id) WHERE open = 1;
CREATE INDEX grants_due ON grants (expires_at) WHERE expired_at IS NULL AND expires_at IS NOT NULL;
