-- Proxied calls that were in flight when their process stopped (kill -9, a crash): found open
-- at the next start of the same node and settled at their holds (see the proxy's module
-- docs). One row each, for the operator (GET /v1/proxy/recoveries).
CREATE TABLE proxy_recoveries (
    hold_id      TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL,
    amount       INTEGER NOT NULL,   -- what was charged: the hold's amount
    node_id      TEXT NOT NULL,
    placed_at    INTEGER NOT NULL,
    recovered_at INTEGER NOT NULL
);
CREATE INDEX proxy_recoveries_by_time ON proxy_recoveries (recovered_at, hold_id);
