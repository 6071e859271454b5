-- The expunge log is kept for a configurable time (QRESYNC clients that were
-- away longer resynchronise fully); pruning raises the mailbox's
-- vanished_floor so that Changes can say the log was truncated.
ALTER TABLE expunged ADD COLUMN expunged_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX expunged_at ON expunged (expunged_at);
