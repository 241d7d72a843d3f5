-- The contact vault: a separate database from the index, holding only sealed addresses
-- (XChaCha20-Poly1305 under a versioned key ring), keyed blind indexes for look-ups and
-- uniqueness, and keyed hashes of verification secrets. No plaintext address is ever stored.

-- A member's contact on one delivery channel. `address` is sealed with the associated data
-- `contact|<id>|<owner>|<channel>`, so a sealed value moved to another row does not open.
CREATE TABLE contacts (
    id              TEXT PRIMARY KEY,
    owner           TEXT NOT NULL,
    channel         TEXT NOT NULL CHECK (channel IN ('email', 'sms', 'telegram', 'webpush', 'webhook')),
    status          TEXT NOT NULL CHECK (status IN ('pending', 'verified')),
    -- NULL only for a Telegram contact waiting for its chat to pair.
    address         BLOB,
    address_index   BLOB,
    key_version     BIGINT,
    created_at      BIGINT NOT NULL,
    verified_at     BIGINT,
    -- Seed 001's transfer: the owner currently holding this verified address.
    transfer_from   TEXT
);
-- An address belongs to at most one account once verified; pending claims may be many.
CREATE UNIQUE INDEX contacts_one_verified_owner ON contacts (channel, address_index)
    WHERE status = 'verified';
CREATE INDEX contacts_by_owner ON contacts (owner, channel);
CREATE INDEX contacts_by_address ON contacts (address_index);

-- The open verification of a contact: one at a time (a resend replaces it), single use.
CREATE TABLE challenges (
    contact_id  TEXT PRIMARY KEY REFERENCES contacts (id) ON DELETE CASCADE,
    code_hash   BLOB,
    token_hash  BLOB UNIQUE,
    expires_at  BIGINT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    sent_at     BIGINT NOT NULL
);

-- An email address's own state, whoever uses it (seed 001's `emails`): unsubscribe-all and
-- suppression belong to the address, not to an account. Sealed with `email-address|<id>`.
CREATE TABLE email_addresses (
    id                TEXT PRIMARY KEY,
    address_index     BLOB NOT NULL UNIQUE,
    address           BLOB NOT NULL,
    key_version       BIGINT NOT NULL,
    unsubscribed_at   BIGINT,
    suppressed_at     BIGINT,
    suppressed_reason TEXT,
    created_at        BIGINT NOT NULL
);

-- Email-only subscribers (seed 002): an address subscribed to a community without an account.
CREATE TABLE standalone_subscriptions (
    address_id  TEXT NOT NULL REFERENCES email_addresses (id) ON DELETE CASCADE,
    community   TEXT NOT NULL,
    -- JSON array of pipe ids; empty means every pipe.
    pipes       TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'pending')),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (address_id, community)
);
CREATE INDEX standalone_by_community ON standalone_subscriptions (community, address_id);
