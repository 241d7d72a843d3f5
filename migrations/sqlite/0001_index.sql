-- Herald's index: the AppView's view of community.herald.* records, plus the inbox and outbox.
-- Times are microseconds since the Unix epoch (BIGINT); flags are 0/1 BIGINT so that both
-- backends decode them the same way; JSON is stored as TEXT.

-- Where ingest resumes: one row per upstream source, written in the same transaction as the
-- index changes it covers.
CREATE TABLE ingest_cursor (
    source      TEXT PRIMARY KEY,
    cursor      BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Every indexed record (and tombstones of deleted ones), keyed as in the repo. `rev` orders
-- writes: a replayed or older event never overwrites a newer one. The tables after it are
-- derived from `records` for the queries delivery needs.
CREATE TABLE records (
    did         TEXT NOT NULL,
    collection  TEXT NOT NULL,
    rkey        TEXT NOT NULL,
    rev         TEXT NOT NULL,
    cid         TEXT,
    deleted     BIGINT NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    body        TEXT,
    indexed_at  BIGINT NOT NULL,
    PRIMARY KEY (did, collection, rkey)
) WITHOUT ROWID;

CREATE TABLE subscriptions (
    did         TEXT NOT NULL,
    rkey        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    muted       BIGINT NOT NULL DEFAULT 0 CHECK (muted IN (0, 1)),
    routes      TEXT NOT NULL,
    PRIMARY KEY (did, rkey)
) WITHOUT ROWID;
CREATE INDEX subscriptions_by_subject ON subscriptions (subject, did, rkey);

CREATE TABLE preferences (
    did             TEXT PRIMARY KEY,
    default_routes  TEXT NOT NULL,
    paused_all      BIGINT NOT NULL DEFAULT 0 CHECK (paused_all IN (0, 1))
);

CREATE TABLE communities (
    did         TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    visibility  TEXT NOT NULL,
    pipes       TEXT NOT NULL
);

-- Publishers and admins named in a community record, one row each, for the authorisation
-- checks and the private-community admission check.
CREATE TABLE community_roles (
    community   TEXT NOT NULL,
    did         TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('publisher', 'admin')),
    PRIMARY KEY (community, did, role)
);

-- Admitted members of private communities (join links and approvals write here).
CREATE TABLE memberships (
    community   TEXT NOT NULL,
    did         TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('member', 'observer')),
    joined_at   BIGINT NOT NULL,
    PRIMARY KEY (community, did)
);

-- Account status from the firehose. No row means "never heard otherwise": active.
CREATE TABLE accounts (
    did         TEXT PRIMARY KEY,
    active      BIGINT NOT NULL CHECK (active IN (0, 1)),
    status      TEXT,
    seq         BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- One row per (community, item id): the idempotency key of publish.
CREATE TABLE publications (
    id          TEXT PRIMARY KEY,
    community   TEXT NOT NULL,
    pipe        TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    title       TEXT NOT NULL,
    text        TEXT,
    url         TEXT,
    publisher   TEXT NOT NULL,
    recipients  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (community, item_id)
);

-- The in-app inbox: one narrow row per (member, publication); the item itself lives once in
-- `publications`, so a fan-out to 100,000 members writes 100,000 small rows.
-- Keyed in the order the inbox is read (a member's rows by time), so one b-tree serves both
-- the fan-out's inserts and listing; a publication reaches a member once by construction.
CREATE TABLE notifications (
    recipient       TEXT NOT NULL,
    indexed_at      BIGINT NOT NULL,
    publication_id  TEXT NOT NULL,
    PRIMARY KEY (recipient, indexed_at, publication_id)
) WITHOUT ROWID;

CREATE TABLE notification_seen (
    did         TEXT PRIMARY KEY,
    seen_at     BIGINT NOT NULL
);

-- Deliveries over external channels, written in the publish transaction and drained by the
-- dispatcher. Never deleted on failure: a row ends `sent` or `dead`.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    publication_id  TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    channel         TEXT NOT NULL CHECK (channel IN ('email', 'sms', 'telegram', 'webpush', 'feed', 'webhook')),
    status          TEXT NOT NULL CHECK (status IN ('pending', 'leased', 'sent', 'dead')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    UNIQUE (publication_id, recipient, channel)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
