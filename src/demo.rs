//! `herald demo`: a self-contained end-to-end run on local data, so a newcomer can watch
//! Herald work offline.
//!
//! Starts a local PLC directory and a local Jetstream (the sandbox), Herald on a fresh SQLite
//! file in a temporary folder, publishes records for a community and three members through
//! the Jetstream, publishes one item as the community over XRPC with a real service-auth
//! token, and prints what each member received. Must not touch the operator's data folder.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::model::{COMMUNITY, SUBSCRIPTION};
use crate::sandbox::{Identity, Jetstream, Plc, event, tid};
use crate::settings::Settings;
use crate::startup::{Application, Roles};

pub async fn run() -> anyhow::Result<()> {
    let plc = Plc::start().await?;
    let jetstream = Jetstream::start().await?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("demo.db");

    let settings = Settings::from_map(
        [
            ("HERALD_DATABASE_URL", format!("sqlite://{}", db.display())),
            (
                "HERALD_VAULT_URL",
                format!("sqlite://{}", dir.path().join("vault.db").display()),
            ),
            (
                "HERALD_VAULT_KEY_FILE",
                dir.path().join("vault.key").display().to_string(),
            ),
            ("HERALD_LISTEN", "127.0.0.1:0".to_string()),
            ("HERALD_JETSTREAM_URL", jetstream.url().to_string()),
            ("HERALD_PLC_URL", plc.url().to_string()),
            ("HERALD_SERVICE_DID", "did:web:herald.demo".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    )?;
    let service_did = settings.service_did.clone();
    let app = Application::build(settings, Roles::ALL).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    // Jetstream streams live events to a subscriber without a cursor: wait for Herald to be
    // subscribed before writing any record.
    for _ in 0..400 {
        if jetstream.streaming() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "Herald is running at {base} (SQLite in {})",
        dir.path().display()
    );

    let community = Identity::plc("demo-community");
    let members = [
        (
            "alice",
            json!([{"pipe": "opportunity", "channels": ["inbox", "email"]}]),
            false,
        ),
        ("bob", json!([]), false),
        ("carol", json!([]), true),
    ];
    plc.register_identity(&community);
    jetstream.push(event::create(
        &community.did,
        COMMUNITY,
        "self",
        &tid(),
        json!({"name": "Riverside Commons", "visibility": "public",
               "pipes": [{"id": "opportunity", "name": "Ways to help"}],
               "createdAt": "2026-11-21T10:00:00.000Z"}),
    ));
    println!("\ncommunity {} publishes pipe `opportunity`", community.did);

    let mut identities = Vec::new();
    for (name, routes, muted) in members {
        let member = Identity::plc(name);
        plc.register_identity(&member);
        jetstream.push(event::create(
            &member.did,
            SUBSCRIPTION,
            &tid(),
            &tid(),
            json!({"subject": community.did, "routes": routes, "muted": muted,
                   "createdAt": "2026-11-21T10:00:00.000Z"}),
        ));
        let how = if muted {
            "subscribed, but muted".to_string()
        } else if routes.as_array().is_some_and(|r| r.is_empty()) {
            "subscribed with no routes (inbox by default)".to_string()
        } else {
            format!("subscribed with routes {routes}")
        };
        println!("  {name:<6} {}  {how}", member.did);
        identities.push((name, member));
    }

    // Wait until ingest has indexed the four records.
    let store = app.store().clone();
    for _ in 0..200 {
        if store.count_records(SUBSCRIPTION).await? == 3
            && store.count_records(COMMUNITY).await? == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let http = reqwest::Client::new();
    let publish = "community.herald.publish";
    let answer: Value = http
        .post(format!("{base}/xrpc/{publish}"))
        .bearer_auth(community.token(&service_did, publish))
        .json(&json!({"community": community.did, "pipe": "opportunity",
                      "item": {"id": "cleanup-2026-11-29", "title": "River clean-up on Saturday",
                               "text": "Bring gloves; we meet at the boathouse at 10:00.",
                               "url": "https://example.org/events/cleanup"}}))
        .send()
        .await?
        .json()
        .await
        .context("publish answer")?;
    println!("\npublish → {answer}");

    let list = "community.herald.listNotifications";
    for (name, member) in &identities {
        let inbox: Value = http
            .get(format!("{base}/xrpc/{list}"))
            .bearer_auth(member.token(&service_did, list))
            .send()
            .await?
            .json()
            .await?;
        let items = inbox["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        println!("\n{name}'s inbox: {} notification(s)", items.len());
        for item in items {
            let field = |k: &str| item[k].as_str().unwrap_or_default().to_string();
            println!(
                "  • [{}] {} — {}",
                field("pipe"),
                field("title"),
                field("url")
            );
        }
    }
    if let Some(id) = answer["id"].as_str() {
        for (did, channel, status) in store.outbox_for(id).await? {
            let name = identities
                .iter()
                .find(|(_, m)| m.did == did)
                .map_or("?", |(n, _)| n);
            println!(
                "\noutbox: {channel} delivery for {name} is {status} (sent once a dispatcher and a verified contact exist)"
            );
        }
    }
    app.stop().await;
    Ok(())
}
