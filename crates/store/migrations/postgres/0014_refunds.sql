-- Refunds by the operator (issue 19): a row of ours first, then the provider, then the
-- ledger's refund transfer (txn_<refund id>), exactly once.
CREATE TABLE refunds (
    id              TEXT PRIMARY KEY,    -- rfd_…: derived from the Idempotency-Key; the provider's key
    payment_id      TEXT NOT NULL REFERENCES payments(id),
    org_id          TEXT NOT NULL REFERENCES orgs(id),
    state           TEXT NOT NULL,       -- requesting, succeeded, failed
    amount          BIGINT NOT NULL CHECK (amount > 0),
    reason          TEXT,
    provider        TEXT NOT NULL,       -- sandbox, stripe
    provider_ref    TEXT,                -- re_… at Stripe, the sandbox's refund id
    failure_code    TEXT,
    failure_message TEXT,
    transfer_id     TEXT,                -- the ledger's refund transfer, once succeeded
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX refunds_by_payment ON refunds (payment_id, created_at);
CREATE INDEX refunds_open ON refunds (state, updated_at) WHERE state = 'requesting';

-- The sandbox provider's refunds, like its charges: one per refund id.
CREATE TABLE sandbox_refunds (
    id         TEXT PRIMARY KEY,         -- re_sandbox_…
    refund_id  TEXT NOT NULL UNIQUE,     -- the sandbox's idempotency
    charge_id  TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
