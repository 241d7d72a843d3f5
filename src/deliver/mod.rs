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
//! - A process holds at most `concurrency` claimed, unsettled messages: a permit is taken per
//!   row claimed and given back only once its outcome is committed; the rest of a digest
//!   claimed with one of its rows rides on that row's permit, since they all go out as one
//!   message. A process killed at any instant therefore leaves at most that many messages to
//!   be sent again when their leases expire — the bound on duplicates, counted in
//!   `herald_deliveries_reclaimed_total`.
//! - An outcome is recorded only under the claim that produced it (the store checks the
//!   lease token), so a late worker cannot undo a newer claim's result.

pub mod policy;
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
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::model::Channel;
use crate::schedule::Urgency;
use crate::settings::{DeliverySettings, ScheduleSettings};
use crate::storage::{
    Claimed, Counter, Outcome, PublicationContext, Settled, StorageError, Store, format_micros,
};
use crate::vault::{Target, Vault};
use policy::ChannelPolicy;
pub use providers::{Accepted, ProviderConfigError, Providers};
pub use render::Renderer;
use render::{Digest, EmailFrame};

/// How long a web push waits at the push service for an offline browser.
const PUSH_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Rows of a claim prepared (languages, addresses) together: small enough that a claim's
/// first messages leave while the rest load, large enough that the look-ups stay few.
const PREPARE_PART: usize = 64;
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
    schedule: ScheduleSettings,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    publications: moka::future::Cache<String, Arc<PublicationContext>>,
    /// Emails rendered once per publication and language, by (publication id, language).
    frames: moka::future::Cache<(String, String), Arc<EmailFrame>>,
}

/// How a dispatcher runs: its mechanics, the operator's timing policy and its clock.
pub struct DispatchConfig {
    pub delivery: DeliverySettings,
    pub schedule: ScheduleSettings,
    pub clock: Arc<dyn Clock>,
}

/// One claimed row with what it needs to be sent.
struct Job {
    row: Claimed,
    publication: Option<Arc<PublicationContext>>,
    language: String,
    /// How the member hears on the row's channel (`None` for a channel Herald does not know).
    policy: Option<ChannelPolicy>,
    /// The recipient's addresses, opened with the rest of the claim's (`None`: not fetched,
    /// because the row is held, or it joined the claim later).
    targets: Option<Vec<Target>>,
}

/// What one message carries: one item, or several folded together.
enum Content<'a> {
    One(&'a PublicationContext),
    Many(Vec<&'a PublicationContext>),
}

/// Outcomes of one unit of work, with the permit its rows held.
type SettleMsg = (Vec<Settled>, &'static str, OwnedSemaphorePermit);

impl Dispatcher {
    pub fn new(
        store: Store,
        vault: Arc<Vault>,
        providers: Providers,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
        config: DispatchConfig,
    ) -> Self {
        Self {
            store,
            vault,
            providers,
            renderer: Renderer::new(),
            metrics,
            config: config.delivery,
            schedule: config.schedule,
            clock: config.clock,
            wake,
            publications: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            frames: moka::future::Cache::builder()
                .max_capacity(1_000)
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
        let (tx, rx) = mpsc::channel::<SettleMsg>(concurrency.max(SETTLE_BATCH));
        let writer = tokio::spawn(settle_loop(
            self.store.clone(),
            self.metrics.clone(),
            self.clock.clone(),
            rx,
        ));
        let batch = self.config.batch.max(1);
        // Claim only once a quarter of the permits are free: claiming the moment one frees
        // made claims of ~3 rows, each a write that queues behind outcomes on SQLite's one
        // writer. A quarter still keeps three quarters of the sends in flight.
        let threshold = (concurrency / 4).clamp(1, batch) as u32;
        loop {
            let mut free = tokio::select! {
                permit = permits.clone().acquire_many_owned(threshold) => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = shutdown.cancelled() => break,
            };
            let more = permits.available_permits().min(batch - threshold as usize);
            if let Ok(extra) = permits.clone().try_acquire_many_owned(more as u32) {
                free.merge(extra);
            }
            let want = free.num_permits();
            let claimed = match self
                .store
                .claim_deliveries(want, self.config.lease, self.clock.now_micros())
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "claiming deliveries failed");
                    drop(free);
                    if sleep_or_stop(&shutdown, self.config.poll).await {
                        break;
                    }
                    continue;
                }
            };
            if claimed.is_empty() {
                drop(free);
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.config.poll) => {}
                    _ = shutdown.cancelled() => break,
                }
                continue;
            }
            // Loading and sending happen beside the next claim, not before it: done in line,
            // the vault and index look-ups for one claim kept the next claim waiting.
            tokio::spawn(self.clone().dispatch(claimed, free, tx.clone()));
        }
        drop(tx);
        // Every permit back means every send in flight has been settled (or given up on).
        let drained = permits.acquire_many(concurrency as u32);
        if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
            tracing::warn!("stopping with sends in flight: their leases will expire and retry");
        }
        let _ = writer.await;
    }

    /// Send one claim's rows: load what they need, open their addresses, and start one task
    /// per unit of work, each with its share of the claim's permits. A claim is prepared a
    /// part at a time ([`parts`]) so its first messages are on their way while the rest are
    /// still being loaded.
    async fn dispatch(
        self: Arc<Self>,
        claimed: Vec<Claimed>,
        mut free: OwnedSemaphorePermit,
        tx: mpsc::Sender<SettleMsg>,
    ) {
        for part in parts(claimed, PREPARE_PART) {
            self.dispatch_part(part, &mut free, &tx).await;
        }
    }

    /// One part of a claim: its rows loaded, opened and started.
    async fn dispatch_part(
        self: &Arc<Self>,
        claimed: Vec<Claimed>,
        free: &mut OwnedSemaphorePermit,
        tx: &mpsc::Sender<SettleMsg>,
    ) {
        let jobs = match self.prepare(claimed).await {
            Ok(jobs) => jobs,
            Err((e, rows)) => {
                // Give the rows back for a retry soon rather than hold them to expiry.
                tracing::error!(error = %e, "loading what deliveries need failed");
                let at = self.clock.now_micros() + self.config.poll.as_micros() as i64;
                for row in rows {
                    let permit = take_permits(free, 1);
                    let settled = Settled {
                        id: row.id,
                        lease_token: row.lease_token,
                        outcome: Outcome::Retry {
                            at,
                            error: "storage unavailable while preparing the send".into(),
                        },
                    };
                    let _ = tx.send((vec![settled], "unknown", permit)).await;
                }
                return;
            }
        };
        let jobs = self.open_targets(jobs).await;
        for unit in units(jobs) {
            let permit = take_permits(free, unit.len());
            let this = self.clone();
            let tx = tx.clone();
            // Boxed: the unit's future is about 2.7 KB, and tokio copied it whole several
            // times on the way into its task (3 % of the dispatcher's CPU); a box is moved as
            // a pointer.
            tokio::spawn(Box::pin(async move {
                let channel = Channel::parse(&unit[0].row.channel)
                    .map(Channel::as_str)
                    .unwrap_or("unknown");
                let settled = this.deliver(unit).await;
                let _ = tx.send((settled, channel, permit)).await;
            }));
        }
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
        let timings = match self.store.member_timing(&dids).await {
            Ok(t) => t,
            Err(e) => return Err((e, rows)),
        };
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            let publication = self.publications.get(&row.publication_id).await;
            let timing = timings.get(&row.recipient);
            let language = self
                .renderer
                .language(timing.and_then(|t| t.language.as_deref()))
                .to_string();
            let policy =
                Channel::parse(&row.channel).map(|c| ChannelPolicy::of(timing, c, &self.schedule));
            jobs.push(Job {
                row,
                publication,
                language,
                policy,
                targets: None,
            });
        }
        Ok(jobs)
    }

    /// Open the addresses of every row in a claim that is about to be sent, a few queries per
    /// channel instead of two per row: each query is a round trip to a database worker
    /// thread, which is what a busy dispatcher spends its time on. Rows the policy will hold
    /// are skipped. A vault error leaves them unfetched; each send then asks on its own.
    async fn open_targets(&self, mut jobs: Vec<Job>) -> Vec<Job> {
        let now = self.clock.now();
        let mut wanted: HashMap<Channel, Vec<String>> = HashMap::new();
        for job in &jobs {
            let (Some(channel), Some(policy)) = (Channel::parse(&job.row.channel), &job.policy)
            else {
                continue;
            };
            if matches!(channel, Channel::Inbox | Channel::Feed) {
                continue;
            }
            if first_sight_hold(job, channel, policy, now).is_none() {
                wanted
                    .entry(channel)
                    .or_default()
                    .push(job.row.recipient.clone());
            }
        }
        for (channel, mut recipients) in wanted {
            recipients.sort_unstable();
            recipients.dedup();
            let mut given: std::collections::HashSet<String> = Default::default();
            let mut found = match self.vault.targets_of(&recipients, channel).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(error = %e, "opening a claim's addresses failed");
                    continue;
                }
            };
            for job in jobs.iter_mut() {
                if job.row.channel != channel.as_str()
                    || recipients.binary_search(&job.row.recipient).is_err()
                {
                    continue;
                }
                // The first of a member's rows on the channel carries the targets (rows of one
                // digest go out as one message); a later one asks the vault when it is sent.
                if given.insert(job.row.recipient.clone()) {
                    job.targets = Some(found.remove(&job.row.recipient).unwrap_or_default());
                }
            }
        }
        jobs
    }

    /// Deliver one unit (a row, or a member's held rows on one channel) and decide every
    /// row's outcome. Never fails: every error becomes an outcome (held, retry, dead or
    /// cancelled) with a reason that names no address.
    async fn deliver(&self, mut jobs: Vec<Job>) -> Vec<Settled> {
        let now = self.clock.now();
        let now_us = now.timestamp_micros();
        let mut settled = Vec::with_capacity(jobs.len());
        let settle = |job: &Job, outcome: Outcome| Settled {
            id: job.row.id.clone(),
            lease_token: job.row.lease_token.clone(),
            outcome,
        };
        let channel = Channel::parse(&jobs[0].row.channel).filter(|c| *c != Channel::Inbox);
        let (Some(channel), Some(policy)) = (channel, jobs[0].policy) else {
            return jobs
                .iter()
                .map(|j| {
                    let error = format!("unknown delivery channel {:?}", j.row.channel);
                    settle(j, Outcome::Dead { error })
                })
                .collect();
        };

        if let [job] = jobs.as_slice()
            && let Some(held) = first_sight_hold(job, channel, &policy, now)
        {
            return vec![settle(job, held)];
        }
        // Whatever else the member has waiting on this channel goes in the same message. A
        // held row's claim already took the rest of its member's held rows.
        if policy.folds() && !jobs[0].row.fold {
            let first = &jobs[0].row;
            match self
                .store
                .claim_folded(
                    &first.recipient,
                    first.channel.as_str(),
                    &first.lease_token,
                    self.config.lease,
                    now_us,
                )
                .await
            {
                Ok(rows) if !rows.is_empty() => match self.prepare(rows).await {
                    Ok(more) => jobs.extend(more),
                    Err((e, rows)) => {
                        // They stay claimed until their lease ends, then go out later.
                        tracing::error!(error = %e, held = rows.len(), "loading held items failed");
                    }
                },
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "claiming held items failed"),
            }
        }
        // Expired items are not sent late; a missing publication cannot be rendered.
        let mut live: Vec<Job> = Vec::with_capacity(jobs.len());
        for job in jobs {
            match &job.publication {
                None => {
                    let error = "the publication no longer exists".into();
                    settled.push(settle(&job, Outcome::Dead { error }));
                }
                Some(p) if p.expires_at.is_some_and(|at| at <= now_us) => {
                    let reason = "the item expired before it could be sent".into();
                    settled.push(settle(&job, Outcome::Cancelled { reason }));
                }
                Some(_) => live.push(job),
            }
        }
        if live.is_empty() {
            return settled;
        }
        // The member's daily cap: a message over it waits, with everything in it, for the
        // next one allowed.
        let day = policy.clock.local_date(now).to_string();
        let recipient = live[0].row.recipient.clone();
        let mut reserved = false;
        if let Some(limit) = policy.daily_limit {
            match self
                .store
                .reserve_send(Counter::Member, &recipient, channel.as_str(), &day, limit)
                .await
            {
                Ok(Some(_)) => reserved = true,
                Ok(None) => {
                    let most = if live.iter().any(|j| job_urgency(j) == Urgency::Urgent) {
                        Urgency::Urgent
                    } else {
                        Urgency::Normal
                    };
                    let at = policy
                        .clock
                        .next_allowed_after_cap(now, most)
                        .timestamp_micros();
                    settled.extend(
                        live.iter()
                            .map(|j| settle(j, Outcome::Held { at, fold: true })),
                    );
                    return settled;
                }
                Err(e) => {
                    let err = SendError::transient(format!("daily cap unavailable: {e}"));
                    settled.extend(live.iter().map(|j| settle(j, self.retry(&j.row, &err))));
                    return settled;
                }
            }
        }
        let (mut live, community_reserved) = if channel == Channel::Sms {
            self.community_caps(live, now, &mut settled).await
        } else {
            (live, Vec::new())
        };
        if live.is_empty() {
            self.release(&recipient, channel, reserved.then_some(day.as_str()), &[])
                .await;
            return settled;
        }
        let targets = live.iter_mut().find_map(|j| j.targets.take());
        let publications: Vec<&PublicationContext> = live
            .iter()
            .filter_map(|j| j.publication.as_deref())
            .collect();
        let content = match publications.as_slice() {
            [one] => Content::One(one),
            _ => Content::Many(publications.clone()),
        };
        let outcome = self.attempt(&live[0], channel, &content, targets).await;
        if !matches!(outcome, Outcome::Sent { .. }) {
            let day = reserved.then_some(day.as_str());
            self.release(&recipient, channel, day, &community_reserved)
                .await;
        }
        settled.extend(live.iter().map(|j| settle(j, outcome.clone())));
        settled
    }

    /// The operator's cap on SMS per community and UTC day, for the rows of one message:
    /// the rows that may go and the communities a reservation was taken for. Rows over the
    /// cap end as dead letters that say why, and the community's maintainers are told; rows
    /// whose counter could not be read are retried.
    async fn community_caps(
        &self,
        live: Vec<Job>,
        now: chrono::DateTime<chrono::Utc>,
        settled: &mut Vec<Settled>,
    ) -> (Vec<Job>, Vec<String>) {
        let cap = self.schedule.sms_community_daily;
        if cap == 0 {
            return (live, Vec::new());
        }
        let utc_day = crate::distribute::utc_day(now);
        let now_us = now.timestamp_micros();
        let mut communities: Vec<String> = live
            .iter()
            .filter_map(|j| j.publication.as_ref().map(|p| p.community.clone()))
            .collect();
        communities.sort();
        communities.dedup();
        let mut reserved = Vec::new();
        let mut refused = Vec::new();
        let mut unknown = Vec::new();
        for community in communities {
            match self
                .store
                .reserve_send(Counter::Community, &community, "sms", &utc_day, cap)
                .await
            {
                Ok(Some(used)) => {
                    if used * 5 >= cap * 4 {
                        self.warn_maintainers(&community, &utc_day, used, cap, now_us)
                            .await;
                    }
                    reserved.push(community);
                }
                Ok(None) => {
                    self.warn_maintainers(&community, &utc_day, cap + 1, cap, now_us)
                        .await;
                    refused.push(community);
                }
                Err(e) => {
                    tracing::error!(error = %e, "community SMS cap unavailable");
                    unknown.push(community);
                }
            }
        }
        let mut keep = Vec::with_capacity(live.len());
        for job in live {
            let community = job.publication.as_ref().map(|p| p.community.as_str());
            let outcome = if community.is_some_and(|c| refused.iter().any(|r| r == c)) {
                Outcome::Dead {
                    error: format!(
                        "refused: the community's SMS cap for {utc_day} (UTC), {cap} messages, \
                         was reached"
                    ),
                }
            } else if community.is_some_and(|c| unknown.iter().any(|u| u == c)) {
                self.retry(
                    &job.row,
                    &SendError::transient("community SMS cap unavailable"),
                )
            } else {
                keep.push(job);
                continue;
            };
            settled.push(Settled {
                id: job.row.id.clone(),
                lease_token: job.row.lease_token.clone(),
                outcome,
            });
        }
        (keep, reserved)
    }

    /// Give back the cap reservations of a message that was not sent: the member's for
    /// `day` when one was taken, and the communities'.
    async fn release(
        &self,
        recipient: &str,
        channel: Channel,
        day: Option<&str>,
        communities: &[String],
    ) {
        if let Some(day) = day
            && let Err(e) = self
                .store
                .release_send(Counter::Member, recipient, channel.as_str(), day)
                .await
        {
            tracing::error!(error = %e, "could not give back a daily cap reservation");
        }
        let utc_day = crate::distribute::utc_day(self.clock.now());
        for community in communities {
            if let Err(e) = self
                .store
                .release_send(Counter::Community, community, "sms", &utc_day)
                .await
            {
                tracing::error!(error = %e, "could not give back a community SMS reservation");
            }
        }
    }

    /// Tell a community's maintainers (its admins' inboxes) that its SMS cap is near (80%)
    /// or reached: once a day each.
    async fn warn_maintainers(&self, community: &str, day: &str, used: u64, cap: u64, now: i64) {
        let (item, title, text) = if used > cap {
            (
                format!("herald:sms-cap:{day}:reached"),
                format!("SMS cap reached: no more SMS today ({cap} sent)"),
                format!(
                    "The community's SMS cap of {cap} messages for {day} (UTC) is reached. \
                     Further SMS deliveries today are refused and listed as dead letters; \
                     other channels are unaffected."
                ),
            )
        } else {
            (
                format!("herald:sms-cap:{day}:80"),
                format!("SMS cap: {used} of {cap} used today"),
                format!(
                    "The community has used {used} of its {cap} SMS for {day} (UTC). SMS \
                     beyond the cap will be refused."
                ),
            )
        };
        let publisher = "herald";
        match self
            .store
            .notify_admins(community, &item, &title, &text, publisher, now)
            .await
        {
            Ok(true) => tracing::warn!(community, used, cap, "community SMS cap notice sent"),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "could not warn a community's maintainers"),
        }
    }

    /// Send one message (one item or several) to the job's recipient and decide its outcome.
    async fn attempt(
        &self,
        job: &Job,
        channel: Channel,
        content: &Content<'_>,
        prefetched: Option<Vec<Target>>,
    ) -> Outcome {
        let row = &job.row;
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
        let targets = match prefetched {
            Some(targets) => targets,
            None => match self.vault.targets(&row.recipient, channel).await {
                Ok(targets) => targets,
                Err(e) => {
                    tracing::error!(error = %e, "opening the recipient's address failed");
                    return self.retry(row, &SendError::transient("vault unavailable"));
                }
            },
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
            match self.send(channel, target, job, content).await {
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

    /// One publication's email in one language, rendered for the first member it goes to and
    /// completed with each member's links after that.
    async fn email_frame(&self, lang: &str, publication: &PublicationContext) -> Arc<EmailFrame> {
        let key = (publication.id.clone(), lang.to_string());
        self.frames
            .get_with(key, async {
                Arc::new(self.renderer.email_frame(lang, publication))
            })
            .await
    }

    async fn send(
        &self,
        channel: Channel,
        target: &Target,
        job: &Job,
        content: &Content<'_>,
    ) -> Result<Accepted, SendError> {
        let p = &self.providers;
        let key = job.row.id.as_str();
        let lang = job.language.as_str();
        let digest = |items| Digest {
            items,
            max_listed: self.schedule.digest_max_items,
            inbox_url: self.schedule.inbox_url.as_str(),
        };
        let mut attempt = p.failover(channel);
        match target {
            Target::Email {
                to,
                manage_url,
                unsubscribe_url,
                ..
            } => {
                let (rendered, encoded) = match content {
                    Content::One(publication) => {
                        let frame = self.email_frame(lang, publication).await;
                        frame.for_member(manage_url, unsubscribe_url)
                    }
                    Content::Many(items) => {
                        let rendered = self.renderer.email_digest(
                            lang,
                            digest(items),
                            manage_url,
                            unsubscribe_url,
                        );
                        (rendered, None)
                    }
                };
                let email = OutgoingEmail {
                    to: to.clone(),
                    subject: rendered.subject,
                    text: rendered.text,
                    html: Some(rendered.html),
                    headers: render::list_headers(unsubscribe_url),
                    idempotency_key: Some(key.to_string()),
                };
                for g in &p.email {
                    if attempt.permitted(g)
                        && let ControlFlow::Break(done) =
                            attempt.record(g, g.provider.send(&email, encoded.as_ref()).await)
                    {
                        return done;
                    }
                }
                attempt.exhausted()
            }
            Target::Sms { number, .. } => {
                let body = match content {
                    Content::One(publication) => self.renderer.sms(lang, publication),
                    Content::Many(items) => self.renderer.sms_digest(lang, digest(items)),
                };
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
                let text = match content {
                    Content::One(publication) => self.renderer.telegram(lang, publication),
                    Content::Many(items) => self.renderer.telegram_digest(lang, digest(items)),
                };
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
                let payload = match content {
                    Content::One(publication) => self.renderer.push(publication, key),
                    Content::Many(items) => self.renderer.push_digest(lang, digest(items), key),
                };
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
                let body = match content {
                    Content::One(publication) => self.renderer.webhook(
                        publication,
                        &job.row.recipient,
                        &format_micros(publication.created_at),
                    ),
                    Content::Many(items) => self.renderer.webhook_digest(
                        items,
                        &job.row.recipient,
                        &format_micros(self.clock.now_micros()),
                    ),
                };
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
            at: self.clock.now_micros() + delay.as_micros() as i64,
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

/// Up to `n` of the claim's permits. The claim asked for no more rows than `free` holds,
/// but may return more (the rest of a digest), which then ride on the permits left.
fn take_permits(free: &mut OwnedSemaphorePermit, n: usize) -> OwnedSemaphorePermit {
    let n = n.min(free.num_permits());
    free.split(n).expect("no more permits than are held")
}

/// A claim's rows in parts of about `size` rows for preparing, the rows of one digest (held
/// rows of one member and channel) always in the same part, as they go out as one message.
fn parts(claimed: Vec<Claimed>, size: usize) -> Vec<Vec<Claimed>> {
    if claimed.len() <= size {
        return vec![claimed];
    }
    let mut out: Vec<Vec<Claimed>> = Vec::new();
    let mut part: Vec<Claimed> = Vec::with_capacity(size);
    for group in by_message(claimed, |row| row) {
        part.extend(group);
        if part.len() >= size {
            out.push(std::mem::replace(&mut part, Vec::with_capacity(size)));
        }
    }
    if !part.is_empty() {
        out.push(part);
    }
    out
}

/// The claimed rows as units of work: rows held for folding go out together per member and
/// channel, every other row alone.
fn units(jobs: Vec<Job>) -> Vec<Vec<Job>> {
    by_message(jobs, |job| &job.row)
}

/// `items` grouped by the message their row goes out in: a member's rows held for folding on
/// one channel together (in the group of the first of them), every other row alone.
fn by_message<T>(items: Vec<T>, row: impl Fn(&T) -> &Claimed) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::with_capacity(items.len());
    let mut folded: HashMap<(String, String), usize> = HashMap::new();
    for item in items {
        let r = row(&item);
        if r.fold {
            let key = (r.recipient.clone(), r.channel.clone());
            if let Some(&i) = folded.get(&key) {
                out[i].push(item);
                continue;
            }
            folded.insert(key, out.len());
        }
        out.push(vec![item]);
    }
    out
}

/// A row seen for the first time goes now, or is held until the member's policy lets it go
/// (quiet hours, the digest hour): the hold, if any.
fn first_sight_hold(
    job: &Job,
    channel: Channel,
    policy: &ChannelPolicy,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Outcome> {
    let publication = job.publication.as_ref()?;
    if job.row.fold || channel == Channel::Feed {
        return None;
    }
    let release = policy.release_at(now, urgency(publication));
    (release > now).then(|| Outcome::Held {
        at: release.timestamp_micros(),
        fold: policy.cadence == crate::schedule::Cadence::Daily,
    })
}

fn urgency(publication: &PublicationContext) -> Urgency {
    publication.urgency.parse().unwrap_or(Urgency::Normal)
}

fn job_urgency(job: &Job) -> Urgency {
    job.publication
        .as_deref()
        .map(urgency)
        .unwrap_or(Urgency::Normal)
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
    clock: Arc<dyn Clock>,
    mut rx: mpsc::Receiver<SettleMsg>,
) {
    let mut buffer = Vec::with_capacity(SETTLE_BATCH);
    while rx.recv_many(&mut buffer, SETTLE_BATCH).await > 0 {
        let settled: Vec<Settled> = buffer.iter().flat_map(|(s, _, _)| s.clone()).collect();
        let mut wait = Duration::from_millis(50);
        loop {
            match store.settle_deliveries(&settled, clock.now_micros()).await {
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
        for (rows, channel, _) in &buffer {
            for s in rows {
                *by_outcome.entry((channel, s.outcome.label())).or_default() += 1;
            }
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

    fn claimed(id: usize, recipient: &str, fold: bool) -> Claimed {
        Claimed {
            id: format!("d{id}"),
            publication_id: format!("p{id}"),
            recipient: recipient.into(),
            channel: "email".into(),
            attempts: 0,
            claims: 1,
            lease_token: "t".into(),
            fold,
        }
    }

    #[test]
    fn a_claim_is_prepared_in_parts_that_never_split_a_digest() {
        // 150 rows: a member's three held rows scattered through them, the rest alone.
        let rows: Vec<Claimed> = (0..150)
            .map(|i| match i {
                10 | 70 | 140 => claimed(i, "did:plc:digest", true),
                _ => claimed(i, &format!("did:plc:m{i}"), false),
            })
            .collect();
        let split = parts(rows, 64);
        assert_eq!(
            split.iter().map(Vec::len).sum::<usize>(),
            150,
            "every row, once"
        );
        let holding: Vec<usize> = split
            .iter()
            .enumerate()
            .filter(|(_, p)| p.iter().any(|c| c.recipient == "did:plc:digest"))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(holding.len(), 1, "the digest's rows are in one part");
        assert_eq!(
            split[holding[0]].iter().filter(|c| c.fold).count(),
            3,
            "all three of them"
        );
        assert!(split.len() >= 2, "a big claim is split");
        assert!(
            split.iter().all(|p| p.len() <= 64 + 2),
            "parts stay near their size"
        );
        // A claim no bigger than a part stays whole, in order.
        let small: Vec<Claimed> = (0..5).map(|i| claimed(i, "did:plc:x", false)).collect();
        let whole = parts(small, 64);
        assert_eq!(whole.len(), 1);
        let ids: Vec<&str> = whole[0].iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["d0", "d1", "d2", "d3", "d4"]);
    }

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
