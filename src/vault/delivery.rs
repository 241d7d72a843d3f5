//! Where a delivery goes: the opened addresses of a recipient on one channel, for the
//! dispatcher, and what happens to a contact a provider reports gone.
//!
//! This is the only place delivery sees plaintext addresses; they live in memory for one send.
//! DESIGN §3 step 4 is checked again here, at send time, because a member may remove a
//! contact, an address may unsubscribe or be suppressed, between publish and delivery.

use secrecy::SecretString;

use super::{Vault, VaultError, contact_aad};
use crate::model::{Channel, PushSubscription};
use crate::storage::{ContactRow, StorageError};

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
        if let Some(address_id) = recipient.strip_prefix("email:") {
            if channel != Channel::Email {
                return Ok(Vec::new());
            }
            let Some(row) = self.store.email_address(address_id).await? else {
                return Ok(Vec::new());
            };
            return Ok(self.email_target(&row).await?.into_iter().collect());
        }
        if matches!(channel, Channel::Inbox | Channel::Feed) {
            return Ok(Vec::new());
        }
        let contacts = self
            .store
            .deliverable_contacts(recipient, channel.as_str())
            .await?;
        let mut out = Vec::with_capacity(contacts.len());
        for contact in contacts {
            if let Some(target) = self.contact_target(channel, &contact).await? {
                out.push(target);
            }
        }
        Ok(out)
    }

    async fn contact_target(
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
            Channel::Email => {
                let Some(index) = &contact.address_index else {
                    return Ok(None);
                };
                let Some(row) = self.store.email_address_by_index(index).await? else {
                    return Ok(None);
                };
                return self.email_target(&row).await;
            }
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
            Channel::Inbox | Channel::Feed => return Ok(None),
        }))
    }

    /// An email address as a target, unless it unsubscribed from all email or is suppressed.
    async fn email_target(
        &self,
        row: &crate::storage::EmailAddressRow,
    ) -> Result<Option<Target>, VaultError> {
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
