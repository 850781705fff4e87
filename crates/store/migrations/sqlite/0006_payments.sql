-- Payments and auto-reload (see creditgate_domain::payment and ::reload).

-- An org's customer at the payment provider and its saved card (used by auto-reload and
-- by top-ups with the saved card).
CREATE TABLE payment_profiles (
    org_id         TEXT PRIMARY KEY REFERENCES orgs(id),
    customer_id    TEXT,                 -- the provider's customer (cus_…); NULL for the sandbox
    payment_method TEXT,                 -- the saved card (pm_…)
    card_label     TEXT,                 -- what to show: "visa •••• 4242"
    updated_at     INTEGER NOT NULL
);

-- Auto-reload settings and their running state. `due` is set by the ledger writer, in the
-- batch that takes the available balance to or below the threshold, and cleared by the
-- payments worker once it has decided.
CREATE TABLE auto_reloads (
    org_id               TEXT PRIMARY KEY REFERENCES orgs(id),
    enabled              INTEGER NOT NULL,
    threshold            INTEGER NOT NULL,
    amount               INTEGER,          -- a fixed amount per reload, or
    target               INTEGER,          -- a balance to reload up to
    monthly_limit        INTEGER NOT NULL,
    consent_by           TEXT NOT NULL,
    consent_at           INTEGER NOT NULL,
    consent_text_version TEXT NOT NULL,
    failures             INTEGER NOT NULL, -- consecutive failed charges
    retry_at             INTEGER,          -- after a failure: not before
    last_failure         TEXT,
    disabled_reason      TEXT,
    due                  INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
CREATE INDEX auto_reloads_due ON auto_reloads (org_id) WHERE due = 1;

-- Every charge: a row of ours first; the provider sees it under its id.
CREATE TABLE payments (
    id              TEXT PRIMARY KEY,    -- pay_…: the provider's idempotency key and metadata
    org_id          TEXT NOT NULL REFERENCES orgs(id),
    kind            TEXT NOT NULL,       -- top_up, auto_reload
    method          TEXT NOT NULL,       -- checkout, saved_card
    state           TEXT NOT NULL,       -- created, charging, requires_action, succeeded, failed
    amount          INTEGER NOT NULL CHECK (amount > 0),
    currency        TEXT NOT NULL,
    provider        TEXT NOT NULL,       -- sandbox, stripe
    provider_ref    TEXT,                -- PaymentIntent, Checkout Session or sandbox charge
    action_url      TEXT,                -- where the customer acts (checkout, confirmation)
    return_url      TEXT,
    failure_code    TEXT,
    failure_message TEXT,
    transfer_id     TEXT,                -- the ledger credit, once succeeded
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX payments_by_org ON payments (org_id, created_at);
CREATE INDEX payments_open ON payments (state, updated_at)
    WHERE state IN ('created', 'charging', 'requires_action');
-- At most one auto-reload charge in flight per org: enforced here, not by luck.
CREATE UNIQUE INDEX payments_one_reload_in_flight ON payments (org_id)
    WHERE kind = 'auto_reload' AND state IN ('created', 'charging');

CREATE TABLE payment_transitions (
    seq        INTEGER PRIMARY KEY,
    payment_id TEXT NOT NULL REFERENCES payments(id),
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    code       TEXT,
    at         INTEGER NOT NULL
);
CREATE INDEX payment_transitions_by_payment ON payment_transitions (payment_id, seq);

-- Provider webhook events already handled (deduplicated by the provider's event id).
CREATE TABLE provider_events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    received_at INTEGER NOT NULL
);

-- The sandbox provider's own record of its charges (what reconciliation reads for it).
CREATE TABLE sandbox_charges (
    id             TEXT PRIMARY KEY,     -- ch_sandbox_…
    payment_id     TEXT NOT NULL UNIQUE, -- one charge per payment: the sandbox's idempotency
    amount         INTEGER NOT NULL,
    status         TEXT NOT NULL,        -- succeeded, failed, requires_action
    payment_method TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);

-- Payment notices name their payment, the reason and the next try.
ALTER TABLE notices ADD COLUMN payment_id TEXT;
ALTER TABLE notices ADD COLUMN reason TEXT;
ALTER TABLE notices ADD COLUMN retry_at INTEGER;
