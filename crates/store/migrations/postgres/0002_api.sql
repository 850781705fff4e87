-- The API's records beside the ledger. An org's credit account has the org's id.
CREATE TABLE orgs (
    id                  TEXT PRIMARY KEY REFERENCES accounts(id),
    name                TEXT NOT NULL,
    billing_emails      TEXT NOT NULL,     -- one address per line
    low_thresholds      TEXT NOT NULL,     -- micro-units, comma-separated
    suspended           BIGINT NOT NULL,  -- 0 / 1
    spend_limit_monthly BIGINT,           -- micro-units; NULL: none
    access_state        TEXT NOT NULL,     -- derived; written with the change that moves it
    access_level        BIGINT NOT NULL,  -- thresholds the available balance is below
    access_changed_at   BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX orgs_by_created ON orgs (created_at, id);

-- Every change of an org's access, with its cause: the notices read from here.
CREATE TABLE access_transitions (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES orgs(id),
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    from_level BIGINT NOT NULL,
    to_level   BIGINT NOT NULL,
    cause      TEXT NOT NULL,
    available  BIGINT NOT NULL,
    at         BIGINT NOT NULL
);
CREATE INDEX access_transitions_by_org ON access_transitions (org_id, seq);

CREATE TABLE api_keys (
    id                  TEXT PRIMARY KEY,
    org_id              TEXT NOT NULL REFERENCES orgs(id),
    name                TEXT NOT NULL,
    prefix              TEXT NOT NULL,         -- shown in lists; not enough to use the key
    secret_hash         TEXT NOT NULL UNIQUE,  -- keyed hash (HMAC-SHA256) of the secret
    spend_limit_monthly BIGINT,
    created_at          BIGINT NOT NULL,
    revoked_at          BIGINT
);
CREATE INDEX api_keys_by_org ON api_keys (org_id, created_at);

CREATE TABLE prices (
    id                TEXT PRIMARY KEY,
    model             TEXT NOT NULL,
    effective_at      BIGINT NOT NULL,
    input             BIGINT NOT NULL,  -- micro-units per million tokens
    output            BIGINT NOT NULL,
    cache_write       BIGINT NOT NULL,
    cache_read        BIGINT NOT NULL,
    request_fee       BIGINT NOT NULL,
    max_output_tokens BIGINT NOT NULL,
    created_at        BIGINT NOT NULL
);
CREATE INDEX prices_by_model ON prices (model, effective_at);

-- Idempotency-Key records: the first response to a key, replayed for its repeats.
CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,    -- who may replay it: the org id or "operator"
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,    -- method, path and body
    status       BIGINT NOT NULL,
    body         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
