//! Delivery benchmarks: how fast the dispatcher drains the outbox, and in how much memory.
//!
//! - `email` — N members (HERALD_BENCH_N, default 10,000) each with a verified email contact
//!   and a route for the pipe on `email`; one publish; time from the publish's answer until
//!   all N outbox rows are settled as sent through SMTP to postfix's `smtp-sink` (the sink at
//!   HERALD_BENCH_SMTP=ip:port, else one started here). `scripts/bench/email-vs-postfix` runs
//!   postfix's own `smtp-source` against the same sink first, for comparison.
//! - `http` — N webhook contacts (one per member) on a local endpoint in a child process
//!   answering 204; deliveries/s and Herald's peak RSS.
//! - `mixed` — HERALD_BENCH_MEMBERS (default 100,000) members with mixed preferences (the
//!   `Kind` table below: 50 % inbox only, 20 % inbox + email, 15 % inbox + webhook, 10 % inbox
//!   and private feed, 5 % muted), one publication, time from the publish call until every
//!   delivery is settled, and Herald's peak RSS from the publish on (the sink and the HTTP
//!   endpoint are other processes; the counter is reset after seeding).
//!
//! Herald runs in this process (api + deliver roles, SQLite in a temporary directory, or
//! HERALD_BENCH_DATABASE_URL); the publish goes through the XRPC endpoint, so it wakes the
//! dispatcher as in production. HERALD_BENCH_CONCURRENCY and HERALD_BENCH_BATCH override the
//! dispatcher's concurrency (64) and claim batch (256).
//!
//! Run: `cargo bench --bench deliver -- email|http|mixed` (several names, or none for all;
//! `email` and `mixed` need postfix's smtp-sink — see scripts/bench/README.md).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::peers::{HttpEndpoint, NO_SMTP_SINK, SmtpPeer, SmtpSink};
use futures_util::StreamExt;
use herald::model::{Channel, CommunityRecord, PipeDecl, Record, Route, SubscriptionRecord};
use herald::sandbox::{Identity, Plc, plc_did, tid};
use herald::startup::{Application, Roles};
use herald::storage::IndexOp;
use herald::vault::AddContact;
use serde_json::json;

const MODES: &[&str] = &["email", "http", "mixed"];
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
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        for mode in modes {
            let needs_sink = matches!(mode, "email" | "mixed");
            if needs_sink && std::env::var("HERALD_BENCH_SMTP").is_err() && !SmtpSink::available() {
                if explicit {
                    anyhow::bail!("the {mode} benchmark needs an SMTP sink: {NO_SMTP_SINK}");
                }
                println!("deliver/{mode}: skipped — {NO_SMTP_SINK}");
                continue;
            }
            match mode {
                "email" => email().await?,
                "http" => http().await?,
                "mixed" => mixed().await?,
                _ => unreachable!(),
            }
        }
        Ok(())
    })
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
    // Kept alive for the app's lifetime.
    _plc: Plc,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn start(smtp: Option<std::net::SocketAddr>) -> anyhow::Result<Self> {
        let plc = Plc::start().await?;
        let dir = tempfile::tempdir()?;
        let database_url = std::env::var("HERALD_BENCH_DATABASE_URL")
            .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
        let mut pairs: Vec<(&str, String)> = vec![
            ("HERALD_DATABASE_URL", database_url),
            (
                "HERALD_VAULT_URL",
                format!("sqlite://{}", dir.path().join("vault.db").display()),
            ),
            (
                "HERALD_VAULT_KEY_FILE",
                dir.path().join("vault.key").display().to_string(),
            ),
            ("HERALD_LISTEN", "127.0.0.1:0".into()),
            ("HERALD_PLC_URL", plc.url().to_string()),
            ("HERALD_SERVICE_DID", SERVICE_DID.into()),
            ("HERALD_EMAIL_FROM", "Herald <herald@bench.example>".into()),
            ("HERALD_EMAIL_PROVIDERS", "smtp".into()),
            ("HERALD_WEBHOOK_ALLOW_PRIVATE", "true".into()),
        ];
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
        let app = Application::build(
            settings,
            Roles {
                api: true,
                ingest: false,
                deliver: true,
            },
        )
        .await?;
        println!("  dispatcher: concurrency {concurrency}, claim batch {batch}");
        let community = Identity::plc("bench-community");
        plc.register_identity(&community);
        Ok(Self {
            app,
            community,
            _plc: plc,
            _dir: dir,
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

    /// Publish one item through XRPC; returns the publish's answer.
    async fn publish(&self) -> anyhow::Result<serde_json::Value> {
        let nsid = "community.herald.publish";
        let response = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/xrpc/{nsid}", self.app.port()))
            .bearer_auth(self.community.token(SERVICE_DID, nsid))
            .json(&json!({"community": self.community.did, "pipe": PIPE,
                          "item": {"id": "bench", "title": "Benchmark item",
                                   "text": "One publication, fanned out and delivered.",
                                   "url": "https://bench.example/items/1"}}))
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
        let metrics = self.app.metrics();
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        for tick in 0u64.. {
            if tick % 5 == 0 {
                memory.sample();
            }
            let done: u64 = ["email", "webhook", "feed", "sms", "telegram", "webpush"]
                .iter()
                .flat_map(|c| {
                    ["sent", "dead", "cancelled"]
                        .iter()
                        .map(move |o| metrics.delivery_count(c, o))
                })
                .sum();
            if done >= total {
                memory.sample();
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "only {done} of {total} deliveries settled after {SETTLE_TIMEOUT:?}: {:?}",
                    self.outbox().await?
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        unreachable!()
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
             — SQLite's memory-mapped databases)",
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
    let queued = bench.outbox().await?;
    let total = outbox_total(&queued);
    let done = bench.settled(total, &mut memory).await?;
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
        "  Herald RSS before publish {rss_before:.1} MiB; from publish to settled: peak \
         {peak:.1} MiB, largest anonymous {:.1} MiB, largest file-backed {:.1} MiB",
        memory.anon, memory.file
    );
    Ok(Run {
        publish: published - start,
        delivering: done - published,
        total,
        not_sent: not_sent(&counts),
        peak,
        memory,
    })
}

async fn email() -> anyhow::Result<()> {
    let n = env_number("HERALD_BENCH_N", 10_000);
    let sink = SmtpPeer::from_env_or_start()?;
    println!("deliver/email: {n} emails to {}", sink.describe());
    let bench = Bench::start(Some(sink.addr())).await?;
    let kinds = vec![Kind::Email; n];
    let seeding = Instant::now();
    bench.seed_records(&kinds).await?;
    let contacts = bench.seed_contacts(&kinds, None).await?;
    println!(
        "  seeded {n} members and {contacts} verified email contacts in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let run = publish_and_settle(&bench, "email").await?;
    println!(
        "deliver/email RESULT: {} emails sent in {:.3} s = {:.0} emails/s (publish answered → \
         all settled); {}{}",
        run.total,
        run.delivering.as_secs_f64(),
        run.total as f64 / run.delivering.as_secs_f64(),
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
    let kinds: Vec<Kind> = (0..members).map(Kind::mixed).collect();
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
    let bench = Bench::start(Some(sink.addr())).await?;
    let seeding = Instant::now();
    bench.seed_records(&kinds).await?;
    let records = seeding.elapsed();
    let contacts = bench.seed_contacts(&kinds, Some(endpoint.addr)).await?;
    println!(
        "  seeded {members} subscriptions in {:.1} s and {contacts} contacts and feeds in {:.1} s",
        records.as_secs_f64(),
        (seeding.elapsed() - records).as_secs_f64()
    );
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
