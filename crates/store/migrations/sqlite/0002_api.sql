-- The API's records beside the ledger. An org's credit account has the org's id.
CREATE TABLE orgs (
    id                  TEXT PRIMARY KEY REFERENCES accounts(id),
    name                TEXT NOT NULL,
    billing_emails      TEXT NOT NULL,     -- one address per line
    low_thresholds      TEXT NOT NULL,     -- micro-units, comma-separated
    suspended           INTEGER NOT NULL,  -- 0 / 1
    spend_limit_monthly INTEGER,           -- micro-units; NULL: none
    access_state        TEXT NOT NULL,     -- derived; written with the change that moves it
    access_level        INTEGER NOT NULL,  -- thresholds the available balance is below
    access_changed_at   INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE INDEX orgs_by_created ON orgs (created_at, id);

-- Every change of an org's access, with its cause: the notices read from here.
CREATE TABLE access_transitions (
    seq        INTEGER PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES orgs(id),
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    from_level INTEGER NOT NULL,
    to_level   INTEGER NOT NULL,
    cause      TEXT NOT NULL,
    available  INTEGER NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX access_transitions_by_org ON access_transitions (org_id, seq);

CREATE TABLE api_keys (
    id                  TEXT PRIMARY KEY,
    org_id              TEXT NOT NULL REFERENCES orgs(id),
    name                TEXT NOT NULL,
    prefix              TEXT NOT NULL,         -- shown in lists; not enough to use the key
    secret_hash         TEXT NOT NULL UNIQUE,  -- keyed hash (HMAC-SHA256) of the secret
    spend_limit_monthly INTEGER,
    created_at          INTEGER NOT NULL,
    revoked_at          INTEGER
);
CREATE INDEX api_keys_by_org ON api_keys (org_id, created_at);

CREATE TABLE prices (
    id                TEXT PRIMARY KEY,
    model             TEXT NOT NULL,
    effective_at      INTEGER NOT NULL,
    input             INTEGER NOT NULL,  -- micro-units per million tokens
    output            INTEGER NOT NULL,
    cache_write       INTEGER NOT NULL,
    cache_read        INTEGER NOT NULL,
    request_fee       INTEGER NOT NULL,
    max_output_tokens INTEGER NOT NULL,
    created_at        INTEGER NOT NULL
);
CREATE INDEX prices_by_model ON prices (model, effective_at);

-- Idempotency-Key records: the first response to a key, replayed for its repeats.
CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,    -- who may replay it: the org id or "operator"
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,    -- method, path and body
    status       INTEGER NOT NULL,
    body         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
