-- Delivery (issue 4). A contact a provider reports gone (Telegram bot blocked, number
-- unsubscribed at the carrier, webhook answering 410) is disabled rather than deleted, so its
-- owner sees why it stopped; verifying it again clears this.
ALTER TABLE contacts ADD COLUMN disabled_at BIGINT;
ALTER TABLE contacts ADD COLUMN disabled_reason TEXT;

-- A member's private Atom feed: the URL carries a random token, stored here only as a keyed
-- hash. One feed per member; creating a new one revokes the old URL.
CREATE TABLE feeds (
    owner       TEXT PRIMARY KEY,
    token_hash  BLOB NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);
