-- What every node of one database must agree on, recorded by the first node that starts:
-- a fingerprint (a keyed hash, not the secret) of the key-hash secret.
-- A node whose secret gives another fingerprint refuses to start.
CREATE TABLE settings (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
