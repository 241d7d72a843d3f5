-- Digests, quiet hours and caps (issue 5).

-- A publication's urgency (an urgent item passes quiet hours and digest waits, never a cap)
-- and the instant after which it is not worth sending.
ALTER TABLE publications ADD COLUMN urgency TEXT NOT NULL DEFAULT 'normal';
ALTER TABLE publications ADD COLUMN expires_at BIGINT;

-- The member's timing preferences, as the record gives them: IANA time zone, digest hour,
-- quiet hours ("HH:MM"), per-channel limits and cadences (JSON arrays of the record's
-- entries). Read leniently at delivery time: a bad field falls back, never blocks.
ALTER TABLE preferences ADD COLUMN timezone TEXT;
ALTER TABLE preferences ADD COLUMN digest_hour BIGINT;
ALTER TABLE preferences ADD COLUMN quiet_start TEXT;
ALTER TABLE preferences ADD COLUMN quiet_end TEXT;
ALTER TABLE preferences ADD COLUMN channel_limits TEXT;
ALTER TABLE preferences ADD COLUMN channel_cadences TEXT;

-- A delivery held for a digest or past a daily cap: it waits to be folded into the next
-- message its member gets on that channel, whichever item triggers it.
ALTER TABLE outbox ADD COLUMN fold BIGINT NOT NULL DEFAULT 0;
CREATE INDEX outbox_folded ON outbox (recipient, channel) WHERE status = 'pending' AND fold = 1;
-- Messages sent to a member per channel per local day, for the daily cap. A reservation is
-- taken before a send and given back when it fails.
CREATE TABLE channel_usage (
    recipient   TEXT NOT NULL,
    channel     TEXT NOT NULL,
    day         TEXT NOT NULL,
    sent        BIGINT NOT NULL,
    PRIMARY KEY (recipient, channel, day)
);
-- SMS sent for a community per UTC day, for the operator's cap. (Its maintainers' warnings
-- are inbox items, one per day and threshold by their item id.)
CREATE TABLE community_usage (
    community   TEXT NOT NULL,
    channel     TEXT NOT NULL,
    day         TEXT NOT NULL,
    sent        BIGINT NOT NULL,
    PRIMARY KEY (community, channel, day)
);
