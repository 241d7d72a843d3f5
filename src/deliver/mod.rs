//! Delivery: the dispatcher that drains the outbox through the channel adapters.
//!
//! ```text
//! claim (lease, SKIP LOCKED) ─▶ open addresses (vault) ─▶ render ─▶ providers (failover,
//!        ▲                                                          circuit breakers)
//!        └── permits ◀── settle (one transaction per batch of outcomes) ◀──┘
//! ```
//! Owns the delivery loop, retry scheduling (exponential backoff with jitter, raised to any
//! `Retry-After` a provider gave), dead-lettering, and what a provider's "gone" does to a
//! contact. Must not touch: SQL (the store), plaintext addresses beyond one send (the vault
//! opens them), wire formats (the adapters) or who gets what (distribute decided at publish).
//!
//! # Invariants
//! - No transaction is open during a send: a claim commits before the first network call and
//!   outcomes are written after.
//! - A process holds at most `concurrency` claimed, unsettled rows: a permit is taken per row
//!   claimed and given back only once its outcome is committed. A process killed at any
//!   instant therefore leaves at most that many rows to be claimed again when their leases
//!   expire — the bound on duplicates, counted in `herald_deliveries_reclaimed_total`.
//! - An outcome is recorded only under the claim that produced it (the store checks the
//!   lease token), so a late worker cannot undo a newer claim's result.

pub mod providers;
pub mod render;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use secrecy::ExposeSecret;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::channels::email::OutgoingEmail;
use crate::channels::webhook::WebhookSecret;
use crate::channels::{SendError, webpush};
use crate::metrics::Metrics;
use crate::model::Channel;
use crate::settings::DeliverySettings;
use crate::storage::{
    Claimed, Outcome, PublicationContext, Settled, StorageError, Store, format_micros, now_micros,
};
use crate::vault::{Target, Vault};
pub use providers::{Accepted, ProviderConfigError, Providers};
pub use render::Renderer;

/// How long a web push waits at the push service for an offline browser.
const PUSH_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Outcomes written per transaction at most.
const SETTLE_BATCH: usize = 512;
/// How long a stopping dispatcher waits for sends in flight before leaving them to expire.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The dispatcher. One per process with the `deliver` role; any number share a database.
pub struct Dispatcher {
    store: Store,
    vault: Arc<Vault>,
    providers: Providers,
    renderer: Renderer,
    metrics: Arc<Metrics>,
    config: DeliverySettings,
    wake: Arc<Notify>,
    publications: moka::future::Cache<String, Arc<PublicationContext>>,
}

/// One claimed row with what it needs to be sent.
struct Job {
    row: Claimed,
    publication: Option<Arc<PublicationContext>>,
    language: String,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        vault: Arc<Vault>,
        providers: Providers,
        metrics: Arc<Metrics>,
        config: DeliverySettings,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            vault,
            providers,
            renderer: Renderer::new(),
            metrics,
            config,
            wake,
            publications: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
        }
    }

    /// Claim, send and settle until `shutdown`; then stop claiming, let sends in flight
    /// finish (for a short grace period) and write their outcomes.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let unconfigured = self.providers.unconfigured();
        if !unconfigured.is_empty() {
            tracing::warn!(
                channels = ?unconfigured,
                "channels without a provider: their deliveries become dead letters saying so"
            );
        }
        let concurrency = self.config.concurrency.max(1);
        let permits = Arc::new(Semaphore::new(concurrency));
        let (tx, rx) = mpsc::channel::<(Settled, &'static str, OwnedSemaphorePermit)>(
            concurrency.max(SETTLE_BATCH),
        );
        let writer = tokio::spawn(settle_loop(self.store.clone(), self.metrics.clone(), rx));
        loop {
            let first = tokio::select! {
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = shutdown.cancelled() => break,
            };
            let want = (permits.available_permits() + 1).min(self.config.batch.max(1));
            let claimed = match self
                .store
                .claim_deliveries(want, self.config.lease, now_micros())
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "claiming deliveries failed");
                    drop(first);
                    if sleep_or_stop(&shutdown, self.config.poll).await {
                        break;
                    }
                    continue;
                }
            };
            if claimed.is_empty() {
                drop(first);
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.config.poll) => {}
                    _ = shutdown.cancelled() => break,
                }
                continue;
            }
            let jobs = match self.prepare(claimed).await {
                Ok(jobs) => jobs,
                Err((e, rows)) => {
                    // Give the rows back for a retry soon rather than hold them to expiry.
                    tracing::error!(error = %e, "loading what deliveries need failed");
                    let mut first = Some(first);
                    for row in rows {
                        let permit = first.take().unwrap_or_else(|| take_permit(&permits));
                        let settled = Settled {
                            id: row.id,
                            lease_token: row.lease_token,
                            outcome: Outcome::Retry {
                                at: now_micros() + self.config.poll.as_micros() as i64,
                                error: "storage unavailable while preparing the send".into(),
                            },
                        };
                        let _ = tx.send((settled, "unknown", permit)).await;
                    }
                    continue;
                }
            };
            let mut first = Some(first);
            for job in jobs {
                let permit = first.take().unwrap_or_else(|| take_permit(&permits));
                let this = self.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let channel = Channel::parse(&job.row.channel)
                        .map(Channel::as_str)
                        .unwrap_or("unknown");
                    let outcome = this.attempt(&job).await;
                    let settled = Settled {
                        id: job.row.id,
                        lease_token: job.row.lease_token,
                        outcome,
                    };
                    let _ = tx.send((settled, channel, permit)).await;
                });
            }
        }
        drop(tx);
        // Every permit back means every send in flight has been settled (or given up on).
        let drained = permits.acquire_many(concurrency as u32);
        if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
            tracing::warn!("stopping with sends in flight: their leases will expire and retry");
        }
        let _ = writer.await;
    }

    /// Publications (cached) and members' languages for a batch of claimed rows.
    async fn prepare(&self, rows: Vec<Claimed>) -> Result<Vec<Job>, (StorageError, Vec<Claimed>)> {
        let mut missing: Vec<String> = Vec::new();
        for row in &rows {
            if row.claims > row.attempts + 1 {
                // Claimed before by a worker that never recorded an outcome.
                self.metrics.delivery_reclaimed();
            }
            if !self.publications.contains_key(&row.publication_id)
                && !missing.contains(&row.publication_id)
            {
                missing.push(row.publication_id.clone());
            }
        }
        if !missing.is_empty() {
            match self.store.publication_contexts(&missing).await {
                Ok(found) => {
                    for (id, context) in found {
                        self.publications.insert(id, Arc::new(context)).await;
                    }
                }
                Err(e) => return Err((e, rows)),
            }
        }
        let dids: Vec<String> = rows
            .iter()
            .filter(|r| !r.recipient.starts_with("email:"))
            .map(|r| r.recipient.clone())
            .collect();
        let languages = match self.store.languages(&dids).await {
            Ok(l) => l,
            Err(e) => return Err((e, rows)),
        };
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            let publication = self.publications.get(&row.publication_id).await;
            let language = self
                .renderer
                .language(languages.get(&row.recipient).map(String::as_str))
                .to_string();
            jobs.push(Job {
                row,
                publication,
                language,
            });
        }
        Ok(jobs)
    }

    /// Send one delivery and decide its outcome. Never fails: every error becomes an
    /// outcome (retry, dead or cancelled) with a reason that names no address.
    async fn attempt(&self, job: &Job) -> Outcome {
        let row = &job.row;
        let Some(channel) = Channel::parse(&row.channel).filter(|c| *c != Channel::Inbox) else {
            return Outcome::Dead {
                error: format!("unknown delivery channel {:?}", row.channel),
            };
        };
        let Some(publication) = &job.publication else {
            return Outcome::Dead {
                error: "the publication no longer exists".into(),
            };
        };
        if channel == Channel::Feed {
            // The feed is rendered from sent rows: marking it sent is the delivery.
            return Outcome::Sent {
                provider: "feed".into(),
                provider_id: None,
            };
        }
        if !self.providers.configured(channel) {
            return Outcome::Dead {
                error: SendError::Unavailable(channel.as_str()).to_string(),
            };
        }
        let targets = match self.vault.targets(&row.recipient, channel).await {
            Ok(targets) => targets,
            Err(e) => {
                tracing::error!(error = %e, "opening the recipient's address failed");
                return self.retry(row, &SendError::transient("vault unavailable"));
            }
        };
        if targets.is_empty() {
            return Outcome::Cancelled {
                reason: format!(
                    "no verified, deliverable {} contact any more",
                    channel.as_str()
                ),
            };
        }
        let mut accepted: Option<Accepted> = None;
        let mut failures: Vec<SendError> = Vec::new();
        for target in &targets {
            match self.send(channel, target, job, publication).await {
                Ok(ok) => {
                    accepted.get_or_insert(ok);
                }
                Err(err) => {
                    if let SendError::Gone { reason } = &err {
                        self.gone(channel, target, reason).await;
                    }
                    failures.push(err);
                }
            }
        }
        if let Some(ok) = accepted {
            return Outcome::Sent {
                provider: ok.provider.to_string(),
                provider_id: ok.sent.provider_id,
            };
        }
        if let Some(transient) = failures.iter().find(|e| e.is_transient()) {
            return self.retry(row, transient);
        }
        if let Some(permanent) = failures
            .iter()
            .find(|e| !matches!(e, SendError::Gone { .. }))
        {
            return Outcome::Dead {
                error: permanent.to_string(),
            };
        }
        Outcome::Cancelled {
            reason: failures
                .first()
                .map(ToString::to_string)
                .unwrap_or_else(|| "recipient gone".into()),
        }
    }

    async fn send(
        &self,
        channel: Channel,
        target: &Target,
        job: &Job,
        publication: &PublicationContext,
    ) -> Result<Accepted, SendError> {
        let p = &self.providers;
        let key = job.row.id.as_str();
        let lang = job.language.as_str();
        let mut attempt = p.failover(channel);
        match target {
            Target::Email {
                to,
                manage_url,
                unsubscribe_url,
                ..
            } => {
                let rendered = self
                    .renderer
                    .email(lang, publication, manage_url, unsubscribe_url);
                let email = OutgoingEmail {
                    to: to.clone(),
                    subject: rendered.subject,
                    text: rendered.text,
                    html: Some(rendered.html),
                    headers: vec![
                        ("List-Unsubscribe".into(), format!("<{unsubscribe_url}>")),
                        (
                            "List-Unsubscribe-Post".into(),
                            "List-Unsubscribe=One-Click".into(),
                        ),
                    ],
                    idempotency_key: Some(key.to_string()),
                };
                for g in &p.email {
                    if attempt.permitted(g)
                        && let ControlFlow::Break(done) =
                            attempt.record(g, g.provider.send(&email).await)
                    {
                        return done;
                    }
                }
                attempt.exhausted()
            }
            Target::Sms { number, .. } => {
                let body = self.renderer.sms(lang, publication);
                for g in &p.sms {
                    if attempt.permitted(g)
                        && let ControlFlow::Break(done) =
                            attempt.record(g, g.provider.send(number, &body, key).await)
                    {
                        return done;
                    }
                }
                attempt.exhausted()
            }
            Target::Telegram { chat_id, .. } => {
                let text = self.renderer.telegram(lang, publication);
                for g in &p.telegram {
                    if attempt.permitted(g)
                        && let ControlFlow::Break(done) =
                            attempt.record(g, g.provider.send_message(*chat_id, &text).await)
                    {
                        return done;
                    }
                }
                attempt.exhausted()
            }
            Target::Push { subscription, .. } => {
                let payload = self.renderer.push(publication, key);
                for g in &p.webpush {
                    let sent = async {
                        g.provider
                            .send_with_urgency(
                                subscription,
                                &payload,
                                PUSH_TTL,
                                webpush::Urgency::Normal,
                            )
                            .await
                    };
                    if attempt.permitted(g)
                        && let ControlFlow::Break(done) = attempt.record(g, sent.await)
                    {
                        return done;
                    }
                }
                attempt.exhausted()
            }
            Target::Webhook { url, secret, .. } => {
                let url = url::Url::parse(url)
                    .map_err(|_| SendError::permanent("stored webhook URL does not parse"))?;
                let secret = WebhookSecret::parse(secret.expose_secret())
                    .map_err(|_| SendError::permanent("stored webhook secret does not parse"))?;
                let body = self.renderer.webhook(
                    publication,
                    &job.row.recipient,
                    &format_micros(publication.created_at),
                );
                let sent = p.webhook.send(&url, &secret, key, &body).await?;
                Ok(Accepted {
                    provider: "webhook",
                    sent,
                })
            }
        }
    }

    /// A provider said the recipient is gone: stop using the contact (or the address).
    async fn gone(&self, channel: Channel, target: &Target, reason: &str) {
        let result = match target {
            Target::Email { address_id, .. } => self
                .vault
                .store()
                .suppress(address_id, reason)
                .await
                .map_err(Into::into),
            other => match other.contact_id() {
                Some(id) => self.vault.contact_gone(id, channel, reason).await,
                None => Ok(()),
            },
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "could not record a gone recipient");
        }
    }

    /// Retry later, or give up when attempts are spent.
    fn retry(&self, row: &Claimed, err: &SendError) -> Outcome {
        let attempts = row.attempts + 1;
        if attempts >= i64::from(self.config.max_attempts) {
            return Outcome::Dead {
                error: format!("gave up after {attempts} attempts: {err}"),
            };
        }
        let mut delay = backoff_delay(&self.config, attempts as usize);
        if let SendError::Transient {
            retry_after: Some(wait),
            ..
        } = err
        {
            delay = delay.max(*wait);
        }
        Outcome::Retry {
            at: now_micros() + delay.as_micros() as i64,
            error: err.to_string(),
        }
    }
}

/// The delay before retry number `attempt` (1-based): `retry_base × 2^(attempt-1)`, capped at
/// `retry_max`, plus up to as much again of random jitter so retries of a failed batch spread
/// out instead of arriving together. The schedule is stored in the row (`next_attempt_at`),
/// not held in a loop, so backon's iterator is only asked for the n-th delay.
pub fn backoff_delay(config: &DeliverySettings, attempt: usize) -> Duration {
    backon::ExponentialBuilder::new()
        .with_min_delay(config.retry_base)
        .with_max_delay(config.retry_max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempt.saturating_sub(1))
        .unwrap_or(config.retry_max)
}

fn take_permit(permits: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    // Only the claim loop takes permits and it claimed no more rows than were free, so one
    // is always available here.
    permits
        .clone()
        .try_acquire_owned()
        .expect("a permit for every claimed row")
}

/// `true` when stopped while waiting.
async fn sleep_or_stop(shutdown: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = shutdown.cancelled() => true,
    }
}

/// Writes outcomes in batches, then gives their permits back. A database error is retried
/// (the outcomes are kept) so a short outage costs time, not duplicates.
async fn settle_loop(
    store: Store,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<(Settled, &'static str, OwnedSemaphorePermit)>,
) {
    let mut buffer = Vec::with_capacity(SETTLE_BATCH);
    while rx.recv_many(&mut buffer, SETTLE_BATCH).await > 0 {
        let settled: Vec<Settled> = buffer.iter().map(|(s, _, _)| s.clone()).collect();
        let mut wait = Duration::from_millis(50);
        loop {
            match store.settle_deliveries(&settled, now_micros()).await {
                Ok(recorded) => {
                    if recorded < settled.len() {
                        tracing::warn!(
                            stale = settled.len() - recorded,
                            "outcomes for claims that had expired were not recorded"
                        );
                    }
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "recording delivery outcomes failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        let mut by_outcome: HashMap<(&'static str, &'static str), u64> = HashMap::new();
        for (s, channel, _) in &buffer {
            *by_outcome.entry((channel, s.outcome.label())).or_default() += 1;
        }
        for ((channel, outcome), n) in by_outcome {
            metrics.delivery(channel, outcome, n);
        }
        // Dropping the permits lets the claim loop take that many more rows.
        buffer.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let config = DeliverySettings {
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(600),
            ..Default::default()
        };
        for _ in 0..50 {
            let first = backoff_delay(&config, 1);
            assert!(first >= Duration::from_secs(30) && first < Duration::from_secs(60));
            let third = backoff_delay(&config, 3);
            assert!(third >= Duration::from_secs(120) && third < Duration::from_secs(240));
            let late = backoff_delay(&config, 40);
            assert!(late >= Duration::from_secs(600) && late < Duration::from_secs(1200));
        }
        let spread: std::collections::HashSet<Duration> =
            (0..20).map(|_| backoff_delay(&config, 2)).collect();
        assert!(spread.len() > 1, "jitter spreads retries");
    }
}
