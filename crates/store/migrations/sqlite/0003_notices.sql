-- The outbox: each notice is written in the transaction of the change that causes it (an
-- access transition), then delivered by the notice worker at least once.
CREATE TABLE notices (
    id              TEXT PRIMARY KEY,      -- ntc_<transition seq>: the email's Message-ID carries it
    kind            TEXT NOT NULL,         -- access.turned_off, access.restored, balance.low
    org_id          TEXT NOT NULL REFERENCES orgs(id),
    available       INTEGER NOT NULL,      -- the available balance when it was caused
    level           INTEGER NOT NULL,      -- thresholds below, then
    state           TEXT NOT NULL,         -- pending, sent, parked
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
);
CREATE INDEX notices_due ON notices (next_attempt_at) WHERE state = 'pending';
CREATE INDEX notices_by_org ON notices (org_id, created_at);
