//! Where a delivery goes: the opened addresses of a recipient on one channel, for the
//! dispatcher, and what happens to a contact a provider reports gone.
//!
//! This is the only place delivery sees plaintext addresses; they live in memory for one
//! claim's sends.
//! DESIGN §3 step 4 is checked again here, at send time, because a member may remove a
//! contact, an address may unsubscribe or be suppressed, between publish and delivery.

use std::collections::HashMap;

use secrecy::SecretString;

use super::{Vault, VaultError, contact_aad};
use crate::model::{Channel, PushSubscription};
use crate::storage::{ContactRow, EmailAddressRow, StorageError};

/// One opened address to send a delivery to.
pub enum Target {
    Email {
        /// The address's state row (its manage and unsubscribe links are signed over it).
        address_id: String,
        to: String,
        manage_url: String,
        unsubscribe_url: String,
    },
    Sms {
        contact_id: String,
        number: String,
    },
    Telegram {
        contact_id: String,
        chat_id: i64,
    },
    Push {
        contact_id: String,
        subscription: PushSubscription,
    },
    Webhook {
        contact_id: String,
        url: String,
        /// `whsec_…`, the signing secret its owner was given.
        secret: SecretString,
    },
}

impl Target {
    /// The contact a provider's "gone" answer is about (email addresses are handled by
    /// suppression, not here).
    pub fn contact_id(&self) -> Option<&str> {
        match self {
            Target::Email { .. } => None,
            Target::Sms { contact_id, .. }
            | Target::Telegram { contact_id, .. }
            | Target::Push { contact_id, .. }
            | Target::Webhook { contact_id, .. } => Some(contact_id),
        }
    }
}

/// What a webhook contact seals: its endpoint and its signing secret, together.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct SealedWebhook {
    pub url: String,
    pub secret: String,
}

impl Vault {
    /// The addresses `recipient` (a DID, or `email:<address id>`) can be reached at on
    /// `channel` now. Empty when there is none any more; inbox and feed need none.
    pub async fn targets(
        &self,
        recipient: &str,
        channel: Channel,
    ) -> Result<Vec<Target>, VaultError> {
        let mut all = self.targets_of(&[recipient.to_string()], channel).await?;
        Ok(all.remove(recipient).unwrap_or_default())
    }

    /// [`Vault::targets`] for many recipients on one channel, in a few queries: what a
    /// dispatcher's claim needs at once. Recipients with no target are absent.
    pub async fn targets_of(
        &self,
        recipients: &[String],
        channel: Channel,
    ) -> Result<HashMap<String, Vec<Target>>, VaultError> {
        let mut out: HashMap<String, Vec<Target>> = HashMap::new();
        if matches!(channel, Channel::Inbox | Channel::Feed) {
            return Ok(out);
        }
        let (standalone, members): (Vec<&String>, Vec<&String>) =
            recipients.iter().partition(|r| r.starts_with("email:"));
        if channel == Channel::Email && !standalone.is_empty() {
            let ids: Vec<String> = standalone
                .iter()
                .filter_map(|r| r.strip_prefix("email:"))
                .map(str::to_string)
                .collect();
            for row in self.store.email_addresses(&ids).await? {
                if let Some(target) = self.email_target(&row).await? {
                    out.entry(format!("email:{}", row.id))
                        .or_default()
                        .push(target);
                }
            }
        }
        if members.is_empty() {
            return Ok(out);
        }
        let owners: Vec<String> = members.into_iter().cloned().collect();
        if channel == Channel::Email {
            for (owner, row) in self.store.deliverable_email_addresses_of(&owners).await? {
                if let Some(target) = self.email_target(&row).await? {
                    out.entry(owner).or_default().push(target);
                }
            }
            return Ok(out);
        }
        let contacts = self
            .store
            .deliverable_contacts_of(&owners, channel.as_str())
            .await?;
        for contact in contacts {
            if let Some(target) = self.contact_target(channel, &contact)? {
                out.entry(contact.owner.clone()).or_default().push(target);
            }
        }
        Ok(out)
    }

    /// A non-email contact opened into a target.
    fn contact_target(
        &self,
        channel: Channel,
        contact: &ContactRow,
    ) -> Result<Option<Target>, VaultError> {
        let Some(sealed) = &contact.address else {
            return Ok(None);
        };
        let plain = self.open_string(
            &contact_aad(&contact.id, &contact.owner, &contact.channel),
            sealed,
        )?;
        let corrupt = |what: &str| VaultError::Storage(StorageError::Corrupt(what.into()));
        let contact_id = contact.id.clone();
        Ok(Some(match channel {
            Channel::Sms => Target::Sms {
                contact_id,
                number: plain,
            },
            Channel::Telegram => Target::Telegram {
                contact_id,
                chat_id: plain.parse().map_err(|_| corrupt("telegram chat id"))?,
            },
            Channel::Webpush => Target::Push {
                contact_id,
                subscription: serde_json::from_str(&plain)
                    .map_err(|_| corrupt("push subscription"))?,
            },
            Channel::Webhook => {
                let hook: SealedWebhook =
                    serde_json::from_str(&plain).map_err(|_| corrupt("webhook"))?;
                Target::Webhook {
                    contact_id,
                    url: hook.url,
                    secret: SecretString::from(hook.secret),
                }
            }
            Channel::Email | Channel::Inbox | Channel::Feed => return Ok(None),
        }))
    }

    /// An email address as a target, unless it unsubscribed from all email or is suppressed.
    async fn email_target(&self, row: &EmailAddressRow) -> Result<Option<Target>, VaultError> {
        if row.unsubscribed_at.is_some() || row.suppressed_at.is_some() {
            return Ok(None);
        }
        let to = self.open_email_address(row).await?;
        let manage_url = self.manage_link(&row.id);
        // RFC 8058 one-click unsubscribe: the same signed token as the manage page.
        let unsubscribe_url = manage_url.replacen("/manage?", "/unsubscribe?", 1);
        Ok(Some(Target::Email {
            address_id: row.id.clone(),
            to,
            manage_url,
            unsubscribe_url,
        }))
    }

    /// A provider said the address behind `contact_id` is gone for good. A push
    /// subscription its push service expired (404/410) is removed, as RFC 8030 asks; any
    /// other contact is disabled, so its owner sees why it went quiet and can verify again.
    pub async fn contact_gone(
        &self,
        contact_id: &str,
        channel: Channel,
        reason: &str,
    ) -> Result<(), VaultError> {
        if channel == Channel::Webpush {
            self.store.forget_contact(contact_id).await?;
        } else {
            self.store.disable_contact(contact_id, reason).await?;
        }
        Ok(())
    }
}
