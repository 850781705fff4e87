-- Claimed work: a worker takes due notices and webhook deliveries by setting their
-- next_attempt_at to the end of a lease and claimed_by to its claim's token, in one
-- statement (on PostgreSQL with FOR UPDATE SKIP LOCKED), so that several nodes on one
-- database never take the same row; a row whose node died becomes due again when the
-- lease ends.
ALTER TABLE notices ADD COLUMN claimed_by TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN claimed_by TEXT;
