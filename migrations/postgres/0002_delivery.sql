-- Delivery (issue 4): see the SQLite migration of the same number for the meaning of each
-- column. PostgreSQL can change the status CHECK in place.
ALTER TABLE outbox DROP CONSTRAINT outbox_status_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_status_check
    CHECK (status IN ('pending', 'leased', 'sent', 'dead', 'cancelled'));
ALTER TABLE outbox ADD COLUMN claims BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN lease_token TEXT;
ALTER TABLE outbox ADD COLUMN provider TEXT;
ALTER TABLE outbox ADD COLUMN provider_id TEXT;
ALTER TABLE outbox ADD COLUMN sent_at BIGINT;
UPDATE outbox SET claims = attempts;
UPDATE outbox SET next_attempt_at = COALESCE(lease_until, next_attempt_at) WHERE status = 'leased';
DROP INDEX outbox_due;
CREATE INDEX outbox_claimable ON outbox (next_attempt_at) WHERE status IN ('pending', 'leased');
CREATE INDEX outbox_by_status ON outbox (status, channel);
CREATE INDEX outbox_feed ON outbox (recipient, created_at) WHERE channel = 'feed' AND status = 'sent';

ALTER TABLE preferences ADD COLUMN language TEXT;
