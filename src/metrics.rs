//! Metrics: counters exported in the Prometheus text format at `/metrics`.
//!
//! Owns metric names and labels. Labels carry kinds, reasons and channel names only — never a
//! DID, an address or any other detail about a person.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    /// Firehose events seen, by kind (commit, identity, account).
    ingest_events: Family<Labels, Counter>,
    /// Events skipped, by reason (invalid record, malformed frame…): what an operator watches
    /// to see bad upstream data without it ever stopping ingest.
    ingest_skipped: Family<Labels, Counter>,
    ingest_reconnects: Counter,
    /// Relay commits and repositories refused by verification, by reason (bad signature,
    /// unproven op, missing block…): never indexed.
    ingest_rejected: Family<Labels, Counter>,
    /// Repositories read by backfill or a resync, by outcome.
    backfill_repos: Family<Labels, Counter>,
    publications: Family<Labels, Counter>,
    /// Delivery outcomes by channel and outcome (sent, retry, dead, cancelled).
    deliveries: Family<Labels, Counter>,
    /// Rows claimed again after a claimer's lease ran out (it died or stalled mid-send):
    /// each may have been sent twice.
    deliveries_reclaimed: Counter,
    /// Sends handed to a later provider after an earlier one failed transiently.
    failovers: Family<Labels, Counter>,
    breaker_opened: Family<Labels, Counter>,
    breaker_rejected: Family<Labels, Counter>,
    /// Outbox rows by channel and status, refreshed at each scrape.
    outbox: Family<Labels, Gauge>,
    /// Provider callbacks (bounces, complaints, inbound SMS, Telegram commands) by source,
    /// kind and outcome: what an operator watches to see suppressions, opt-outs and forged
    /// requests.
    inbound: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let ingest_events = Family::default();
        let ingest_skipped = Family::default();
        let ingest_reconnects = Counter::default();
        let ingest_rejected = Family::default();
        let backfill_repos = Family::default();
        let publications = Family::default();
        let deliveries = Family::default();
        let deliveries_reclaimed = Counter::default();
        let failovers = Family::default();
        let breaker_opened = Family::default();
        let breaker_rejected = Family::default();
        let outbox = Family::default();
        let inbound = Family::default();
        registry.register(
            "ingest_events",
            "Firehose events received, by kind",
            ingest_events.clone(),
        );
        registry.register(
            "ingest_skipped",
            "Firehose events skipped, by reason",
            ingest_skipped.clone(),
        );
        registry.register(
            "ingest_reconnects",
            "Reconnections to the firehose",
            ingest_reconnects.clone(),
        );
        registry.register(
            "ingest_rejected",
            "Relay commits and repositories refused by verification, by reason",
            ingest_rejected.clone(),
        );
        registry.register(
            "backfill_repos",
            "Repositories read by backfill or a resync, by outcome",
            backfill_repos.clone(),
        );
        registry.register(
            "publications",
            "Publish calls, by outcome",
            publications.clone(),
        );
        registry.register(
            "deliveries",
            "Delivery outcomes, by channel and outcome",
            deliveries.clone(),
        );
        registry.register(
            "deliveries_reclaimed",
            "Deliveries claimed again after a lease expired (possible duplicates)",
            deliveries_reclaimed.clone(),
        );
        registry.register(
            "delivery_failovers",
            "Sends passed to a later provider after a transient failure, by channel and provider",
            failovers.clone(),
        );
        registry.register(
            "circuit_breaker_opened",
            "Times a provider's circuit breaker opened, by provider",
            breaker_opened.clone(),
        );
        registry.register(
            "circuit_breaker_rejected",
            "Sends not tried because the provider's circuit breaker was open, by provider",
            breaker_rejected.clone(),
        );
        registry.register(
            "outbox",
            "Outbox rows by channel and status (dead letters: status=dead)",
            outbox.clone(),
        );
        registry.register(
            "inbound_events",
            "Provider callbacks received, by source, kind and outcome",
            inbound.clone(),
        );
        Self {
            registry,
            ingest_events,
            ingest_skipped,
            ingest_reconnects,
            ingest_rejected,
            backfill_repos,
            publications,
            deliveries,
            deliveries_reclaimed,
            failovers,
            breaker_opened,
            breaker_rejected,
            outbox,
            inbound,
        }
    }

    /// One provider callback: `source` (resend, twilio, vonage, telegram), `kind` (what it
    /// said: complaint, hard_bounce, soft_bounce, stop, start, help, other) and `outcome` (what
    /// Herald did). Never an address.
    pub fn inbound(&self, source: &str, kind: &str, outcome: &str) {
        self.inbound
            .get_or_create(&inbound_labels(source, kind, outcome))
            .inc();
    }

    pub fn inbound_count(&self, source: &str, kind: &str, outcome: &str) -> u64 {
        self.inbound
            .get_or_create(&inbound_labels(source, kind, outcome))
            .get()
    }

    pub fn ingest_event(&self, kind: &str) {
        self.ingest_events
            .get_or_create(&vec![("kind", kind.to_string())])
            .inc();
    }

    pub fn ingest_skipped(&self, reason: &str) {
        self.ingest_skipped
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    pub fn skipped_count(&self, reason: &str) -> u64 {
        self.ingest_skipped
            .get_or_create(&vec![("reason", reason.to_string())])
            .get()
    }

    pub fn ingest_rejected(&self, reason: &str) {
        self.ingest_rejected
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    pub fn rejected_count(&self, reason: &str) -> u64 {
        self.ingest_rejected
            .get_or_create(&vec![("reason", reason.to_string())])
            .get()
    }

    pub fn backfill_repo(&self, outcome: &str) {
        self.backfill_repos
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
    }

    pub fn ingest_reconnect(&self) {
        self.ingest_reconnects.inc();
    }

    pub fn publication(&self, outcome: &str) {
        self.publications
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
    }

    pub fn delivery(&self, channel: &str, outcome: &str, n: u64) {
        self.deliveries
            .get_or_create(&vec![
                ("channel", channel.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc_by(n);
    }

    pub fn delivery_count(&self, channel: &str, outcome: &str) -> u64 {
        self.deliveries
            .get_or_create(&vec![
                ("channel", channel.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .get()
    }

    pub fn delivery_reclaimed(&self) {
        self.deliveries_reclaimed.inc();
    }

    pub fn reclaimed_count(&self) -> u64 {
        self.deliveries_reclaimed.get()
    }

    pub fn failover(&self, channel: &str, provider: &str) {
        self.failovers
            .get_or_create(&vec![
                ("channel", channel.to_string()),
                ("provider", provider.to_string()),
            ])
            .inc();
    }

    pub fn breaker_opened(&self, provider: &str) {
        self.breaker_opened
            .get_or_create(&vec![("provider", provider.to_string())])
            .inc();
    }

    pub fn breaker_rejected(&self, provider: &str) {
        self.breaker_rejected
            .get_or_create(&vec![("provider", provider.to_string())])
            .inc();
    }

    /// Replace the outbox gauges with fresh `(channel, status, count)` figures.
    pub fn set_outbox(&self, counts: &[(String, String, i64)]) {
        self.outbox.clear();
        for (channel, status, count) in counts {
            self.outbox
                .get_or_create(&vec![
                    ("channel", channel.clone()),
                    ("status", status.clone()),
                ])
                .set(*count);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

fn inbound_labels(source: &str, kind: &str, outcome: &str) -> Labels {
    vec![
        ("source", source.to_string()),
        ("kind", kind.to_string()),
        ("outcome", outcome.to_string()),
    ]
}
