-- Claims on PostgreSQL take rows held for folding (digests, capped items) by member and
-- channel, under an advisory lock, separately from the rest: two processes claiming at once
-- must never split one member's digest between them. Each kind of claim walks its own
-- partial index in due order, so neither skips over the other's rows (300,000 held rows come
-- due at once in a digest hour; a fan-out leaves as many immediate ones).
CREATE INDEX outbox_claimable_now ON outbox (next_attempt_at)
    WHERE status IN ('pending', 'leased') AND fold = 0;
CREATE INDEX outbox_claimable_folded ON outbox (next_attempt_at)
    WHERE status IN ('pending', 'leased') AND fold = 1;
