//! The vault's database: contacts, their open challenges, email addresses' own state and
//! standalone email subscriptions, in a database of their own (`HERALD_VAULT_URL`).
//!
//! Every address arrives here already sealed and every secret already hashed: this file sees
//! ciphertext, blind indexes and hashes only, so nothing it logs or returns can leak an
//! address. Sealing, hashing and the rules of verification live in `vault`.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{StorageError, Store, now_micros};

/// The vault store: a [`Store`] connected to the vault database with the vault's migrations.
#[derive(Clone)]
pub struct VaultStore {
    db: Store,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRow {
    pub id: String,
    pub owner: String,
    pub channel: String,
    pub status: String,
    pub address: Option<Vec<u8>>,
    pub address_index: Option<Vec<u8>>,
    pub key_version: Option<i64>,
    pub created_at: i64,
    pub verified_at: Option<i64>,
    pub transfer_from: Option<String>,
    /// Set when a provider reported the address gone; a disabled contact is not delivered to.
    pub disabled_at: Option<i64>,
    pub disabled_reason: Option<String>,
}

pub struct NewContact<'a> {
    pub id: &'a str,
    pub owner: &'a str,
    pub channel: &'a str,
    pub address: Option<&'a [u8]>,
    pub address_index: Option<&'a [u8]>,
    pub key_version: Option<i64>,
    pub transfer_from: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddressRow {
    pub id: String,
    pub address: Vec<u8>,
    pub key_version: i64,
    pub unsubscribed_at: Option<i64>,
    pub suppressed_at: Option<i64>,
    pub suppressed_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandaloneRow {
    pub address_id: String,
    pub community: String,
    pub pipes: Vec<String>,
    pub status: String,
    pub created_at: i64,
}

/// A sealed value due for re-encryption under the current key.
#[derive(Debug, Clone)]
pub struct SealedRow {
    pub id: String,
    /// `owner` and `channel` for contacts (they are part of the associated data); empty for
    /// email addresses.
    pub owner: String,
    pub channel: String,
    pub sealed: Vec<u8>,
    pub key_version: i64,
}

/// An open challenge: hashed secrets, expiry and attempts.
#[derive(Debug, Clone)]
pub struct ChallengeRow {
    pub contact_id: String,
    pub code_hash: Option<Vec<u8>>,
    pub token_hash: Option<Vec<u8>>,
    pub expires_at: i64,
    pub attempts: i64,
    pub sent_at: i64,
}

const CONTACT_COLUMNS: &str = "SELECT id, owner, channel, status, address, address_index, \
     key_version, created_at, verified_at, transfer_from, disabled_at, disabled_reason \
     FROM contacts";

impl VaultStore {
    /// Connect to the vault database (creating a SQLite file if needed) and migrate it.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        // The vault sees no bulk writes: no memory map.
        let db = Store::open(url, false).await?;
        db.migrate_vault().await?;
        Ok(Self { db })
    }

    pub async fn close(&self) {
        self.db.close().await;
    }

    pub async fn insert_contact(&self, c: NewContact<'_>) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO contacts (id, owner, channel, status, address, address_index, \
             key_version, created_at, transfer_from) VALUES ($1, $2, $3, 'pending', $4, $5, $6, \
             $7, $8)",
        )
        .bind(c.id)
        .bind(c.owner)
        .bind(c.channel)
        .bind(c.address.map(<[u8]>::to_vec))
        .bind(c.address_index.map(<[u8]>::to_vec))
        .bind(c.key_version)
        .bind(now_micros())
        .bind(c.transfer_from)
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    pub async fn contact(&self, id: &str) -> Result<Option<ContactRow>, StorageError> {
        let row = sqlx::query(&format!("{CONTACT_COLUMNS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.db.write)
            .await?;
        row.as_ref().map(decode_contact).transpose()
    }

    pub async fn contacts_of(&self, owner: &str) -> Result<Vec<ContactRow>, StorageError> {
        let rows = sqlx::query(&format!(
            "{CONTACT_COLUMNS} WHERE owner = $1 ORDER BY created_at, id"
        ))
        .bind(owner)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(decode_contact).collect()
    }

    /// Contacts on `channel` whose address has blind index `index`, verified first.
    pub async fn contacts_by_index(
        &self,
        channel: &str,
        index: &[u8],
    ) -> Result<Vec<ContactRow>, StorageError> {
        let rows = sqlx::query(&format!(
            "{CONTACT_COLUMNS} WHERE channel = $1 AND address_index = $2 \
             ORDER BY CASE status WHEN 'verified' THEN 0 ELSE 1 END, created_at"
        ))
        .bind(channel)
        .bind(index.to_vec())
        .fetch_all(&self.db.write)
        .await?;
        rows.iter().map(decode_contact).collect()
    }

    /// Verified, enabled contacts of `owner` on `channel`, oldest first: where a delivery goes.
    /// An SMS contact whose number opted out (STOP) is left out, whenever it was verified.
    pub async fn deliverable_contacts(
        &self,
        owner: &str,
        channel: &str,
    ) -> Result<Vec<ContactRow>, StorageError> {
        let rows = sqlx::query(&format!(
            "{CONTACT_COLUMNS} WHERE owner = $1 AND channel = $2 AND status = 'verified' \
             AND disabled_at IS NULL AND {NOT_OPTED_OUT} ORDER BY created_at, id"
        ))
        .bind(owner)
        .bind(channel)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(decode_contact).collect()
    }

    /// [`VaultStore::deliverable_contacts`] for many owners at once (a dispatcher's claim).
    pub async fn deliverable_contacts_of(
        &self,
        owners: &[String],
        channel: &str,
    ) -> Result<Vec<ContactRow>, StorageError> {
        let sql = format!(
            "{CONTACT_COLUMNS} WHERE channel = $1 AND owner IN {} AND status = 'verified' \
             AND disabled_at IS NULL AND {NOT_OPTED_OUT} ORDER BY owner, created_at, id",
            super::json_list(self.db.backend, 2)
        );
        let rows = sqlx::query(&sql)
            .bind(channel)
            .bind(super::json_param(owners)?)
            .fetch_all(&self.db.read)
            .await?;
        rows.iter().map(decode_contact).collect()
    }

    /// For each of `owners`' deliverable email contacts, in [`deliverable_contacts_of`]'s
    /// order, its owner and the row of its address, which is what an email is sent through
    /// (unsubscribe and suppression belong to the address). One query where contacts and then
    /// their addresses took two.
    ///
    /// [`deliverable_contacts_of`]: VaultStore::deliverable_contacts_of
    pub async fn deliverable_email_addresses_of(
        &self,
        owners: &[String],
    ) -> Result<Vec<(String, EmailAddressRow)>, StorageError> {
        let sql = format!(
            "SELECT c.owner AS owner, a.id AS id, a.address AS address, \
             a.key_version AS key_version, a.unsubscribed_at AS unsubscribed_at, \
             a.suppressed_at AS suppressed_at, a.suppressed_reason AS suppressed_reason \
             FROM contacts c JOIN email_addresses a ON a.address_index = c.address_index \
             WHERE c.channel = 'email' AND c.owner IN {} AND c.status = 'verified' \
             AND c.disabled_at IS NULL ORDER BY c.owner, c.created_at, c.id",
            super::json_list(self.db.backend, 1)
        );
        let rows = super::fetch_listed(&self.db.read, &sql, owners).await?;
        rows.iter()
            .map(|row| Ok((row.try_get("owner")?, decode_email(row)?)))
            .collect()
    }

    /// Email address rows by id.
    pub async fn email_addresses(
        &self,
        ids: &[String],
    ) -> Result<Vec<EmailAddressRow>, StorageError> {
        let sql = format!(
            "{EMAIL_COLUMNS} WHERE id IN {}",
            super::json_list(self.db.backend, 1)
        );
        let rows = super::fetch_listed(&self.db.read, &sql, ids).await?;
        rows.iter().map(decode_email).collect()
    }

    /// Stop delivering to a contact a provider reported gone; verifying it again re-enables it.
    pub async fn disable_contact(&self, id: &str, reason: &str) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE contacts SET disabled_at = $1, disabled_reason = $2 \
             WHERE id = $3 AND disabled_at IS NULL",
        )
        .bind(now_micros())
        .bind(reason)
        .bind(id)
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    /// Remove a contact whatever its owner (a push subscription its push service expired).
    pub async fn forget_contact(&self, id: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM contacts WHERE id = $1")
            .bind(id)
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    /// Give `owner` a private feed reached by the token hashed as `token_hash`, replacing
    /// (and so revoking) any earlier one.
    pub async fn put_feed(&self, owner: &str, token_hash: &[u8]) -> Result<i64, StorageError> {
        let now = now_micros();
        sqlx::query(
            "INSERT INTO feeds (owner, token_hash, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (owner) DO UPDATE SET token_hash = excluded.token_hash, \
             created_at = excluded.created_at",
        )
        .bind(owner)
        .bind(token_hash.to_vec())
        .bind(now)
        .execute(&self.db.write)
        .await?;
        Ok(now)
    }

    /// The owner of the feed whose token hashes to `token_hash`.
    pub async fn feed_owner(&self, token_hash: &[u8]) -> Result<Option<String>, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT owner FROM feeds WHERE token_hash = $1")
                .bind(token_hash.to_vec())
                .fetch_optional(&self.db.read)
                .await?,
        )
    }

    /// When `owner`'s feed was created, if they have one.
    pub async fn feed_created(&self, owner: &str) -> Result<Option<i64>, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT created_at FROM feeds WHERE owner = $1")
                .bind(owner)
                .fetch_optional(&self.db.read)
                .await?,
        )
    }

    /// Revoke `owner`'s feed URL. `false` if there was none.
    pub async fn delete_feed(&self, owner: &str) -> Result<bool, StorageError> {
        let done = sqlx::query("DELETE FROM feeds WHERE owner = $1")
            .bind(owner)
            .execute(&self.db.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Remove one of `owner`'s contacts (and its challenge). `false` if there was none.
    /// Forget everything the vault holds for `owner`: its contacts (sealed addresses, with
    /// their open challenges) and its feed, and its name on other accounts' pending
    /// transfers. An email address's own state (unsubscribed, suppressed) stays: it belongs
    /// to the address. Returns how many contacts went.
    pub async fn forget_owner(&self, owner: &str) -> Result<u64, StorageError> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "DELETE FROM challenges WHERE contact_id IN (SELECT id FROM contacts WHERE owner = $1)",
        )
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        let contacts = sqlx::query("DELETE FROM contacts WHERE owner = $1")
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM feeds WHERE owner = $1")
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE contacts SET transfer_from = NULL WHERE transfer_from = $1")
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(contacts)
    }

    pub async fn delete_contact(&self, owner: &str, id: &str) -> Result<bool, StorageError> {
        let done = sqlx::query("DELETE FROM contacts WHERE id = $1 AND owner = $2")
            .bind(id)
            .bind(owner)
            .execute(&self.db.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Remove `owner`'s contacts on `channel` other than `keep` (one email per account).
    pub async fn delete_other_contacts(
        &self,
        owner: &str,
        channel: &str,
        keep: &str,
    ) -> Result<u64, StorageError> {
        let done =
            sqlx::query("DELETE FROM contacts WHERE owner = $1 AND channel = $2 AND id <> $3")
                .bind(owner)
                .bind(channel)
                .bind(keep)
                .execute(&self.db.write)
                .await?;
        Ok(done.rows_affected())
    }

    /// Every contact, on any account, on `channel` with blind index `index` (e.g. "this is
    /// not me" detaches an address from everyone who claimed it).
    pub async fn delete_contacts_by_index(
        &self,
        channel: &str,
        index: &[u8],
    ) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM contacts WHERE channel = $1 AND address_index = $2")
            .bind(channel)
            .bind(index.to_vec())
            .execute(&self.db.write)
            .await?;
        Ok(done.rows_affected())
    }

    /// Give a pending contact its address (a Telegram chat that just paired).
    pub async fn set_contact_address(
        &self,
        id: &str,
        sealed: &[u8],
        index: &[u8],
        key_version: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE contacts SET address = $1, address_index = $2, key_version = $3 WHERE id = $4",
        )
        .bind(sealed.to_vec())
        .bind(index.to_vec())
        .bind(key_version)
        .bind(id)
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    /// Mark a contact verified, atomically: its challenge goes; whoever held the same address
    /// verified loses it (a confirmed transfer); the owner's other contacts on a single-address
    /// channel go (one email per account); other pending claims on the address go when
    /// `clear_other_claims` (choosing an account on the manage page clears the rest).
    pub async fn mark_verified(
        &self,
        contact: &ContactRow,
        single_address_channel: bool,
        clear_other_claims: bool,
    ) -> Result<i64, StorageError> {
        let now = now_micros();
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM challenges WHERE contact_id = $1")
            .bind(&contact.id)
            .execute(&mut *tx)
            .await?;
        if let Some(index) = &contact.address_index {
            let filter = if clear_other_claims {
                ""
            } else {
                " AND status = 'verified'"
            };
            sqlx::query(&format!(
                "DELETE FROM contacts WHERE channel = $1 AND address_index = $2 AND id <> $3{filter}"
            ))
            .bind(&contact.channel)
            .bind(index.clone())
            .bind(&contact.id)
            .execute(&mut *tx)
            .await?;
        }
        if single_address_channel {
            sqlx::query("DELETE FROM contacts WHERE owner = $1 AND channel = $2 AND id <> $3")
                .bind(&contact.owner)
                .bind(&contact.channel)
                .bind(&contact.id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE contacts SET status = 'verified', verified_at = $1, transfer_from = NULL, \
             disabled_at = NULL, disabled_reason = NULL WHERE id = $2",
        )
        .bind(now)
        .bind(&contact.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(now)
    }

    /// Open (or replace) the challenge of a contact.
    pub async fn put_challenge(
        &self,
        contact_id: &str,
        code_hash: Option<&[u8]>,
        token_hash: Option<&[u8]>,
        expires_at: i64,
    ) -> Result<(), StorageError> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM challenges WHERE contact_id = $1")
            .bind(contact_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO challenges (contact_id, code_hash, token_hash, expires_at, attempts, \
             sent_at) VALUES ($1, $2, $3, $4, 0, $5)",
        )
        .bind(contact_id)
        .bind(code_hash.map(<[u8]>::to_vec))
        .bind(token_hash.map(<[u8]>::to_vec))
        .bind(expires_at)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn challenge(&self, contact_id: &str) -> Result<Option<ChallengeRow>, StorageError> {
        let row = sqlx::query(
            "SELECT contact_id, code_hash, token_hash, expires_at, attempts, sent_at \
             FROM challenges WHERE contact_id = $1",
        )
        .bind(contact_id)
        .fetch_optional(&self.db.write)
        .await?;
        row.as_ref().map(decode_challenge).transpose()
    }

    pub async fn challenge_by_token(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<ChallengeRow>, StorageError> {
        let row = sqlx::query(
            "SELECT contact_id, code_hash, token_hash, expires_at, attempts, sent_at \
             FROM challenges WHERE token_hash = $1",
        )
        .bind(token_hash.to_vec())
        .fetch_optional(&self.db.write)
        .await?;
        row.as_ref().map(decode_challenge).transpose()
    }

    /// Count one more attempt at a challenge's code; returns the new count.
    pub async fn count_attempt(&self, contact_id: &str) -> Result<i64, StorageError> {
        let attempts: Option<i64> = sqlx::query_scalar(
            "UPDATE challenges SET attempts = attempts + 1 WHERE contact_id = $1 \
             RETURNING attempts",
        )
        .bind(contact_id)
        .fetch_optional(&self.db.write)
        .await?;
        Ok(attempts.unwrap_or(i64::MAX))
    }

    pub async fn delete_challenge(&self, contact_id: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM challenges WHERE contact_id = $1")
            .bind(contact_id)
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    /// The state row of an email address, creating it (sealed by the caller under `id`) if
    /// it does not exist yet. Returns the row that is stored, whoever created it.
    pub async fn ensure_email_address(
        &self,
        id: &str,
        index: &[u8],
        sealed: &[u8],
        key_version: i64,
    ) -> Result<EmailAddressRow, StorageError> {
        sqlx::query(
            "INSERT INTO email_addresses (id, address_index, address, key_version, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (address_index) DO NOTHING",
        )
        .bind(id)
        .bind(index.to_vec())
        .bind(sealed.to_vec())
        .bind(key_version)
        .bind(now_micros())
        .execute(&self.db.write)
        .await?;
        self.email_address_by_index(index)
            .await?
            .ok_or_else(|| StorageError::Corrupt("email address vanished after insert".into()))
    }

    pub async fn email_address_by_index(
        &self,
        index: &[u8],
    ) -> Result<Option<EmailAddressRow>, StorageError> {
        let row = sqlx::query(&format!("{EMAIL_COLUMNS} WHERE address_index = $1"))
            .bind(index.to_vec())
            .fetch_optional(&self.db.read)
            .await?;
        row.as_ref().map(decode_email).transpose()
    }

    pub async fn email_address(&self, id: &str) -> Result<Option<EmailAddressRow>, StorageError> {
        let row = sqlx::query(&format!("{EMAIL_COLUMNS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.db.read)
            .await?;
        row.as_ref().map(decode_email).transpose()
    }

    /// The blind index of an email address row (to find the contacts that use it).
    pub async fn email_address_index(&self, id: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT address_index FROM email_addresses WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.db.write)
                .await?,
        )
    }

    /// Set (`Some(time)`) or clear (`None`) an address's unsubscribe-from-all.
    pub async fn set_unsubscribed(&self, id: &str, at: Option<i64>) -> Result<(), StorageError> {
        sqlx::query("UPDATE email_addresses SET unsubscribed_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    /// Stop all email to an address for good (`reason`: not-me, complaint, bounce).
    pub async fn suppress(&self, id: &str, reason: &str) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE email_addresses SET suppressed_at = $1, suppressed_reason = $2 WHERE id = $3",
        )
        .bind(now_micros())
        .bind(reason)
        .bind(id)
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    /// Subscribe an address to a community, or update the pipes of an existing subscription
    /// (an active one stays active).
    pub async fn upsert_standalone(
        &self,
        address_id: &str,
        community: &str,
        pipes: &[String],
        status: &str,
    ) -> Result<(), StorageError> {
        let pipes = serde_json::to_string(pipes)
            .map_err(|e| StorageError::Corrupt(format!("pipes: {e}")))?;
        sqlx::query(
            "INSERT INTO standalone_subscriptions (address_id, community, pipes, status, \
             created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (address_id, community) \
             DO UPDATE SET pipes = excluded.pipes",
        )
        .bind(address_id)
        .bind(community)
        .bind(pipes)
        .bind(status)
        .bind(now_micros())
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    pub async fn activate_standalone(
        &self,
        address_id: &str,
        community: &str,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "UPDATE standalone_subscriptions SET status = 'active' \
             WHERE address_id = $1 AND community = $2",
        )
        .bind(address_id)
        .bind(community)
        .execute(&self.db.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn standalone_of(
        &self,
        address_id: &str,
    ) -> Result<Vec<StandaloneRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT address_id, community, pipes, status, created_at FROM \
             standalone_subscriptions WHERE address_id = $1 ORDER BY community",
        )
        .bind(address_id)
        .fetch_all(&self.db.write)
        .await?;
        rows.iter().map(decode_standalone).collect()
    }

    pub async fn delete_standalone(
        &self,
        address_id: &str,
        community: Option<&str>,
    ) -> Result<u64, StorageError> {
        let done =
            match community {
                Some(community) => sqlx::query(
                    "DELETE FROM standalone_subscriptions WHERE address_id = $1 AND community = $2",
                )
                .bind(address_id)
                .bind(community)
                .execute(&self.db.write)
                .await?,
                None => {
                    sqlx::query("DELETE FROM standalone_subscriptions WHERE address_id = $1")
                        .bind(address_id)
                        .execute(&self.db.write)
                        .await?
                }
            };
        Ok(done.rows_affected())
    }

    /// A page of a community's deliverable email-only subscribers (active, address neither
    /// unsubscribed nor suppressed), in address-id order after `after`.
    pub async fn standalone_page(
        &self,
        community: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<StandaloneRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT s.address_id, s.community, s.pipes, s.status, s.created_at \
             FROM standalone_subscriptions s JOIN email_addresses a ON a.id = s.address_id \
             WHERE s.community = $1 AND s.address_id > $2 AND s.status = 'active' \
             AND a.unsubscribed_at IS NULL AND a.suppressed_at IS NULL \
             ORDER BY s.address_id LIMIT $3",
        )
        .bind(community)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(decode_standalone).collect()
    }

    /// `(owner, channel)` for every verified contact of `owners` that may be delivered to:
    /// not disabled, an email contact also needs its address neither unsubscribed nor
    /// suppressed, and an SMS contact its number not opted out. A member with a private feed
    /// is reachable on `feed`.
    pub async fn reachable(
        &self,
        owners: &[String],
    ) -> Result<Vec<(String, String)>, StorageError> {
        let sql = format!(
            "SELECT c.owner, c.channel FROM contacts c \
             LEFT JOIN email_addresses a ON c.channel = 'email' \
                  AND a.address_index = c.address_index \
             WHERE c.status = 'verified' AND c.disabled_at IS NULL AND c.owner IN {0} \
             AND (c.channel <> 'email' OR (a.id IS NOT NULL AND a.unsubscribed_at IS NULL \
                  AND a.suppressed_at IS NULL)) \
             AND NOT EXISTS (SELECT 1 FROM sms_opt_outs o WHERE c.channel = 'sms' \
                  AND o.number_index = c.address_index) \
             UNION ALL SELECT owner, 'feed' FROM feeds WHERE owner IN {0}",
            super::json_list(self.db.backend, 1)
        );
        let rows = super::fetch_listed(&self.db.read, &sql, owners).await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// Up to `limit` sealed values not yet under key `current` (contacts and email addresses).
    pub async fn stale_sealed(
        &self,
        current: i64,
        limit: i64,
    ) -> Result<(Vec<SealedRow>, Vec<SealedRow>), StorageError> {
        let contacts = sqlx::query(
            "SELECT id, owner, channel, address, key_version FROM contacts \
             WHERE address IS NOT NULL AND key_version <> $1 ORDER BY id LIMIT $2",
        )
        .bind(current)
        .bind(limit)
        .fetch_all(&self.db.read)
        .await?;
        let emails = sqlx::query(
            "SELECT id, '' AS owner, '' AS channel, address, key_version FROM email_addresses \
             WHERE key_version <> $1 ORDER BY id LIMIT $2",
        )
        .bind(current)
        .bind(limit)
        .fetch_all(&self.db.read)
        .await?;
        let decode = |row: &AnyRow| -> Result<SealedRow, StorageError> {
            Ok(SealedRow {
                id: row.try_get(0)?,
                owner: row.try_get(1)?,
                channel: row.try_get(2)?,
                sealed: row.try_get(3)?,
                key_version: row.try_get(4)?,
            })
        };
        Ok((
            contacts.iter().map(decode).collect::<Result<_, _>>()?,
            emails.iter().map(decode).collect::<Result<_, _>>()?,
        ))
    }

    /// Replace a sealed value, only if it is still the one read (a concurrent change wins and
    /// the row is picked up again on the next pass).
    pub async fn reseal(
        &self,
        email_address: bool,
        row: &SealedRow,
        sealed: &[u8],
        key_version: i64,
    ) -> Result<bool, StorageError> {
        let table = if email_address {
            "email_addresses"
        } else {
            "contacts"
        };
        let done = sqlx::query(&format!(
            "UPDATE {table} SET address = $1, key_version = $2 \
             WHERE id = $3 AND key_version = $4 AND address = $5"
        ))
        .bind(sealed.to_vec())
        .bind(key_version)
        .bind(&row.id)
        .bind(row.key_version)
        .bind(row.sealed.clone())
        .execute(&self.db.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// How many sealed values are not under key `current`.
    pub async fn count_stale(&self, current: i64) -> Result<i64, StorageError> {
        let contacts: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM contacts WHERE address IS NOT NULL AND key_version <> $1",
        )
        .bind(current)
        .fetch_one(&self.db.read)
        .await?;
        let emails: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM email_addresses WHERE key_version <> $1")
                .bind(current)
                .fetch_one(&self.db.read)
                .await?;
        Ok(contacts + emails)
    }

    pub async fn ping(&self) -> Result<(), StorageError> {
        self.db.ping().await
    }
}

/// The contact (of the `contacts` table, unaliased) is not an SMS contact whose number opted
/// out.
const NOT_OPTED_OUT: &str = "NOT EXISTS (SELECT 1 FROM sms_opt_outs o \
     WHERE contacts.channel = 'sms' AND o.number_index = contacts.address_index)";

/// What Mailman's bounce scoring needs of an email address (the score itself is computed by
/// `inbound`).
#[derive(Debug, Clone, PartialEq)]
pub struct BounceRecord {
    pub address_id: String,
    pub suppressed: bool,
    pub score: f64,
    /// When the last bounce that counted happened (microseconds; 0: none yet).
    pub last_at: i64,
}

/// Compliance: bounce scores and suppression of email addresses, opt-outs of phone numbers
/// and chats. Keyed by blind index like everything else here.
impl VaultStore {
    /// The bounce record of the email address with blind index `index`.
    pub async fn bounce_record(&self, index: &[u8]) -> Result<Option<BounceRecord>, StorageError> {
        let row = sqlx::query(
            "SELECT id, suppressed_at, bounce_score, bounce_last_at FROM email_addresses \
             WHERE address_index = $1",
        )
        .bind(index.to_vec())
        .fetch_optional(&self.db.write)
        .await?;
        row.map(|row| {
            Ok(BounceRecord {
                address_id: row.try_get(0)?,
                suppressed: row.try_get::<Option<i64>, _>(1)?.is_some(),
                score: row.try_get(2)?,
                last_at: row.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Store a new bounce score, only if the last counted bounce is still `expected_last_at`
    /// (every counted bounce moves it, so a concurrent update makes this return `false` and
    /// the caller scores again on fresh figures).
    pub async fn set_bounce_score(
        &self,
        address_id: &str,
        expected_last_at: i64,
        score: f64,
        last_at: i64,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "UPDATE email_addresses SET bounce_score = $1, bounce_last_at = $2 \
             WHERE id = $3 AND bounce_last_at = $4",
        )
        .bind(score)
        .bind(last_at)
        .bind(address_id)
        .bind(expected_last_at)
        .execute(&self.db.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Suppress an address unless it already is (the first reason is kept). `true` if this
    /// call suppressed it.
    pub async fn suppress_once(&self, id: &str, reason: &str) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "UPDATE email_addresses SET suppressed_at = $1, suppressed_reason = $2 \
             WHERE id = $3 AND suppressed_at IS NULL",
        )
        .bind(now_micros())
        .bind(reason)
        .bind(id)
        .execute(&self.db.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Record that the number with blind index `index` opted out, and disable its verified
    /// SMS contacts (reason `stop`), in one transaction. Returns how many contacts were
    /// disabled now. Opting out twice is harmless.
    pub async fn opt_out_sms(&self, index: &[u8]) -> Result<u64, StorageError> {
        let now = now_micros();
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO sms_opt_outs (number_index, opted_out_at) VALUES ($1, $2) \
             ON CONFLICT (number_index) DO NOTHING",
        )
        .bind(index.to_vec())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(
            "UPDATE contacts SET disabled_at = $1, disabled_reason = 'stop' \
             WHERE channel = 'sms' AND address_index = $2 AND status = 'verified' \
             AND disabled_at IS NULL",
        )
        .bind(now)
        .bind(index.to_vec())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Lift the opt-out of the number with blind index `index` and re-enable its disabled SMS
    /// contacts, whatever disabled them: its STOP, or a provider that refused it as
    /// unsubscribed or barred (the number texting an opt-in word lifts those too). Returns how
    /// many came back.
    pub async fn opt_in_sms(&self, index: &[u8]) -> Result<u64, StorageError> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM sms_opt_outs WHERE number_index = $1")
            .bind(index.to_vec())
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query(
            "UPDATE contacts SET disabled_at = NULL, disabled_reason = NULL \
             WHERE channel = 'sms' AND address_index = $1 AND disabled_at IS NOT NULL",
        )
        .bind(index.to_vec())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Whether the number with blind index `index` has opted out.
    pub async fn sms_opted_out(&self, index: &[u8]) -> Result<bool, StorageError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT opted_out_at FROM sms_opt_outs WHERE number_index = $1")
                .bind(index.to_vec())
                .fetch_optional(&self.db.write)
                .await?;
        Ok(found.is_some())
    }

    /// Disable every enabled, verified contact on `channel` whose address has blind index
    /// `index` (a Telegram chat that sent /stop). Returns how many.
    pub async fn disable_contacts_by_index(
        &self,
        channel: &str,
        index: &[u8],
        reason: &str,
    ) -> Result<u64, StorageError> {
        let done = sqlx::query(
            "UPDATE contacts SET disabled_at = $1, disabled_reason = $2 \
             WHERE channel = $3 AND address_index = $4 AND status = 'verified' \
             AND disabled_at IS NULL",
        )
        .bind(now_micros())
        .bind(reason)
        .bind(channel)
        .bind(index.to_vec())
        .execute(&self.db.write)
        .await?;
        Ok(done.rows_affected())
    }

    /// Re-enable every disabled contact on `channel` whose address has blind index `index`,
    /// whatever disabled it (a Telegram chat that wrote to the bot again is reachable).
    /// Returns how many.
    pub async fn enable_contacts_by_index(
        &self,
        channel: &str,
        index: &[u8],
    ) -> Result<u64, StorageError> {
        let done = sqlx::query(
            "UPDATE contacts SET disabled_at = NULL, disabled_reason = NULL \
             WHERE channel = $1 AND address_index = $2 AND disabled_at IS NOT NULL",
        )
        .bind(channel)
        .bind(index.to_vec())
        .execute(&self.db.write)
        .await?;
        Ok(done.rows_affected())
    }
}

const EMAIL_COLUMNS: &str = "SELECT id, address, key_version, unsubscribed_at, suppressed_at, \
     suppressed_reason FROM email_addresses";

fn decode_contact(row: &AnyRow) -> Result<ContactRow, StorageError> {
    Ok(ContactRow {
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        channel: row.try_get("channel")?,
        status: row.try_get("status")?,
        address: row.try_get("address")?,
        address_index: row.try_get("address_index")?,
        key_version: row.try_get("key_version")?,
        created_at: row.try_get("created_at")?,
        verified_at: row.try_get("verified_at")?,
        transfer_from: row.try_get("transfer_from")?,
        disabled_at: row.try_get("disabled_at")?,
        disabled_reason: row.try_get("disabled_reason")?,
    })
}

fn decode_challenge(row: &AnyRow) -> Result<ChallengeRow, StorageError> {
    Ok(ChallengeRow {
        contact_id: row.try_get("contact_id")?,
        code_hash: row.try_get("code_hash")?,
        token_hash: row.try_get("token_hash")?,
        expires_at: row.try_get("expires_at")?,
        attempts: row.try_get("attempts")?,
        sent_at: row.try_get("sent_at")?,
    })
}

fn decode_email(row: &AnyRow) -> Result<EmailAddressRow, StorageError> {
    Ok(EmailAddressRow {
        id: row.try_get("id")?,
        address: row.try_get("address")?,
        key_version: row.try_get("key_version")?,
        unsubscribed_at: row.try_get("unsubscribed_at")?,
        suppressed_at: row.try_get("suppressed_at")?,
        suppressed_reason: row.try_get("suppressed_reason")?,
    })
}

fn decode_standalone(row: &AnyRow) -> Result<StandaloneRow, StorageError> {
    let pipes: String = row.try_get("pipes")?;
    Ok(StandaloneRow {
        address_id: row.try_get("address_id")?,
        community: row.try_get("community")?,
        pipes: serde_json::from_str(&pipes)
            .map_err(|e| StorageError::Corrupt(format!("standalone pipes: {e}")))?,
        status: row.try_get("status")?,
        created_at: row.try_get("created_at")?,
    })
}
