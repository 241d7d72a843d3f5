//! Delivery benchmarks: how fast the dispatcher drains the outbox, and in how much memory.
//!
//! - `email` — N members (HERALD_BENCH_N, default 10,000) each with a verified email contact
//!   and a route for the pipe on `email`; one publish; time from the publish's answer until
//!   all N outbox rows are settled as sent through SMTP to postfix's `smtp-sink` (the sink at
//!   HERALD_BENCH_SMTP=ip:port, else one started here). `scripts/bench/email-vs-postfix` runs
//!   postfix's own `smtp-source` against the same sink first, for comparison. With
//!   HERALD_BENCH_SEEDS=DIR, the seeded members are kept in DIR and reused by the next run
//!   with the same N.
//! - `http` — N webhook contacts (one per member) on a local endpoint in a child process
//!   answering 204; deliveries/s and Herald's peak RSS.
//! - `mixed` — HERALD_BENCH_MEMBERS (default 100,000) members with mixed preferences (the
//!   `Kind` table below: 50 % inbox only, 20 % inbox + email, 15 % inbox + webhook, 10 % inbox
//!   and private feed, 5 % muted), one publication, time from the publish call until every
//!   delivery is settled, and Herald's peak RSS from the publish on (the sink and the HTTP
//!   endpoint are other processes; the counter is reset after seeding).
//! - `digests` — HERALD_BENCH_MEMBERS (default 100,000) members spread evenly over the
//!   [`ZONES`] (36 IANA time zones, half- and quarter-hour and southern-hemisphere ones among
//!   them), each with a preferences record (`timezone`, a `digestHour` that varies, the
//!   `webhook` channel on a daily cadence) and a verified webhook on the local 204 endpoint.
//!   On a hand-moved clock set to the next UTC midnight D, three items are published. Phase 1
//!   ("computed and enqueued"): until every outbox row is held for its member's digest hour
//!   (`pending`, `fold = 1`). Phase 2 ("a day of digests"): the clock advances in 15-minute
//!   steps through D+1 00:15, waiting at each step until the rows due by then are sent; every
//!   member must get exactly one webhook listing the three items.
//!
//! Herald runs in this process (api + deliver roles, SQLite in a temporary directory, or
//! HERALD_BENCH_DATABASE_URL); the publish goes through the XRPC endpoint, so it wakes the
//! dispatcher as in production. HERALD_BENCH_CONCURRENCY and HERALD_BENCH_BATCH override the
//! dispatcher's concurrency (512) and claim batch (512).
//!
//! Run: `cargo bench --bench deliver -- email|http|mixed|digests` (several names, or none for all,
//! each then in a process of its own;
//! `email` and `mixed` need postfix's smtp-sink — see scripts/bench/README.md).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveTime, Utc};

use common::peers::{HttpEndpoint, NO_SMTP_SINK, SmtpPeer, SmtpSink};
use futures_util::StreamExt;
use herald::clock::{Clock, ManualClock, SystemClock};
use herald::model::{
    Channel, ChannelCadence, CommunityRecord, PipeDecl, PreferencesRecord, Record, Route,
    SubscriptionRecord,
};
use herald::sandbox::{Identity, Plc, plc_did, tid};
use herald::startup::{Application, Roles};
use herald::storage::IndexOp;
use herald::vault::AddContact;
use serde_json::json;

const MODES: &[&str] = &["email", "http", "mixed", "digests"];
const PIPE: &str = "opportunity";
const SERVICE_DID: &str = "did:web:herald.bench";
/// Contacts seeded at once (the vault's writes are serialised by SQLite anyway).
const SEED_CONCURRENCY: usize = 16;
/// How long settling may take before the benchmark gives up and shows the outbox.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(900);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--serve-http") {
        return common::peers::serve_http();
    }
    if let Some(i) = args.iter().position(|a| a == "--seed") {
        return seed(&args[i + 1..]);
    }
    // `cargo bench` passes `--bench`; anything else not starting with `-` names a benchmark.
    let named: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if let Some(bad) = named.iter().find(|n| !MODES.contains(n)) {
        anyhow::bail!(
            "unknown benchmark {bad:?}: choose among {}",
            MODES.join(", ")
        );
    }
    let explicit = !named.is_empty();
    let modes: Vec<&str> = if explicit { named } else { MODES.to_vec() };
    if modes.len() > 1 {
        // Each in a process of its own: one run's heap would otherwise count in the next
        // one's peak RSS (the mixed benchmark after the HTTP one peaked 20 MiB higher).
        for mode in modes {
            if !explicit && needs_sink(mode) && !sink_available() {
                println!("deliver/{mode}: skipped — {NO_SMTP_SINK}");
                continue;
            }
            let status = std::process::Command::new(std::env::current_exe()?)
                .arg(mode)
                .status()?;
            anyhow::ensure!(status.success(), "the {mode} benchmark failed: {status}");
        }
        return Ok(());
    }
    // For looking inside a run (`RUST_LOG=sqlx::query=debug` times every statement); off by
    // default, so the figures are not taken with logging on.
    if let Ok(filter) = std::env::var("RUST_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    // One benchmark, named (several, or none, went to child processes above).
    let mode = modes[0];
    if needs_sink(mode) && !sink_available() {
        anyhow::bail!("the {mode} benchmark needs an SMTP sink: {NO_SMTP_SINK}");
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match mode {
            "email" => email().await,
            "http" => http().await,
            "mixed" => mixed().await,
            "digests" => digests().await,
            _ => unreachable!(),
        }
    })
}

fn needs_sink(mode: &str) -> bool {
    matches!(mode, "email" | "mixed")
}

/// Whether an SMTP sink is given (`HERALD_BENCH_SMTP`) or can be started.
fn sink_available() -> bool {
    std::env::var("HERALD_BENCH_SMTP").is_ok() || SmtpSink::available()
}

fn env_number(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// What a member asks for in the benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No route: the default, inbox only.
    InboxOnly,
    InboxEmail,
    /// Email only (the email benchmark).
    Email,
    InboxWebhook,
    /// Webhook only (the HTTP benchmark).
    Webhook,
    InboxFeed,
    Muted,
}

impl Kind {
    fn routes(self) -> Vec<Route> {
        let channels: &[&str] = match self {
            Kind::InboxOnly | Kind::Muted => return vec![],
            Kind::InboxEmail => &["inbox", "email"],
            Kind::Email => &["email"],
            Kind::InboxWebhook => &["inbox", "webhook"],
            Kind::Webhook => &["webhook"],
            Kind::InboxFeed => &["inbox", "feed"],
        };
        vec![Route {
            pipe: PIPE.into(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
        }]
    }

    /// The mixed benchmark's population, by member number: 50 % inbox only, 20 % inbox +
    /// email, 15 % inbox + webhook, 10 % inbox + feed, 5 % muted.
    fn mixed(i: usize) -> Kind {
        match i % 20 {
            0..=9 => Kind::InboxOnly,
            10..=13 => Kind::InboxEmail,
            14..=16 => Kind::InboxWebhook,
            17..=18 => Kind::InboxFeed,
            _ => Kind::Muted,
        }
    }
}

/// A running Herald (api + deliver) on fresh databases, with its community.
struct Bench {
    app: Application,
    community: Identity,
    /// Where the index lives, for the few questions the store has no method for.
    database_url: String,
    // Kept alive for the app's lifetime.
    _plc: Plc,
    _dir: Option<tempfile::TempDir>,
}

impl Bench {
    async fn start(smtp: Option<std::net::SocketAddr>) -> anyhow::Result<Self> {
        Self::start_with(smtp, vec![], Arc::new(SystemClock)).await
    }

    /// A Herald on the databases in `dir` (seeded by another process, or to be seeded).
    async fn start_in(dir: &Path, smtp: Option<std::net::SocketAddr>) -> anyhow::Result<Self> {
        Self::start_at(Some(dir), smtp, vec![], Arc::new(SystemClock)).await
    }

    /// As [`Bench::start`], with more settings and the clock Herald reads.
    async fn start_with(
        smtp: Option<std::net::SocketAddr>,
        extra: Vec<(&str, String)>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        Self::start_at(None, smtp, extra, clock).await
    }

    async fn start_at(
        at: Option<&Path>,
        smtp: Option<std::net::SocketAddr>,
        extra: Vec<(&str, String)>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let plc = Plc::start().await?;
        let temp = match at {
            Some(_) => None,
            None => Some(tempfile::tempdir()?),
        };
        let dir = match (at, &temp) {
            (Some(path), _) => path.to_path_buf(),
            (None, Some(t)) => t.path().to_path_buf(),
            (None, None) => unreachable!("a temporary directory was made"),
        };
        let database_url = std::env::var("HERALD_BENCH_DATABASE_URL")
            .unwrap_or_else(|_| format!("sqlite://{}", dir.join("bench.db").display()));
        let mut pairs: Vec<(&str, String)> = vec![
            ("HERALD_DATABASE_URL", database_url.clone()),
            (
                "HERALD_VAULT_URL",
                format!("sqlite://{}", dir.join("vault.db").display()),
            ),
            (
                "HERALD_VAULT_KEY_FILE",
                dir.join("vault.key").display().to_string(),
            ),
            ("HERALD_LISTEN", "127.0.0.1:0".into()),
            ("HERALD_PLC_URL", plc.url().to_string()),
            ("HERALD_SERVICE_DID", SERVICE_DID.into()),
            ("HERALD_EMAIL_FROM", "Herald <herald@bench.example>".into()),
            ("HERALD_EMAIL_PROVIDERS", "smtp".into()),
            ("HERALD_WEBHOOK_ALLOW_PRIVATE", "true".into()),
        ];
        pairs.extend(extra);
        if let Some(addr) = smtp {
            pairs.push(("HERALD_SMTP_URL", format!("smtp://{addr}")));
        }
        for (bench_key, key) in [
            ("HERALD_BENCH_CONCURRENCY", "HERALD_DELIVERY_CONCURRENCY"),
            ("HERALD_BENCH_BATCH", "HERALD_DELIVERY_BATCH"),
        ] {
            if let Ok(v) = std::env::var(bench_key) {
                pairs.push((key, v));
            }
        }
        let settings = common::settings(&pairs);
        let concurrency = settings.delivery.concurrency;
        let batch = settings.delivery.batch;
        let app = Application::build_with_clock(
            settings,
            Roles {
                api: true,
                ingest: false,
                deliver: true,
            },
            clock,
        )
        .await?;
        println!("  dispatcher: concurrency {concurrency}, claim batch {batch}");
        let community = Identity::plc("bench-community");
        plc.register_identity(&community);
        Ok(Self {
            app,
            community,
            database_url,
            _plc: plc,
            _dir: temp,
        })
    }

    /// The community record and one subscription per member, through the index API ingest
    /// uses, in ingest-sized batches.
    async fn seed_records(&self, kinds: &[Kind]) -> anyhow::Result<()> {
        let mut ops = vec![IndexOp::Put {
            did: self.community.did.clone(),
            collection: "community.herald.community".into(),
            rkey: "self".into(),
            rev: tid(),
            cid: None,
            record: Record::Community(CommunityRecord {
                name: "Bench".into(),
                pipes: vec![PipeDecl {
                    id: PIPE.into(),
                    name: None,
                    description: None,
                }],
                publishers: vec![],
                admins: vec![],
                visibility: None,
            }),
            body: "{}".into(),
        }];
        for (i, kind) in kinds.iter().enumerate() {
            ops.push(IndexOp::Put {
                did: member(i),
                collection: "community.herald.subscription".into(),
                rkey: tid(),
                rev: tid(),
                cid: None,
                record: Record::Subscription(SubscriptionRecord {
                    subject: self.community.did.clone(),
                    path: None,
                    recursive: false,
                    routes: kind.routes(),
                    muted: *kind == Kind::Muted,
                }),
                body: "{}".into(),
            });
            if ops.len() == 2_000 {
                self.app.store().apply_batch(&ops, None).await?;
                ops.clear();
            }
        }
        self.app.store().apply_batch(&ops, None).await?;
        Ok(())
    }

    /// The verified contacts each member's routes need: an email address, a webhook on
    /// `webhook`, or a private feed.
    async fn seed_contacts(
        &self,
        kinds: &[Kind],
        webhook: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<usize> {
        let vault = self.app.vault();
        let seeded = futures_util::stream::iter(kinds.iter().copied().enumerate())
            .map(|(i, kind)| async move {
                let owner = member(i);
                match kind {
                    Kind::Email | Kind::InboxEmail => {
                        vault
                            .import_verified_contact(
                                &owner,
                                Channel::Email,
                                &format!("member{i}@bench.example"),
                            )
                            .await?;
                    }
                    Kind::Webhook | Kind::InboxWebhook => {
                        let addr = webhook.expect("a webhook endpoint for webhook members");
                        vault
                            .import_verified_contact(
                                &owner,
                                Channel::Webhook,
                                &format!("http://{addr}/hooks/{i}"),
                            )
                            .await?;
                    }
                    Kind::InboxFeed => {
                        vault
                            .add_contact(
                                &owner,
                                AddContact {
                                    channel: "feed".into(),
                                    address: None,
                                    subscription: None,
                                    prevalidation: None,
                                    secret: None,
                                },
                            )
                            .await?;
                    }
                    Kind::InboxOnly | Kind::Muted => return Ok::<usize, anyhow::Error>(0),
                }
                Ok(1)
            })
            .buffer_unordered(SEED_CONCURRENCY)
            .fold(Ok::<usize, anyhow::Error>(0), |total, one| async move {
                Ok(total? + one?)
            })
            .await?;
        Ok(seeded)
    }

    /// One preferences record per member (`timezone`, `digestHour`, the webhook on a daily
    /// cadence), through the index API, in ingest-sized batches.
    async fn seed_preferences(&self, members: &[(&str, u32)]) -> anyhow::Result<()> {
        for (chunk_no, chunk) in members.chunks(2_000).enumerate() {
            let ops: Vec<IndexOp> = chunk
                .iter()
                .enumerate()
                .map(|(j, (zone, hour))| IndexOp::Put {
                    did: member(chunk_no * 2_000 + j),
                    collection: "community.herald.preferences".into(),
                    rkey: "self".into(),
                    rev: tid(),
                    cid: None,
                    record: Record::Preferences(PreferencesRecord {
                        default_routes: vec![],
                        paused_all: false,
                        language: None,
                        timezone: Some(zone.to_string()),
                        digest_hour: Some(i64::from(*hour)),
                        quiet_hours: None,
                        channel_limits: vec![],
                        channel_cadences: vec![ChannelCadence {
                            channel: "webhook".into(),
                            cadence: "daily".into(),
                        }],
                    }),
                    body: "{}".into(),
                })
                .collect();
            self.app.store().apply_batch(&ops, None).await?;
        }
        Ok(())
    }

    /// Outbox rows by `status/fold`, read from the database itself.
    async fn outbox_folds(&self) -> anyhow::Result<BTreeMap<String, i64>> {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.database_url).await?;
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT status, CAST(fold AS BIGINT), COUNT(*) FROM outbox GROUP BY status, fold",
        )
        .fetch_all(&pool)
        .await?;
        pool.close().await;
        Ok(rows
            .into_iter()
            .map(|(status, fold, n)| (format!("{status}/fold={fold}"), n))
            .collect())
    }

    /// Publish one item through XRPC; returns the publish's answer.
    async fn publish(&self) -> anyhow::Result<serde_json::Value> {
        self.publish_item(json!({"id": "bench", "title": "Benchmark item",
                                 "text": "One publication, fanned out and delivered.",
                                 "url": "https://bench.example/items/1"}))
            .await
    }

    /// Publish `item` through XRPC; returns the publish's answer.
    async fn publish_item(&self, item: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let nsid = "community.herald.publish";
        let response = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/xrpc/{nsid}", self.app.port()))
            .bearer_auth(self.community.token(SERVICE_DID, nsid))
            .json(&json!({"community": self.community.did, "pipe": PIPE, "item": item}))
            .send()
            .await?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "publish failed: {status} {answer}");
        Ok(answer)
    }

    /// Outbox rows by `channel/status`.
    async fn outbox(&self) -> anyhow::Result<BTreeMap<String, i64>> {
        Ok(self
            .app
            .store()
            .outbox_counts()
            .await?
            .into_iter()
            .map(|(channel, status, n)| (format!("{channel}/{status}"), n))
            .collect())
    }

    /// Wait until `total` outbox rows have a final outcome (sent, dead or cancelled), read
    /// from the dispatcher's counters every 2 ms (the outbox itself is only read at the end).
    /// Also samples this process's anonymous and file-backed RSS every 10 ms.
    async fn settled(&self, total: u64, memory: &mut Memory) -> anyhow::Result<Instant> {
        self.reached(
            "deliveries settled",
            total,
            &["sent", "dead", "cancelled"],
            memory,
        )
        .await
    }

    /// Wait until the dispatcher's counters for `outcomes` (summed over the channels) reach
    /// `total`, read every 2 ms; samples this process's RSS parts every 10 ms meanwhile.
    async fn reached(
        &self,
        what: &str,
        total: u64,
        outcomes: &[&str],
        memory: &mut Memory,
    ) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        for tick in 0u64.. {
            if tick % 5 == 0 {
                memory.sample();
            }
            let done = self.counted(outcomes);
            if done >= total {
                memory.sample();
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "only {done} of {total} {what} after {SETTLE_TIMEOUT:?}: {:?}",
                    self.outbox().await?
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        unreachable!()
    }

    /// The dispatcher's count of rows settled with one of `outcomes`, over all channels.
    fn counted(&self, outcomes: &[&str]) -> u64 {
        let metrics = self.app.metrics();
        ["email", "webhook", "feed", "sms", "telegram", "webpush"]
            .iter()
            .flat_map(|c| outcomes.iter().map(move |o| metrics.delivery_count(c, o)))
            .sum()
    }

    fn retries(&self) -> u64 {
        ["email", "webhook", "feed"]
            .iter()
            .map(|c| self.app.metrics().delivery_count(c, "retry"))
            .sum()
    }
}

/// The largest anonymous (heap) and file-backed (mostly SQLite's memory-mapped database)
/// RSS seen while deliveries were under way, in MiB.
#[derive(Default)]
struct Memory {
    anon: f64,
    file: f64,
}

impl Memory {
    fn sample(&mut self) {
        self.anon = self.anon.max(common::rss_anon_mib());
        self.file = self.file.max(common::rss_file_mib());
    }
}

fn member(i: usize) -> String {
    plc_did(&format!("member-{i}"))
}

fn outbox_total(counts: &BTreeMap<String, i64>) -> u64 {
    counts.values().map(|n| *n as u64).sum()
}

fn not_sent(counts: &BTreeMap<String, i64>) -> i64 {
    counts
        .iter()
        .filter(|(k, _)| !k.ends_with("/sent"))
        .map(|(_, n)| *n)
        .sum()
}

/// What one publish and its deliveries took.
struct Run {
    /// The publish call, until its answer (the fan-out: inbox and outbox rows written).
    publish: Duration,
    /// From the publish's answer until every outbox row was settled.
    delivering: Duration,
    /// Outbox rows.
    total: u64,
    /// Outbox rows not sent (dead or cancelled).
    not_sent: i64,
    /// CPU seconds Herald used while delivering (every thread of this process).
    cpu: f64,
    /// Peak RSS (VmHWM) from the publish on, and its largest parts.
    peak: f64,
    memory: Memory,
}

impl Run {
    fn warning(&self) -> String {
        match self.not_sent {
            0 => String::new(),
            k => format!("; WARNING: {k} deliveries not sent"),
        }
    }

    fn memory(&self) -> String {
        format!(
            "Herald peak RSS {:.1} MiB (largest parts: anonymous {:.1} MiB, file-backed {:.1} MiB \
             — the program's code and any memory-mapped database)",
            self.peak, self.memory.anon, self.memory.file
        )
    }
}

/// Publish once (the members are seeded), wait until every delivery is settled, print what
/// happened.
async fn publish_and_settle(bench: &Bench, label: &str) -> anyhow::Result<Run> {
    let rss_before = common::rss_mib();
    common::reset_peak_rss();
    let mut memory = Memory::default();
    memory.sample();
    let start = Instant::now();
    let answer = bench.publish().await?;
    let published = Instant::now();
    let cpu_before = common::cpu_seconds();
    let queued = bench.outbox().await?;
    let total = outbox_total(&queued);
    let done = bench.settled(total, &mut memory).await?;
    let cpu_split = common::cpu_seconds() - cpu_before;
    let cpu = cpu_split.total();
    let peak = common::peak_rss_mib();
    let counts = bench.outbox().await?;
    println!(
        "  {label}: publish answered in {:.3} s ({} recipients, {total} outbox rows); \
         all settled {:.3} s after the answer, {:.3} s after the call",
        (published - start).as_secs_f64(),
        answer["recipients"],
        (done - published).as_secs_f64(),
        (done - start).as_secs_f64(),
    );
    println!(
        "  outbox: {counts:?}; retries on the way: {}",
        bench.retries()
    );
    println!(
        "  Herald CPU while delivering: {cpu:.2} s = {:.0} µs per outbox row ({:.0} µs in \
         Herald's code, {:.0} µs in the kernel; {:.2} cores busy)",
        cpu * 1e6 / total.max(1) as f64,
        cpu_split.user * 1e6 / total.max(1) as f64,
        cpu_split.system * 1e6 / total.max(1) as f64,
        cpu / (done - published).as_secs_f64(),
    );
    println!(
        "  Herald RSS before publish {rss_before:.1} MiB; from publish to settled: peak \
         {peak:.1} MiB, largest anonymous {:.1} MiB, largest file-backed {:.1} MiB",
        memory.anon, memory.file
    );
    Ok(Run {
        publish: published - start,
        delivering: done - published,
        total,
        not_sent: not_sent(&counts),
        cpu,
        peak,
        memory,
    })
}

async fn email() -> anyhow::Result<()> {
    let n = env_number("HERALD_BENCH_N", 10_000);
    let sink = SmtpPeer::from_env_or_start()?;
    println!("deliver/email: {n} emails to {}", sink.describe());
    let dir = tempfile::tempdir()?;
    seed_email(dir.path(), n, sink.addr())?;
    let bench = Bench::start_in(dir.path(), Some(sink.addr())).await?;
    let run = publish_and_settle(&bench, "email").await?;
    println!(
        "deliver/email RESULT: {} emails sent in {:.3} s = {:.0} emails/s (publish answered → \
         all settled), {:.0} µs of Herald's CPU each; {}{}",
        run.total,
        run.delivering.as_secs_f64(),
        run.total as f64 / run.delivering.as_secs_f64(),
        run.cpu * 1e6 / run.total.max(1) as f64,
        run.memory(),
        run.warning()
    );
    bench.app.stop().await;
    Ok(())
}

async fn http() -> anyhow::Result<()> {
    let n = env_number("HERALD_BENCH_N", 10_000);
    let mut endpoint = HttpEndpoint::start()?;
    println!(
        "deliver/http: {n} webhook deliveries to a 204 endpoint at {} (pid {})",
        endpoint.addr,
        endpoint.pid()
    );
    let bench = Bench::start(None).await?;
    let kinds = vec![Kind::Webhook; n];
    let seeding = Instant::now();
    bench.seed_records(&kinds).await?;
    let contacts = bench.seed_contacts(&kinds, Some(endpoint.addr)).await?;
    println!(
        "  seeded {n} members and {contacts} verified webhook contacts in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let run = publish_and_settle(&bench, "http").await?;
    let received = endpoint.requests()?;
    println!(
        "deliver/http RESULT: {} webhooks delivered in {:.3} s = {:.0} deliveries/s \
         (publish answered → all settled; the endpoint answered {received} requests); {}{}",
        run.total,
        run.delivering.as_secs_f64(),
        run.total as f64 / run.delivering.as_secs_f64(),
        run.memory(),
        run.warning()
    );
    bench.app.stop().await;
    Ok(())
}

async fn mixed() -> anyhow::Result<()> {
    let members = env_number("HERALD_BENCH_MEMBERS", 100_000);
    let sink = SmtpPeer::from_env_or_start()?;
    let mut endpoint = HttpEndpoint::start()?;
    let kinds = population("mixed", members)?;
    let mut mix: BTreeMap<String, usize> = BTreeMap::new();
    for k in &kinds {
        *mix.entry(format!("{k:?}")).or_default() += 1;
    }
    println!(
        "deliver/mixed: {members} members {mix:?}; email to {}, webhooks to {} (pid {})",
        sink.describe(),
        endpoint.addr,
        endpoint.pid()
    );
    let dir = tempfile::tempdir()?;
    seed_in_child(
        "mixed",
        dir.path(),
        members,
        sink.addr(),
        Some(endpoint.addr),
    )?;
    let bench = Bench::start_in(dir.path(), Some(sink.addr())).await?;
    let run = publish_and_settle(&bench, "mixed").await?;
    let received = endpoint.requests()?;
    println!(
        "deliver/mixed RESULT: {members} members, one publication: {:.3} s from the publish \
         call until all {} external deliveries were settled (publish {:.3} s, then delivery \
         {:.3} s = {:.0} deliveries/s; the webhook endpoint answered {received}); {}{}",
        (run.publish + run.delivering).as_secs_f64(),
        run.total,
        run.publish.as_secs_f64(),
        run.delivering.as_secs_f64(),
        run.total as f64 / run.delivering.as_secs_f64(),
        run.memory(),
        run.warning()
    );
    println!(
        "  (the SMTP sink and the HTTP endpoint are other processes, not counted; the \
         endpoint's own peak RSS was {:.1} MiB)",
        common::peers::peak_rss_of(endpoint.pid())
    );
    bench.app.stop().await;
    Ok(())
}

/// The population of a benchmark that seeds in a child process.
fn population(benchmark: &str, members: usize) -> anyhow::Result<Vec<Kind>> {
    Ok(match benchmark {
        "mixed" => (0..members).map(Kind::mixed).collect(),
        "email" => vec![Kind::Email; members],
        other => anyhow::bail!("no seeding for {other:?}"),
    })
}

/// Seed `benchmark`'s databases in `dir` in a child process (this binary re-executed with
/// `--seed`), so what seeding allocated (records, encrypted contacts) is not counted as the
/// memory Herald needs, nor left fragmenting the allocator of the Herald measured: that one
/// starts on the seeded databases, as a deliver process would.
fn seed_in_child(
    benchmark: &str,
    dir: &Path,
    members: usize,
    smtp: std::net::SocketAddr,
    webhook: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command
        .arg("--seed")
        .arg(benchmark)
        .arg(dir)
        .arg(members.to_string())
        .arg(smtp.to_string());
    if let Some(webhook) = webhook {
        command.arg(webhook.to_string());
    }
    let status = command.status()?;
    anyhow::ensure!(status.success(), "seeding failed: {status}");
    Ok(())
}

/// The email benchmark's members, seeded into `dir`, or copied there from an earlier run's
/// when HERALD_BENCH_SEEDS names a directory to keep them in (SQLite only): seeding 50,000
/// members takes over a minute, sending to them a few seconds, and a comparison run several
/// times should not spend most of its time seeding. Nothing in the seed depends on the sink.
fn seed_email(dir: &Path, n: usize, smtp: std::net::SocketAddr) -> anyhow::Result<()> {
    const COMPLETE: &str = "seeded";
    let kept = std::env::var_os("HERALD_BENCH_SEEDS")
        .filter(|_| std::env::var_os("HERALD_BENCH_DATABASE_URL").is_none())
        .map(|d| Path::new(&d).join(format!("email-{n}")));
    if let Some(kept) = &kept
        && kept.join(COMPLETE).exists()
    {
        copy_files(kept, dir)?;
        println!(
            "  {n} members as seeded by an earlier run ({})",
            kept.display()
        );
        return Ok(());
    }
    seed_in_child("email", dir, n, smtp, None)?;
    if let Some(kept) = kept {
        std::fs::create_dir_all(&kept)?;
        copy_files(dir, &kept)?;
        // Written last: a copy cut short is never taken for a seed.
        std::fs::write(kept.join(COMPLETE), "")?;
    }
    Ok(())
}

/// Copies the files directly in `from` (the databases and the vault key) into `to`.
fn copy_files(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// `--seed BENCHMARK DIR MEMBERS SMTP [WEBHOOK]`: the child side of [`seed_in_child`].
fn seed(args: &[String]) -> anyhow::Result<()> {
    let [benchmark, dir, members, smtp, rest @ ..] = args else {
        anyhow::bail!("usage: --seed BENCHMARK DIR MEMBERS SMTP_ADDR [WEBHOOK_ADDR]");
    };
    let members: usize = members.parse()?;
    let kinds = population(benchmark, members)?;
    let webhook: Option<std::net::SocketAddr> = rest.first().map(|w| w.parse()).transpose()?;
    tokio::runtime::Runtime::new()?.block_on(async {
        let bench = Bench::start_in(Path::new(dir), Some(smtp.parse()?)).await?;
        let seeding = Instant::now();
        bench.seed_records(&kinds).await?;
        let records = seeding.elapsed();
        let contacts = bench.seed_contacts(&kinds, webhook).await?;
        println!(
            "  seeded {members} subscriptions in {:.1} s and {contacts} contacts and feeds in \
             {:.1} s (in a separate process)",
            records.as_secs_f64(),
            (seeding.elapsed() - records).as_secs_f64()
        );
        bench.app.stop().await;
        Ok(())
    })
}

/// The digests benchmark's time zones: every whole-hour offset from -10 to +14 that has a
/// zone, the half-hour ones (St John's, Tehran, Kabul, Kolkata, Yangon, Adelaide), the
/// quarter-hour ones (Kathmandu, Eucla, Chatham), and southern-hemisphere zones in their
/// summer time (Santiago, Adelaide, Sydney, Auckland, Chatham) in late November.
const ZONES: &[&str] = &[
    "Pacific/Honolulu",
    "America/Anchorage",
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
    "America/Caracas",
    "America/St_Johns",
    "America/Sao_Paulo",
    "America/Santiago",
    "Atlantic/South_Georgia",
    "Atlantic/Azores",
    "Europe/London",
    "Africa/Lagos",
    "Europe/Paris",
    "Africa/Johannesburg",
    "Europe/Moscow",
    "Asia/Tehran",
    "Asia/Dubai",
    "Asia/Kabul",
    "Asia/Karachi",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Dhaka",
    "Asia/Yangon",
    "Asia/Bangkok",
    "Asia/Shanghai",
    "Australia/Eucla",
    "Asia/Tokyo",
    "Australia/Adelaide",
    "Australia/Sydney",
    "Pacific/Noumea",
    "Pacific/Auckland",
    "Pacific/Chatham",
    "Pacific/Tongatapu",
    "Pacific/Kiritimati",
];

/// Items published at D 00:00: each member's digest lists all of them.
const DIGEST_ITEMS: u64 = 3;
/// How far the clock moves at each step of the day (the quarter-hour zones need 15 minutes).
const STEP_MINUTES: i64 = 15;

/// Member `i`'s zone and digest hour: zones round-robin; the hour never the local hour at
/// `day` (a digest due at the very instant of the publish would go out item by item), and
/// otherwise 1 to 23 hours after it, so digests fall all through the day.
fn digest_preferences(i: usize, day: DateTime<Utc>) -> (&'static str, u32) {
    use chrono::Timelike;
    let zone = ZONES[i % ZONES.len()];
    let tz: chrono_tz::Tz = zone.parse().expect("a known zone");
    let local_hour = day.with_timezone(&tz).hour();
    let later = 1 + (i / ZONES.len()) as u32 % 23;
    (zone, (local_hour + later) % 24)
}

async fn digests() -> anyhow::Result<()> {
    let members = env_number("HERALD_BENCH_MEMBERS", 100_000);
    let mut endpoint = HttpEndpoint::start()?;
    // D: a UTC midnight after the real now (publications and their rows carry real times,
    // which must be in the past at D), at least an hour ahead so seeding cannot catch it up.
    let day = (Utc::now() + chrono::Duration::hours(1))
        .date_naive()
        .succ_opt()
        .expect("a next day")
        .and_time(NaiveTime::MIN)
        .and_utc();
    println!(
        "deliver/digests: {members} members over {} time zones, the webhook channel on a daily \
         cadence, a 204 endpoint at {} (pid {}); day D = {}",
        ZONES.len(),
        endpoint.addr,
        endpoint.pid(),
        day.format("%Y-%m-%d")
    );
    let clock = ManualClock::new();
    let bench = Bench::start_with(
        None,
        vec![
            ("HERALD_DELIVERY_POLL_MS", "20".into()),
            ("HERALD_DIGEST_CHANNELS", "sms".into()),
        ],
        clock.clone(),
    )
    .await?;
    let prefs: Vec<(&str, u32)> = (0..members).map(|i| digest_preferences(i, day)).collect();
    // When each member's digest is due: the schedule's own answer, to know what each step
    // of the day must have sent.
    let mut due: BTreeMap<DateTime<Utc>, u64> = BTreeMap::new();
    for (zone, hour) in &prefs {
        let at = herald::schedule::MemberClock::lenient(Some(zone), Some(i64::from(*hour)), None)
            .next_digest_at(day);
        anyhow::ensure!(
            at > day && at <= day + chrono::Duration::days(1),
            "{zone} {hour}h: due {at}"
        );
        *due.entry(at).or_default() += 1;
    }
    let kinds = vec![Kind::Webhook; members];
    let seeding = Instant::now();
    bench.seed_records(&kinds).await?;
    bench.seed_preferences(&prefs).await?;
    let records = seeding.elapsed();
    let contacts = bench.seed_contacts(&kinds, Some(endpoint.addr)).await?;
    println!(
        "  seeded {members} subscriptions and preferences in {:.1} s and {contacts} verified \
         webhook contacts in {:.1} s; digests due at {} distinct instants between {} and {}",
        records.as_secs_f64(),
        (seeding.elapsed() - records).as_secs_f64(),
        due.len(),
        due.keys().next().expect("members").format("%H:%M"),
        due.keys().last().expect("members").format("%H:%M"),
    );

    // Phase 1: computed and enqueued.
    clock.set(day);
    let rows = members as u64 * DIGEST_ITEMS;
    let rss_before = common::rss_mib();
    common::reset_peak_rss();
    let mut memory = Memory::default();
    memory.sample();
    let start = Instant::now();
    let mut publishes = Vec::new();
    for k in 1..=DIGEST_ITEMS {
        let call = Instant::now();
        let answer = bench
            .publish_item(json!({"id": format!("digest-{k}"), "title": format!("Item {k} of the day"),
                                 "text": "Published at midnight UTC, delivered at each member's digest hour.",
                                 "url": format!("https://bench.example/items/{k}")}))
            .await?;
        publishes.push((call.elapsed(), answer["recipients"].clone()));
    }
    let published = start.elapsed();
    let held = bench
        .reached("rows held for a digest", rows, &["held"], &mut memory)
        .await?;
    let phase1 = held - start;
    let peak1 = common::peak_rss_mib();
    let memory1 = std::mem::take(&mut memory);
    let folds = bench.outbox_folds().await?;
    println!(
        "  publishes: {}; all three answered {:.3} s after the first call",
        publishes
            .iter()
            .map(|(t, r)| format!("{:.3} s ({r} recipients)", t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", "),
        published.as_secs_f64()
    );
    println!("  outbox after phase 1 (status/fold): {folds:?}");
    anyhow::ensure!(
        folds.get("pending/fold=1") == Some(&(rows as i64)) && outbox_total(&folds) == rows,
        "every row should be pending with fold = 1: {folds:?}"
    );
    anyhow::ensure!(
        endpoint.requests()? == 0,
        "nothing may be sent before digest hours"
    );
    println!(
        "deliver/digests RESULT phase 1 (computed and enqueued): {rows} outbox rows ({members} \
         members × {DIGEST_ITEMS} items) held for their digest hour {:.3} s after the first \
         publish call = {:.0} rows/s; Herald RSS before {rss_before:.1} MiB, peak {peak1:.1} MiB \
         (largest parts: anonymous {:.1} MiB, file-backed {:.1} MiB)",
        phase1.as_secs_f64(),
        rows as f64 / phase1.as_secs_f64(),
        memory1.anon,
        memory1.file
    );

    // Phase 2: a day of digests, in steps.
    common::reset_peak_rss();
    let mut memory = Memory::default();
    memory.sample();
    let start = Instant::now();
    let mut expected = 0u64;
    let mut slowest = (Duration::ZERO, day, 0u64);
    let steps = 24 * 60 / STEP_MINUTES + 1;
    for step in 1..=steps {
        let now = day + chrono::Duration::minutes(STEP_MINUTES * step);
        let due_now: u64 = due.range(..=now).map(|(_, n)| n).sum();
        let step_start = Instant::now();
        clock.set(now);
        bench
            .reached(
                "digest rows sent",
                due_now * DIGEST_ITEMS,
                &["sent", "dead", "cancelled"],
                &mut memory,
            )
            .await?;
        let took = step_start.elapsed();
        let digests = due_now - expected;
        if took > slowest.0 {
            slowest = (took, now, digests);
        }
        expected = due_now;
    }
    let phase2 = start.elapsed();
    let peak2 = common::peak_rss_mib();
    // A moment for anything sent beyond what was due to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = bench.outbox().await?;
    let requests = endpoint.requests()?;
    let items = endpoint.items()?;
    println!(
        "  outbox: {counts:?}; retries on the way: {}; the endpoint answered {requests} \
         requests listing {items} items; slowest step: {:.3} s for {} digests at {}",
        bench.retries(),
        slowest.0.as_secs_f64(),
        slowest.2,
        slowest.1.format("%H:%M"),
    );
    anyhow::ensure!(
        counts.get("webhook/sent") == Some(&(rows as i64)) && outbox_total(&counts) == rows,
        "every row should be sent: {counts:?}"
    );
    anyhow::ensure!(
        items == rows && requests >= members as u64,
        "{requests} webhooks listing {items} items, want {members} digests of {DIGEST_ITEMS}"
    );
    // Every member got their three items; more requests than members means some got them in
    // more than one message (a member's rows split between two claims).
    let split = match requests - members as u64 {
        0 => String::new(),
        k => format!("; WARNING: {k} more webhooks than members — some digests were split"),
    };
    println!(
        "deliver/digests RESULT phase 2 (a day of digests): {requests} webhooks listing \
         {items} items ({rows} rows folded) sent over {steps} clock steps of {STEP_MINUTES} min \
         through D+1 00:{STEP_MINUTES:02} in {:.3} s = {:.0} digests/s, {:.0} rows/s; Herald \
         peak RSS {peak2:.1} MiB (largest parts: anonymous {:.1} MiB, file-backed {:.1} MiB){split}",
        phase2.as_secs_f64(),
        requests as f64 / phase2.as_secs_f64(),
        rows as f64 / phase2.as_secs_f64(),
        memory.anon,
        memory.file
    );
    println!(
        "  (the HTTP endpoint is another process, not counted; its own peak RSS was {:.1} MiB)",
        common::peers::peak_rss_of(endpoint.pid())
    );
    bench.app.stop().await;
    Ok(())
}
