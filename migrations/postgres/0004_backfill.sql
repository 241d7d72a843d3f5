-- Backfill progress, one row per repository: lets `herald backfill` resume where it stopped.
-- status: pending | done | unavailable (deactivated, taken down, gone) | failed (retried next run)
CREATE TABLE backfill_repos (
    did         TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    rev         TEXT,
    records     BIGINT NOT NULL DEFAULT 0,
    error       TEXT,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX backfill_repos_status ON backfill_repos (status);
