//! Fan-out benchmark: time from `publish` to every inbox row written for a community of
//! 100,000 subscribers (HERALD_BENCH_MEMBERS), on SQLite (or HERALD_BENCH_DATABASE_URL), with
//! the process's peak RSS during the publish — at two community sizes, to show that memory
//! does not grow with the community (recipients are paged).
//!
//! Run: `cargo bench --bench fanout`.

mod common;

use std::time::Instant;

use herald::model::{CommunityRecord, PipeDecl, Record, Route, SubscriptionRecord};
use herald::sandbox::{Identity, Plc, plc_did, tid};
use herald::startup::{Application, Roles};
use herald::storage::IndexOp;
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let full: usize = std::env::var("HERALD_BENCH_MEMBERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        for members in [full / 10, full] {
            run(members).await?;
        }
        Ok(())
    })
}

async fn run(members: usize) -> anyhow::Result<()> {
    let plc = Plc::start().await?;
    let dir = tempfile::tempdir()?;
    let database_url = std::env::var("HERALD_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
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
        ("HERALD_PLC_URL", plc.url().to_string()),
        ("HERALD_SERVICE_DID", "did:web:herald.bench".into()),
    ]);
    let app = Application::build(
        settings,
        Roles {
            api: true,
            ingest: false,
            deliver: false,
        },
    )
    .await?;
    let community = Identity::plc(&format!("bench-community-{members}"));
    plc.register_identity(&community);

    // Seed through the index API ingest uses, in ingest-sized batches.
    let mut ops = vec![IndexOp::Put {
        did: community.did.clone(),
        collection: "community.herald.community".into(),
        rkey: "self".into(),
        rev: tid(),
        cid: None,
        record: Record::Community(CommunityRecord {
            name: "Bench".into(),
            pipes: vec![PipeDecl {
                id: "opportunity".into(),
                name: None,
                description: None,
            }],
            publishers: vec![],
            admins: vec![],
            visibility: None,
        }),
        body: "{}".into(),
    }];
    for i in 0..members {
        // Mixed preferences: most inbox-only, some with email, some muted.
        let (routes, muted) = match i % 10 {
            0..=5 => (vec![], false),
            6..=8 => (
                vec![Route {
                    pipe: "opportunity".into(),
                    channels: vec!["inbox".into(), "email".into()],
                }],
                false,
            ),
            _ => (vec![], true),
        };
        ops.push(IndexOp::Put {
            did: plc_did(&format!("member-{i}")),
            collection: "community.herald.subscription".into(),
            rkey: tid(),
            rev: tid(),
            cid: None,
            record: Record::Subscription(SubscriptionRecord {
                subject: community.did.clone(),
                path: None,
                recursive: false,
                routes,
                muted,
            }),
            body: "{}".into(),
        });
        if ops.len() == 2_000 {
            app.store().apply_batch(&ops, None).await?;
            ops.clear();
        }
    }
    app.store().apply_batch(&ops, None).await?;

    let nsid = "community.herald.publish";
    let http = reqwest::Client::new();
    let before = common::rss_mib();
    common::reset_peak_rss();
    let start = Instant::now();
    let answer: serde_json::Value = http
        .post(format!("http://127.0.0.1:{}/xrpc/{nsid}", app.port()))
        .bearer_auth(community.token("did:web:herald.bench", nsid))
        .json(&json!({"community": community.did, "pipe": "opportunity",
                      "item": {"id": "bench", "title": "Benchmark item"}}))
        .send()
        .await?
        .json()
        .await?;
    let elapsed = start.elapsed();
    let peak = common::peak_rss_mib();
    println!(
        "fan-out: {members} subscribers → {} recipients in {:.3} s; RSS before {:.1} MiB, peak during publish {:.1} MiB",
        answer["recipients"],
        elapsed.as_secs_f64(),
        before,
        peak
    );
    app.stop().await;
    Ok(())
}
