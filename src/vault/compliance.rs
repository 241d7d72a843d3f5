//! What recipients, mailbox providers and carriers told Herald, applied to the vault: email
//! addresses suppressed after a complaint or bounces, phone numbers that replied STOP (and
//! START), and the texts that answer them.
//!
//! The decisions (which keyword, which bounce counts, Mailman's score) are `inbound`'s; this
//! file turns an address into its blind index and records the outcome. Nothing here logs or
//! returns an address: callers get ids, counts and flags.

use super::address::{parse_email, parse_phone};
use super::{Vault, VaultError};
use crate::model::Channel;

pub use super::messages::ComplianceReply;

/// An email address's bounce state, as Mailman's scoring reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct BounceState {
    /// The address's state row (what suppression and the score are recorded on).
    pub address_id: String,
    pub suppressed: bool,
    pub score: f64,
    /// When the last bounce that counted happened (microseconds; 0: none yet).
    pub last_at: i64,
}

impl Vault {
    /// The bounce state of `email`, `None` when Herald has never had that address.
    pub async fn bounce_state(&self, email: &str) -> Result<Option<BounceState>, VaultError> {
        let email = parse_email(email)?;
        let index = self.blind_index(Channel::Email, &email);
        Ok(self
            .store
            .bounce_record(&index)
            .await?
            .map(|r| BounceState {
                address_id: r.address_id,
                suppressed: r.suppressed,
                score: r.score,
                last_at: r.last_at,
            }))
    }

    /// Record a new bounce score for an address, if no other bounce was counted since
    /// `state` was read. `false`: read the state again and score again.
    pub async fn record_bounce_score(
        &self,
        state: &BounceState,
        score: f64,
        last_at: i64,
    ) -> Result<bool, VaultError> {
        Ok(self
            .store
            .set_bounce_score(&state.address_id, state.last_at, score, last_at)
            .await?)
    }

    /// Stop all email to an address (`reason`: complaint, bounce, bounces). `false` when it
    /// was suppressed already; the first reason stays.
    pub async fn suppress_address(
        &self,
        address_id: &str,
        reason: &str,
    ) -> Result<bool, VaultError> {
        let done = self.store.suppress_once(address_id, reason).await?;
        if done {
            tracing::info!(reason, "an email address was suppressed");
        }
        Ok(done)
    }

    /// A number replied STOP: no SMS goes to it any more, and its verified contacts show as
    /// disabled. Returns how many contacts were disabled now.
    pub async fn sms_opt_out(&self, number: &str) -> Result<u64, VaultError> {
        let index = self.blind_index(Channel::Sms, &parse_phone(number)?);
        let disabled = self.store.opt_out_sms(&index).await?;
        tracing::info!(disabled, "a phone number opted out of SMS");
        Ok(disabled)
    }

    /// A number replied START: the opt-out is lifted and its disabled SMS contacts come back
    /// (those its STOP disabled, and those a provider refused as unsubscribed: a number that
    /// texts us is reachable). Returns how many.
    pub async fn sms_opt_in(&self, number: &str) -> Result<u64, VaultError> {
        let index = self.blind_index(Channel::Sms, &parse_phone(number)?);
        let enabled = self.store.opt_in_sms(&index).await?;
        tracing::info!(enabled, "a phone number opted in to SMS again");
        Ok(enabled)
    }

    /// Whether `number` has opted out of SMS from Herald.
    pub async fn sms_opted_out(&self, number: &str) -> Result<bool, VaultError> {
        let index = self.blind_index(Channel::Sms, &parse_phone(number)?);
        Ok(self.store.sms_opted_out(&index).await?)
    }

    /// The answer to a keyword, in `lang` (`en`, `es`, `fr`, `de`; anything else is English).
    pub fn compliance_reply(&self, reply: ComplianceReply, lang: &str) -> String {
        self.messages
            .compliance(reply, lang, self.config.public_url.as_str())
    }
}

impl Vault {
    /// A Telegram chat sent /stop: its contacts (on any account) are disabled with reason
    /// `stop`. Returns how many.
    pub(super) async fn telegram_stop(&self, chat: i64) -> Result<u64, VaultError> {
        let index = self.blind_index(Channel::Telegram, &chat.to_string());
        let disabled = self
            .store
            .disable_contacts_by_index(Channel::Telegram.as_str(), &index, "stop")
            .await?;
        tracing::info!(disabled, "a Telegram chat sent /stop");
        Ok(disabled)
    }

    /// A Telegram chat sent a bare /start: whatever disabled its contacts (/stop, or the bot
    /// blocked), the chat is writing to the bot, so it can be written to again. Returns how
    /// many contacts came back.
    pub(super) async fn telegram_resume(&self, chat: i64) -> Result<u64, VaultError> {
        let index = self.blind_index(Channel::Telegram, &chat.to_string());
        let enabled = self
            .store
            .enable_contacts_by_index(Channel::Telegram.as_str(), &index)
            .await?;
        if enabled > 0 {
            tracing::info!(enabled, "a stopped Telegram chat sent /start");
        }
        Ok(enabled)
    }
}
