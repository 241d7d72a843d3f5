-- Delivery (issue 4): the outbox learns who sent a delivery and under which claim, gains the
-- `cancelled` outcome (the recipient's contact went away before it was sent), and claims use
-- one due-time column for both never-claimed rows and expired leases.
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt (nothing refers
-- to it).
CREATE TABLE outbox_v2 (
    id              TEXT PRIMARY KEY,
    publication_id  TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    channel         TEXT NOT NULL CHECK (channel IN ('email', 'sms', 'telegram', 'webpush', 'feed', 'webhook')),
    status          TEXT NOT NULL CHECK (status IN ('pending', 'leased', 'sent', 'dead', 'cancelled')),
    -- Sends tried (a claim that ended in an outcome).
    attempts        BIGINT NOT NULL DEFAULT 0,
    -- Times claimed: above `attempts` + 1 only when a worker died holding a lease.
    claims          BIGINT NOT NULL DEFAULT 0,
    -- When the row may next be claimed: the retry time while pending, the lease's end while
    -- leased (so an abandoned lease becomes claimable without a second condition).
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    -- The claim that holds the lease; an outcome is recorded only under the same claim.
    lease_token     TEXT,
    last_error      TEXT,
    provider        TEXT,
    provider_id     TEXT,
    sent_at         BIGINT,
    created_at      BIGINT NOT NULL,
    UNIQUE (publication_id, recipient, channel)
);
INSERT INTO outbox_v2 (id, publication_id, recipient, channel, status, attempts, claims,
    next_attempt_at, lease_until, last_error, created_at)
SELECT id, publication_id, recipient, channel, status, attempts, attempts,
    CASE WHEN status = 'leased' THEN COALESCE(lease_until, next_attempt_at) ELSE next_attempt_at END,
    lease_until, last_error, created_at
FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v2 RENAME TO outbox;
CREATE INDEX outbox_claimable ON outbox (next_attempt_at) WHERE status IN ('pending', 'leased');
CREATE INDEX outbox_by_status ON outbox (status, channel);
CREATE INDEX outbox_feed ON outbox (recipient, created_at) WHERE channel = 'feed' AND status = 'sent';

-- The member's language (BCP 47), for the templates deliveries are rendered from.
ALTER TABLE preferences ADD COLUMN language TEXT;
