-- The ledger, PostgreSQL flavour. Same logical schema as migrations/sqlite.
CREATE TABLE accounts (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    floor      BIGINT,
    posted     BIGINT NOT NULL,
    reserved   BIGINT NOT NULL,
    unbacked   BIGINT NOT NULL,
    overspend  BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE transfers (
    seq                  BIGSERIAL PRIMARY KEY,
    id                   TEXT NOT NULL UNIQUE,
    debit_account_id     TEXT NOT NULL REFERENCES accounts(id),
    credit_account_id    TEXT NOT NULL REFERENCES accounts(id),
    amount               BIGINT NOT NULL CHECK (amount > 0),
    kind                 TEXT NOT NULL,
    reference            TEXT NOT NULL,
    hold_id              TEXT,
    grant_id             TEXT,
    debit_balance_after  BIGINT NOT NULL,
    credit_balance_after BIGINT NOT NULL,
    overspend            BIGINT NOT NULL,
    created_at           BIGINT NOT NULL
);
CREATE INDEX transfers_debit ON transfers (debit_account_id, seq);
CREATE INDEX transfers_credit ON transfers (credit_account_id, seq);

CREATE TABLE holds (
    id                TEXT PRIMARY KEY,
    debit_account_id  TEXT NOT NULL REFERENCES accounts(id),
    credit_account_id TEXT NOT NULL REFERENCES accounts(id),
    amount            BIGINT NOT NULL,
    reference         TEXT NOT NULL,
    ttl_ms            BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    state             TEXT NOT NULL,
    allocations       TEXT NOT NULL,
    unbacked          BIGINT NOT NULL,
    closed_by         TEXT,
    settled_amount    BIGINT,
    created_at        BIGINT NOT NULL,
    closed_at         BIGINT
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
    priority    BIGINT NOT NULL,
    expires_at  BIGINT,
    amount      BIGINT NOT NULL,
    consumed    BIGINT NOT NULL,
    reserved    BIGINT NOT NULL,
    expired     BIGINT NOT NULL,
    expired_at  BIGINT,
    created_at  BIGINT NOT NULL,
    open        BOOLEAN NOT NULL
);
CREATE INDEX grants_open_by_account ON grants (account_id) WHERE open;
CREATE INDEX grants_due ON grants (expires_at) WHERE expired_at IS NULL AND expires_at IS NOT NULL;
