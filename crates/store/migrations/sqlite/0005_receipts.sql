-- Receipts: a notice about credits added names the amount and the ledger transfer.
ALTER TABLE notices ADD COLUMN amount INTEGER;
ALTER TABLE notices ADD COLUMN transfer_id TEXT;
