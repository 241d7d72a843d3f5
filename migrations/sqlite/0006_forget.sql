-- When the vault last forgot a deleted account (its contacts and feed): set by the vault's
-- sweep, cleared whenever the account's status changes, so an account deleted again is
-- forgotten again. Deleted accounts not yet forgotten are found through the partial index.
ALTER TABLE accounts ADD COLUMN vault_forgotten_at BIGINT;
CREATE INDEX accounts_to_forget ON accounts (did)
    WHERE status = 'deleted' AND vault_forgotten_at IS NULL;
