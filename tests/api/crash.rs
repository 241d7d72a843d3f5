//! The crash test (issue 4): 10,000 deliveries in flight, the real `herald serve --roles
//! deliver` process killed with SIGKILL at a random moment and started again. Every delivery
//! must be sent; a delivery sent twice can only be one the killed process had claimed and not
//! yet settled, so duplicates are at most the claim bound (`HERALD_DELIVERY_CONCURRENCY`),
//! and every one of them is a row the outbox shows as claimed again.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herald::model::Channel;
use herald::sandbox::{Identity, event, tid};
use herald::storage::Store;
use rand::Rng;
use serde_json::json;

use crate::helpers::*;
use crate::on_both_backends;

const MEMBERS: usize = 100;
const PUBLICATIONS: usize = 100;
/// Rows one process may hold claimed and unsettled: the bound on duplicates.
const CONCURRENCY: usize = 32;

fn deliverer(app: &TestApp, twilio: &herald::sandbox::twilio::Twilio) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .args(["serve", "--roles", "deliver"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (key, value) in app.settings_values() {
        command.env(key, value);
    }
    command
        .env("HERALD_SMS_API_URL", twilio.url().to_string())
        .env("HERALD_SMS_ACCOUNT_SID", TWILIO_SID)
        .env("HERALD_SMS_AUTH_TOKEN", TWILIO_TOKEN)
        .env("HERALD_SMS_FROM", "+14155550000")
        .env("HERALD_DELIVERY_CONCURRENCY", CONCURRENCY.to_string())
        .env("HERALD_DELIVERY_BATCH", CONCURRENCY.to_string())
        // Short, so the rows the killed process held come back quickly.
        .env("HERALD_DELIVERY_LEASE_SECS", "2")
        .env("HERALD_LOG", "warn");
    command.spawn().expect("start herald serve --roles deliver")
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both_backends! {
    async fn a_deliverer_killed_mid_flight_loses_nothing_and_duplicates_are_bounded(backend) {
        let mut app = spawn_app_with(backend, With { twilio: true, ..With::default() }).await;
        let twilio = app.providers.twilio.clone().unwrap();
        let community = app.identity("community");
        app.community(&community, json!({})).await;
        let mut events = Vec::new();
        for i in 0..MEMBERS {
            let member = Identity::plc(&format!("crash-{i}"));
            app.vault()
                .import_verified_contact(&member.did, Channel::Sms, &format!("+1415555{:04}", 2000 + i))
                .await
                .unwrap();
            events.push(event::create(&member.did, SUBSCRIPTION, &tid(), &tid(), json!({
                "subject": community.did, "createdAt": "2026-11-21T10:00:00.000Z",
                "routes": [{"pipe": "opportunity", "channels": ["sms"]}]})));
        }
        app.ingest(events).await;
        for p in 0..PUBLICATIONS {
            let (status, body) = app.publish(&community, &community, "opportunity", &format!("c{p}")).await;
            assert_eq!(status, reqwest::StatusCode::OK, "{body}");
            assert_eq!(body["recipients"], MEMBERS);
        }
        let total = MEMBERS * PUBLICATIONS;
        let store = app.store().clone();
        let pending = |store: Store| async move {
            store.outbox_counts().await.unwrap().iter()
                .filter(|(_, s, _)| s == "pending" || s == "leased").map(|(_, _, n)| *n).sum::<i64>()
        };
        assert_eq!(pending(store.clone()).await, total as i64);

        // Kill the deliverer somewhere between 10% and 70% of the way.
        let kill_at = rand::thread_rng().gen_range(total / 10..total * 7 / 10);
        let mut first = deliverer(&app, &twilio);
        wait_until("the first deliverer to get going", Duration::from_secs(120), async || {
            twilio.messages().len() >= kill_at
        }).await;
        first.kill().expect("SIGKILL");
        first.wait().unwrap();
        let at_kill = twilio.messages().len();

        let mut second = deliverer(&app, &twilio);
        wait_until("every delivery to settle", Duration::from_secs(180), async || {
            pending(store.clone()).await == 0
        }).await;
        second.kill().unwrap();
        second.wait().unwrap();

        let counts = store.outbox_counts().await.unwrap();
        assert_eq!(counts, vec![("sms".to_string(), "sent".to_string(), total as i64)], "every delivery sent");
        let mut seen: HashMap<(String, String), usize> = HashMap::new();
        for m in twilio.messages() {
            *seen.entry((m.to, m.body)).or_default() += 1;
        }
        assert_eq!(seen.len(), total, "every delivery reached the provider");
        let duplicates: usize = seen.values().map(|n| n - 1).sum();
        assert!(duplicates <= CONCURRENCY, "{duplicates} duplicates, more than the claim bound {CONCURRENCY}");
        let reclaimed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE claims > attempts")
            .fetch_one(&any_pool(&app).await).await.unwrap();
        assert!(reclaimed as usize >= duplicates, "every duplicate is a reclaimed row");
        assert!(reclaimed as usize <= CONCURRENCY, "{reclaimed} rows reclaimed");
        eprintln!("crash test ({backend:?}): killed after {at_kill} of {total} sends; \
                   {reclaimed} rows reclaimed, {duplicates} sent twice");
        app.stop().await;
    }
}

async fn any_pool(app: &TestApp) -> sqlx::AnyPool {
    use secrecy::ExposeSecret;
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(app.settings().database_url.expose_secret())
        .await
        .unwrap()
}
