-- Outgoing webhooks: endpoints (per org, or the operator's for every org) and one delivery
-- per (notice, endpoint), made by the notice worker and sent by the webhook worker.
CREATE TABLE webhook_endpoints (
    id          TEXT PRIMARY KEY,            -- whk_…
    org_id      TEXT REFERENCES orgs(id),    -- NULL: the operator's, receives every org's events
    url         TEXT NOT NULL,
    secret      TEXT NOT NULL,               -- signs each body (HMAC-SHA256)
    events      TEXT NOT NULL,               -- comma-separated event names, or *
    created_at  BIGINT NOT NULL,
    disabled_at BIGINT
);
CREATE INDEX webhook_endpoints_by_org ON webhook_endpoints (org_id);

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,        -- wdl_<notice id>_<endpoint id suffix>: made once
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints(id),
    notice_id       TEXT NOT NULL REFERENCES notices(id),
    event           TEXT NOT NULL,           -- the notice's kind
    payload         TEXT NOT NULL,           -- the JSON body, as sent
    state           TEXT NOT NULL,           -- pending, sent, parked
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_status     BIGINT,                 -- the HTTP status of the last attempt, if one came
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, created_at);
