//! The providers each channel sends through, in failover order, each behind a circuit
//! breaker.
//!
//! A transient failure (5xx, 429, timeout, refused connection) counts against the provider's
//! breaker and the same message goes to the next provider at once; after
//! [`BREAKER_FAILURES`] transient failures in a row the breaker opens and the provider is
//! skipped until its (jittered, growing) pause ends, then one call probes it. A permanent
//! failure (4xx, bad credentials, an invalid message) or a "gone" recipient is an answer,
//! not an outage: it neither fails over nor counts against the breaker. Breakers are per
//! process (`failsafe`), which is what matters: each process stops hammering a provider
//! that is down for it.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use failsafe::backoff::EqualJittered;
use failsafe::failure_policy::ConsecutiveFailures;
use failsafe::{Config, StateMachine};

use crate::channels::email::{EmailSender, OutgoingEmail, QpBodies};
use crate::channels::resend::ResendSender;
use crate::channels::sms::SmsSender;
use crate::channels::telegram::TelegramBot;
use crate::channels::vonage::VonageSender;
use crate::channels::webhook::WebhookSender;
use crate::channels::webpush::WebPushSender;
use crate::channels::{Channels, SendError, Sent};
use crate::metrics::Metrics;
use crate::model::Channel;
use crate::settings::ProviderSettings;

/// Transient failures in a row that open a provider's breaker.
pub const BREAKER_FAILURES: u32 = 5;
/// First pause of an open breaker; it grows (with jitter) up to [`BREAKER_MAX_PAUSE`] while
/// probes keep failing.
pub const BREAKER_PAUSE: Duration = Duration::from_secs(10);
pub const BREAKER_MAX_PAUSE: Duration = Duration::from_secs(300);

/// One way to send email.
pub enum EmailProvider {
    Smtp(EmailSender),
    Resend(ResendSender),
}

impl EmailProvider {
    /// Sends `email`; over SMTP with `encoded` as its bodies when given (an HTTP API takes
    /// the plain text).
    pub async fn send(
        &self,
        email: &OutgoingEmail,
        encoded: Option<&QpBodies>,
    ) -> Result<Sent, SendError> {
        match self {
            EmailProvider::Smtp(s) => s.send_encoded(email, encoded).await,
            EmailProvider::Resend(r) => r.send(email).await,
        }
    }
}

/// One way to send SMS.
pub enum SmsProvider {
    Twilio(SmsSender),
    Vonage(VonageSender),
}

impl SmsProvider {
    pub async fn send(&self, to: &str, body: &str, key: &str) -> Result<Sent, SendError> {
        match self {
            SmsProvider::Twilio(s) => s.send(to, body, Some(key)).await,
            SmsProvider::Vonage(v) => v.send(to, body, Some(key)).await,
        }
    }
}

type Breaker = StateMachine<ConsecutiveFailures<EqualJittered>, BreakerEvents>;

/// Logs and counts a breaker's changes of state.
#[derive(Clone)]
pub struct BreakerEvents {
    provider: &'static str,
    metrics: Arc<Metrics>,
}

impl failsafe::Instrument for BreakerEvents {
    fn on_call_rejected(&self) {
        self.metrics.breaker_rejected(self.provider);
    }

    fn on_open(&self) {
        tracing::warn!(provider = self.provider, "circuit breaker opened");
        self.metrics.breaker_opened(self.provider);
    }

    fn on_half_open(&self) {
        tracing::info!(
            provider = self.provider,
            "circuit breaker half-open: probing"
        );
    }

    fn on_closed(&self) {
        tracing::info!(provider = self.provider, "circuit breaker closed");
    }
}

/// A provider and its breaker.
pub struct Guarded<P> {
    pub name: &'static str,
    pub provider: P,
    breaker: Breaker,
}

impl<P> Guarded<P> {
    pub fn new(name: &'static str, provider: P, metrics: Arc<Metrics>) -> Self {
        let policy = failsafe::failure_policy::consecutive_failures(
            BREAKER_FAILURES,
            failsafe::backoff::equal_jittered(BREAKER_PAUSE, BREAKER_MAX_PAUSE),
        );
        let breaker = Config::new()
            .failure_policy(policy)
            .instrument(BreakerEvents {
                provider: name,
                metrics,
            })
            .build();
        Self {
            name,
            provider,
            breaker,
        }
    }
}

/// Which provider took a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub provider: &'static str,
    pub sent: Sent,
}

/// Every channel's providers.
pub struct Providers {
    pub email: Vec<Guarded<EmailProvider>>,
    pub sms: Vec<Guarded<SmsProvider>>,
    pub telegram: Vec<Guarded<TelegramBot>>,
    pub webpush: Vec<Guarded<WebPushSender>>,
    /// Webhooks go to members' own servers: one endpoint failing says nothing about the
    /// next, so there is no breaker (the per-delivery backoff is what spares a failing one).
    pub webhook: WebhookSender,
    metrics: Arc<Metrics>,
}

/// Why the providers could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{provider}: {reason}")]
pub struct ProviderConfigError {
    pub provider: &'static str,
    pub reason: String,
}

impl Providers {
    /// The providers the settings configure, in the order `HERALD_EMAIL_PROVIDERS` and
    /// `HERALD_SMS_PROVIDERS` give. `channels` are the adapters the vault already built (one
    /// SMTP pool and one HTTP client per provider for the whole process).
    pub fn from_settings(
        settings: &ProviderSettings,
        channels: &Channels,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ProviderConfigError> {
        let fail = |provider: &'static str| {
            move |e: &dyn std::fmt::Display| ProviderConfigError {
                provider,
                reason: e.to_string(),
            }
        };
        let resend = ResendSender::from_settings(settings).map_err(|e| fail("resend")(&e))?;
        let vonage = VonageSender::from_settings(settings).map_err(|e| fail("vonage")(&e))?;
        let mut email = Vec::new();
        for name in &settings.email_providers {
            match name.as_str() {
                "smtp" => {
                    if let Some(smtp) = &channels.email {
                        email.push(Guarded::new(
                            "smtp",
                            EmailProvider::Smtp(smtp.clone()),
                            metrics.clone(),
                        ));
                    }
                }
                "resend" => {
                    if let Some(r) = &resend {
                        email.push(Guarded::new(
                            "resend",
                            EmailProvider::Resend(r.clone()),
                            metrics.clone(),
                        ));
                    }
                }
                _ => {}
            }
        }
        let mut sms = Vec::new();
        for name in &settings.sms_providers {
            match name.as_str() {
                "twilio" => {
                    if let Some(t) = &channels.sms {
                        sms.push(Guarded::new(
                            "twilio",
                            SmsProvider::Twilio(t.clone()),
                            metrics.clone(),
                        ));
                    }
                }
                "vonage" => {
                    if let Some(v) = &vonage {
                        sms.push(Guarded::new(
                            "vonage",
                            SmsProvider::Vonage(v.clone()),
                            metrics.clone(),
                        ));
                    }
                }
                _ => {}
            }
        }
        let telegram = channels
            .telegram
            .iter()
            .map(|bot| Guarded::new("telegram", bot.clone(), metrics.clone()))
            .collect();
        let webpush = channels
            .webpush
            .iter()
            .map(|push| Guarded::new("webpush", push.clone(), metrics.clone()))
            .collect();
        let webhook = channels.webhook.clone();
        Ok(Self {
            email,
            sms,
            telegram,
            webpush,
            webhook,
            metrics,
        })
    }

    /// Whether `channel` can send at all on this process.
    pub fn configured(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email => !self.email.is_empty(),
            Channel::Sms => !self.sms.is_empty(),
            Channel::Telegram => !self.telegram.is_empty(),
            Channel::Webpush => !self.webpush.is_empty(),
            Channel::Inbox | Channel::Feed | Channel::Webhook => true,
        }
    }

    /// External channels with no provider, for the startup warning.
    pub fn unconfigured(&self) -> Vec<&'static str> {
        [
            Channel::Email,
            Channel::Sms,
            Channel::Telegram,
            Channel::Webpush,
        ]
        .into_iter()
        .filter(|c| !self.configured(*c))
        .map(Channel::as_str)
        .collect()
    }

    /// Start an attempt on `channel`: see [`Failover`].
    pub fn failover(&self, channel: Channel) -> Failover<'_> {
        Failover {
            metrics: &self.metrics,
            channel,
            last: None,
        }
    }
}

/// One message tried against a channel's providers in order: the first acceptance wins; a
/// transient failure moves on to the next provider; any other failure ends the attempt.
///
/// ```ignore
/// let mut attempt = providers.failover(Channel::Email);
/// for guarded in &providers.email {
///     if attempt.permitted(guarded) {
///         if let ControlFlow::Break(done) = attempt.record(guarded, guarded.provider.send(&m).await) {
///             return done;
///         }
///     }
/// }
/// attempt.exhausted()
/// ```
/// (A loop at each call site rather than a closure: a future borrowing both the provider and
/// the message cannot yet be proven `Send` through an async closure.)
pub struct Failover<'a> {
    metrics: &'a Metrics,
    channel: Channel,
    last: Option<SendError>,
}

impl Failover<'_> {
    /// Whether to call this provider now (its breaker is closed, or half-open for a probe).
    pub fn permitted<P>(&mut self, guarded: &Guarded<P>) -> bool {
        if !guarded.breaker.is_call_permitted() {
            self.last.get_or_insert_with(|| {
                SendError::transient(format!("{} circuit breaker is open", guarded.name))
            });
            return false;
        }
        if self.last.is_some() {
            self.metrics.failover(self.channel.as_str(), guarded.name);
        }
        true
    }

    /// Record a provider's answer: `Break` with the attempt's result, or `Continue` to the
    /// next provider.
    pub fn record<P>(
        &mut self,
        guarded: &Guarded<P>,
        result: Result<Sent, SendError>,
    ) -> ControlFlow<Result<Accepted, SendError>> {
        match result {
            Ok(sent) => {
                guarded.breaker.on_success();
                ControlFlow::Break(Ok(Accepted {
                    provider: guarded.name,
                    sent,
                }))
            }
            Err(err @ SendError::Transient { .. }) => {
                guarded.breaker.on_error();
                tracing::info!(provider = guarded.name, error = %err, "transient failure");
                self.last = Some(err);
                ControlFlow::Continue(())
            }
            Err(err) => {
                // The provider answered: it is up; the message or the recipient is the problem.
                guarded.breaker.on_success();
                ControlFlow::Break(Err(err))
            }
        }
    }

    /// Every provider failed transiently or was skipped: the last reason.
    pub fn exhausted(self) -> Result<Accepted, SendError> {
        Err(self
            .last
            .unwrap_or(SendError::Unavailable(self.channel.as_str())))
    }
}
