//! Key rotation (`herald keys rotate`): add a key to the ring, then re-seal every stored
//! address under it, a batch at a time. Old keys stay in the ring, so every process keeps
//! decrypting throughout; a process that meets the new version reloads the ring. Interrupted,
//! it resumes: a run that finds values not yet under the newest key finishes that rotation
//! instead of starting another.

use std::ops::ControlFlow;

use super::crypto::KeyRing;
use super::{Vault, VaultError, contact_aad, email_aad};
use crate::storage::SealedRow;

/// Values re-sealed per batch.
const BATCH: i64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationReport {
    /// The version everything is now sealed under.
    pub version: u32,
    /// Whether this run added that key (false: it resumed an unfinished rotation).
    pub added_key: bool,
    /// Values re-sealed by this run.
    pub resealed: u64,
    /// Values still under an older key (non-zero only if the run was stopped).
    pub remaining: i64,
}

impl Vault {
    /// Rotate, reporting progress after each batch; `progress` returning `Break` stops the run
    /// early (it can be resumed). The key ring must come from the key file: with an inline
    /// `HERALD_VAULT_KEY` the operator adds the key there, and this only re-seals.
    pub async fn rotate_keys(
        &self,
        progress: impl FnMut(u64, i64) -> ControlFlow<()>,
    ) -> Result<RotationReport, VaultError> {
        self.rotate_keys_in_batches(BATCH, progress).await
    }

    /// [`rotate_keys`](Self::rotate_keys) with `batch` values re-sealed between progress
    /// reports.
    pub async fn rotate_keys_in_batches(
        &self,
        batch: i64,
        mut progress: impl FnMut(u64, i64) -> ControlFlow<()>,
    ) -> Result<RotationReport, VaultError> {
        let mut ring = self.reload_keys()?;
        let mut added_key = false;
        let stale = self
            .store
            .count_stale(i64::from(ring.current_version()))
            .await?;
        if stale == 0 && self.config.keys.key.is_none() {
            let next = ring.with_new_key();
            next.save(&self.config.keys.key_file)?;
            ring = self.reload_keys()?;
            added_key = true;
            tracing::info!(version = ring.current_version(), "vault key added");
        }
        let current = i64::from(ring.current_version());
        let mut resealed = 0u64;
        loop {
            let (contacts, emails) = self.store.stale_sealed(current, batch).await?;
            if contacts.is_empty() && emails.is_empty() {
                break;
            }
            for row in &contacts {
                let aad = contact_aad(&row.id, &row.owner, &row.channel);
                resealed += u64::from(self.reseal(&ring, false, row, &aad).await?);
            }
            for row in &emails {
                resealed += u64::from(self.reseal(&ring, true, row, &email_aad(&row.id)).await?);
            }
            let remaining = self.store.count_stale(current).await?;
            if progress(resealed, remaining).is_break() {
                return Ok(RotationReport {
                    version: ring.current_version(),
                    added_key,
                    resealed,
                    remaining,
                });
            }
        }
        Ok(RotationReport {
            version: ring.current_version(),
            added_key,
            resealed,
            remaining: 0,
        })
    }

    async fn reseal(
        &self,
        ring: &KeyRing,
        email_address: bool,
        row: &SealedRow,
        aad: &[u8],
    ) -> Result<bool, VaultError> {
        let plain = ring.open(aad, &row.sealed)?;
        let sealed = ring.seal(aad, &plain);
        Ok(self
            .store
            .reseal(
                email_address,
                row,
                &sealed,
                i64::from(ring.current_version()),
            )
            .await?)
    }
}
