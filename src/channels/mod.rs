//! Channel adapters: the code that actually sends a message over one delivery channel
//! (email over SMTP, SMS through a Twilio-shaped gateway, Telegram's Bot API, web push).
//!
//! Owns the providers' wire formats and the classification of their answers into
//! [`SendError`] kinds, which decide what the caller does next (retry, fail over, give up,
//! disable the contact). Used by the vault for verification messages and by the dispatcher for
//! deliveries.
//! Must not touch: storage, preferences, or who gets what — an adapter sends one message to one
//! address it is handed. Error texts never contain the address (they end up in logs and in the
//! outbox's `last_error`).

pub mod email;
mod guard;
pub mod mime;
mod pool;
pub mod qp;
pub mod resend;
pub mod sms;
mod smtp;
pub mod telegram;
pub mod vonage;
pub mod webhook;
pub mod webpush;

use std::time::Duration;

/// A message the provider accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The provider's id for it (SMTP Message-ID, Twilio SID, Telegram message_id, push
    /// service Location), when it gives one.
    pub provider_id: Option<String>,
}

/// Why a send failed, classified by what should happen next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The channel has no provider configured: reported as unavailable, never skipped silently.
    #[error("channel {0} has no provider configured")]
    Unavailable(&'static str),
    /// May succeed later (5xx, 429, timeouts, refused connections); `retry_after` when the
    /// provider said how long to wait.
    #[error("temporary failure: {reason}")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Will not succeed as sent (4xx, bad credentials, invalid message): no retry, no failover.
    #[error("permanent failure: {reason}")]
    Permanent { reason: String },
    /// The address is gone (Telegram bot blocked, push subscription expired, number
    /// unsubscribed at the carrier): the contact should stop being used.
    #[error("recipient gone: {reason}")]
    Gone { reason: String },
}

impl SendError {
    pub fn transient(reason: impl Into<String>) -> Self {
        SendError::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        SendError::Permanent {
            reason: reason.into(),
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, SendError::Transient { .. })
    }
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// A request to `provider` that got no HTTP answer. Always transient; the reason names only
/// the kind of failure, never the URL (it can hold a token, an account id or an endpoint).
pub(crate) fn transport_error(provider: &str, err: reqwest::Error) -> SendError {
    let err = err.without_url();
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "failed before an answer"
    };
    SendError::transient(format!("{provider} request {kind}"))
}

/// Every channel's adapter, present when its provider is configured.
pub struct Channels {
    pub email: Option<email::EmailSender>,
    pub sms: Option<sms::SmsSender>,
    pub telegram: Option<telegram::TelegramBot>,
    pub webpush: Option<webpush::WebPushSender>,
    /// Always there: a webhook needs no provider, only the member's endpoint.
    pub webhook: webhook::WebhookSender,
}

/// A provider is configured but its settings do not work.
#[derive(Debug, thiserror::Error)]
#[error("{channel}: {reason}")]
pub struct ChannelConfigError {
    pub channel: &'static str,
    pub reason: String,
}

impl Channels {
    pub fn from_settings(
        settings: &crate::settings::ProviderSettings,
    ) -> Result<Self, ChannelConfigError> {
        let fail = |channel: &'static str| {
            move |e: &dyn std::fmt::Display| ChannelConfigError {
                channel,
                reason: e.to_string(),
            }
        };
        Ok(Self {
            email: email::EmailSender::from_settings(settings).map_err(|e| fail("email")(&e))?,
            sms: sms::SmsSender::from_settings(settings).map_err(|e| fail("sms")(&e))?,
            telegram: telegram::TelegramBot::from_settings(settings)
                .map_err(|e| fail("telegram")(&e))?,
            webpush: webpush::WebPushSender::from_settings(settings)
                .map_err(|e| fail("webpush")(&e))?,
            webhook: webhook::WebhookSender::new(settings.webhook_allow_private)
                .map_err(|e| fail("webhook")(&e))?,
        })
    }

    /// Names of the external channels that can send, for the startup log.
    pub fn available(&self) -> Vec<&'static str> {
        [
            ("email", self.email.is_some()),
            ("sms", self.sms.is_some()),
            ("telegram", self.telegram.is_some()),
            ("webpush", self.webpush.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect()
    }
}
