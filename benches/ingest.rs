//! Ingest benchmark: events/s indexed from a local Jetstream replaying 200,000 mixed commit
//! events into SQLite (or the database in HERALD_BENCH_DATABASE_URL), and Herald's peak RSS.
//!
//! The Jetstream runs in a child process so the memory figure is Herald's own.
//! Run: `cargo bench --bench ingest` (HERALD_BENCH_EVENTS to change the count).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use herald::ingest::JETSTREAM_SOURCE;
use herald::sandbox::{Jetstream, event, plc_did, tid};
use herald::startup::{Application, Roles};
use herald::storage::Store;
use serde_json::json;

const SUBSCRIPTION: &str = "community.herald.subscription";
const PREFERENCES: &str = "community.herald.preferences";
const COMMUNITY: &str = "community.herald.community";

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    if std::env::args().any(|a| a == "--serve-jetstream") {
        return runtime.block_on(serve_jetstream());
    }
    runtime.block_on(run())
}

fn event_count() -> usize {
    std::env::var("HERALD_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

/// Child process: fill a Jetstream with the events, print its URL and the last time, serve.
async fn serve_jetstream() -> anyhow::Result<()> {
    let jetstream = Jetstream::start().await?;
    let n = event_count();
    let members = (n / 10).max(1);
    let communities: Vec<String> = (0..20)
        .map(|i| plc_did(&format!("community-{i}")))
        .collect();
    let mut last = 0;
    for community in &communities {
        last = jetstream.push(event::create(
            community,
            COMMUNITY,
            "self",
            &tid(),
            json!({"name": "Bench", "createdAt": "2026-11-21T10:00:00Z",
                   "pipes": [{"id": "digest"}, {"id": "opportunity"}]}),
        ));
    }
    let mut rkeys: Vec<Option<String>> = vec![None; members];
    for i in communities.len()..n {
        let m = i % members;
        let did = plc_did(&format!("member-{m}"));
        let community = &communities[i % communities.len()];
        let subscription = json!({"subject": community, "createdAt": "2026-11-21T10:00:00Z",
            "routes": [{"pipe": "digest", "channels": ["inbox", "email"]},
                       {"pipe": "opportunity", "channels": ["telegram"]}]});
        let e = match (i % 20, &rkeys[m]) {
            // 10%: preferences
            (0 | 1, _) => event::create(
                &did,
                PREFERENCES,
                "self",
                &tid(),
                json!({"timezone": "Europe/Berlin", "digestHour": 8, "updatedAt": "2026-11-21T10:00:00Z",
                       "defaultRoutes": [{"pipe": "digest", "channels": ["inbox"]}]}),
            ),
            // 10%: deletes of an earlier subscription
            (2 | 3, Some(rkey)) => {
                let e = event::delete(&did, SUBSCRIPTION, rkey, &tid());
                rkeys[m] = None;
                e
            }
            // 15%: updates
            (4..=6, Some(rkey)) => event::update(&did, SUBSCRIPTION, rkey, &tid(), subscription),
            // 5%: account and identity events
            (7, _) => event::account(&did, true, None, i as i64),
            _ => {
                let rkey = tid();
                rkeys[m] = Some(rkey.clone());
                event::create(&did, SUBSCRIPTION, &rkey, &tid(), subscription)
            }
        };
        last = jetstream.push(e);
    }
    println!("{} {}", jetstream.url(), last);
    std::io::stdout().flush()?;
    // Serve until the parent closes our stdin.
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await;
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    if let Ok(filter) = std::env::var("RUST_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let n = event_count();
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--serve-jetstream")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("child stdout")).read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let url = parts.next().expect("url").to_string();
    let last: i64 = parts.next().expect("last").parse()?;

    let dir = tempfile::tempdir()?;
    let database_url = std::env::var("HERALD_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
    // Herald starts from the beginning of the log: cursor 0 asks for everything.
    let store = Store::connect(&database_url).await?;
    store.apply_batch(&[], Some((JETSTREAM_SOURCE, 0))).await?;
    store.close().await;

    let settings = common::settings(&[
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
        ("HERALD_JETSTREAM_URL", url),
    ]);
    common::reset_peak_rss();
    let start = Instant::now();
    let app = Application::build(
        settings,
        Roles {
            api: false,
            ingest: true,
            deliver: false,
        },
    )
    .await?;
    loop {
        if app.store().cursor(JETSTREAM_SOURCE).await?.unwrap_or(0) >= last {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    let peak = common::peak_rss_mib();
    let anon = common::rss_anon_mib();
    app.stop().await;
    drop(child.stdin.take());
    let _ = child.wait();

    println!(
        "ingest: {n} events in {:.2} s = {:.0} events/s; Herald peak RSS {:.1} MiB \
         (includes file pages of the memory-mapped SQLite database); anonymous RSS at the end {:.1} MiB",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        peak,
        anon
    );
    Ok(())
}
