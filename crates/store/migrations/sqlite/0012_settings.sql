-- What every node of one database must agree on, recorded by the first node that starts:
-- fingerprints (keyed hashes, not the secrets) of the key-hash secret and the operator token.
-- A node whose secret gives another fingerprint refuses to start.
CREATE TABLE settings (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
