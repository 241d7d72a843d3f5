//! Metrics: counters exported in the Prometheus text format at `/metrics`.
//!
//! Owns metric names and labels. Labels carry kinds, reasons and channel names only — never a
//! DID, an address or any other detail about a person.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
    publications: Family<Labels, Counter>,
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
        let publications = Family::default();
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
            "publications",
            "Publish calls, by outcome",
            publications.clone(),
        );
        Self {
            registry,
            ingest_events,
            ingest_skipped,
            ingest_reconnects,
            publications,
        }
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

    pub fn ingest_reconnect(&self) {
        self.ingest_reconnects.inc();
    }

    pub fn publication(&self, outcome: &str) {
        self.publications
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
