//! Forgetting deleted accounts. When the firehose says an account is deleted, the index purges
//! its records at once; this sweep then removes what the vault holds for it — its contacts
//! (sealed addresses, open challenges) and its private feed — so no contact detail outlives
//! the account.
//!
//! Owns the sweep and its pace. Must not touch: an email address's own state (unsubscribed,
//! suppressed: it belongs to the address, which an email-only subscriber may share), numbers
//! that replied STOP (they are kept by blind index for compliance), or the index's records.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Vault, VaultError};

/// Accounts forgotten per pass at most; a pass that fills it runs again at once.
const BATCH: usize = 100;

/// How often a delivering process looks for deleted accounts to forget. Nothing is sent to a
/// deleted account meanwhile: delivery already skips it.
pub const EVERY: Duration = Duration::from_secs(60);

impl Vault {
    /// Forget up to `limit` deleted accounts the vault has not forgotten yet. Returns how many
    /// it forgot. Each is marked in the index only once its vault rows are gone, so an
    /// interrupted pass is finished by the next.
    pub async fn forget_deleted_accounts(
        &self,
        limit: usize,
        now: i64,
    ) -> Result<usize, VaultError> {
        let dids = self.index.accounts_to_forget(limit).await?;
        for did in &dids {
            let contacts = self.store.forget_owner(did).await?;
            self.index.mark_forgotten(did, now).await?;
            tracing::info!(did, contacts, "forgot a deleted account's contacts");
        }
        Ok(dids.len())
    }
}

/// Sweep every `every` until `shutdown`. Failures are logged and tried again next time.
pub async fn run(vault: Arc<Vault>, every: Duration, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let now = chrono::Utc::now().timestamp_micros();
        match vault.forget_deleted_accounts(BATCH, now).await {
            Ok(n) if n == BATCH => continue,
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "forgetting deleted accounts failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
