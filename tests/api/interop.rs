//! Herald against the reference implementation: accounts, records and tokens come from a real
//! PDS (`@atproto/pds`, see `atproto.rs`), identities from its PLC directory.
//!
//! Without a firehose: tokens from the PDS's `getServiceAuth` are accepted, and the PDS proxies
//! a member's calls to Herald (`atproto-proxy`). Following the PDS's own firehose
//! (`HERALD_RELAY_URL`): records are indexed and un-indexed, a publication reaches a member's
//! inbox, a deactivated account stops receiving, and `herald backfill` indexes what a PDS held
//! before Herald started.
//!
//! The network is shared by the whole binary: tests look only at their own accounts, never at
//! totals (another test's records may reach this test's Herald through the same firehose).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::atproto::{self, Account, AtprotoNetwork, Pds};
use crate::helpers::*;
use crate::on_both_backends;

const UNREAD: &str = "community.herald.getUnreadCount";
const LIST: &str = "community.herald.listNotifications";
const SEEN: &str = "community.herald.updateSeen";
const PUBLISH: &str = "community.herald.publish";
const GET_PREFERENCES: &str = "community.herald.getPreferences";

/// Every wait in these tests ends well within this.
const WITHIN: Duration = Duration::from_secs(30);
const CREATED_AT: &str = "2026-11-21T10:00:00.000Z";

/// Herald, resolving identities through the network's PLC directory.
async fn herald_with_plc(
    backend: herald::settings::Backend,
    network: &AtprotoNetwork,
    more: &[(&'static str, &str)],
) -> TestApp {
    let mut settings = vec![("HERALD_PLC_URL", network.plc_url.as_str())];
    settings.extend_from_slice(more);
    spawn_app_configured(backend, With::default(), &settings).await
}

/// Herald following the PDS's firehose instead of Jetstream, once it is known to be following:
/// a throwaway account writes a record (again every second) until Herald has indexed one, so
/// what a test writes next is not sent before Herald subscribed.
async fn herald_following(
    backend: herald::settings::Backend,
    network: &AtprotoNetwork,
    pds: &Pds,
) -> TestApp {
    let relay = network.relay_ws_url();
    let app = herald_with_plc(backend, network, &[("HERALD_RELAY_URL", relay.as_str())]).await;
    let sentinel = pds.create_account("sentinel").await;
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let (uri, _) = pds
            .create_record(
                &sentinel,
                SUBSCRIPTION,
                None,
                json!({"subject": sentinel.did, "createdAt": CREATED_AT}),
            )
            .await;
        let rkey = rkey_of(&uri);
        for _ in 0..20 {
            if indexed_body(&app, &sentinel.did, SUBSCRIPTION, &rkey)
                .await
                .is_some()
            {
                return app;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Herald did not index {}'s records from the PDS's firehose ({relay}) within \
             {WITHIN:?} (the network's log: {})",
            sentinel.handle,
            network.log.display()
        );
    }
}

fn rkey_of(uri: &str) -> String {
    uri.rsplit('/').next().expect("at:// URI").to_string()
}

async fn indexed_body(app: &TestApp, did: &str, collection: &str, rkey: &str) -> Option<String> {
    app.store()
        .record_body(did, collection, rkey)
        .await
        .expect("record_body")
}

/// Wait until Herald's index holds the record and `accept` likes its JSON; returns the JSON.
async fn indexed(
    app: &TestApp,
    did: &str,
    collection: &str,
    rkey: &str,
    accept: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + WITHIN;
    let mut last = None;
    loop {
        if let Some(text) = indexed_body(app, did, collection, rkey).await {
            let value: Value = serde_json::from_str(&text).expect("indexed JSON");
            if accept(&value) {
                return value;
            }
            last = Some(value);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{did}/{collection}/{rkey} not indexed as expected within {WITHIN:?}; last seen: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until Herald's index no longer holds the record.
async fn unindexed(app: &TestApp, did: &str, collection: &str, rkey: &str) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while indexed_body(app, did, collection, rkey).await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{did}/{collection}/{rkey} still indexed after {WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Call Herald as `who`, with a token the PDS signed (`getServiceAuth`, aud = Herald's DID).
async fn call_as(
    app: &TestApp,
    pds: &Pds,
    who: &Account,
    nsid: &str,
    body: Option<Value>,
    query: &[(&str, &str)],
) -> (StatusCode, Value) {
    let token = pds.get_service_auth(who, &app.service_did, nsid).await;
    app.call_with_token(Some(&token), nsid, body, query).await
}

async fn inbox_as(app: &TestApp, pds: &Pds, who: &Account) -> Vec<String> {
    let (status, body) = call_as(app, pds, who, LIST, None, &[("limit", "100")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .map(|n| n["itemId"].as_str().expect("itemId").to_string())
        .collect()
}

async fn publish_as(app: &TestApp, pds: &Pds, community: &Account, item: &str) -> Value {
    let (status, body) = call_as(
        app,
        pds,
        community,
        PUBLISH,
        Some(json!({"community": community.did, "pipe": "digest",
                    "item": {"id": item, "title": format!("Item {item}")}})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn community_record() -> Value {
    json!({"name": "Riverside", "createdAt": CREATED_AT,
           "pipes": [{"id": "digest"}, {"id": "opportunity"}]})
}

/// A community account with its `community.herald.community` record on the PDS.
async fn community_on_pds(pds: &Pds) -> Account {
    let community = pds.create_account("community").await;
    pds.put_record(&community, COMMUNITY, "self", community_record())
        .await;
    community
}

/// `member` subscribes to `community` on the PDS; returns the record key.
async fn subscribe_on_pds(pds: &Pds, member: &Account, community: &Account) -> String {
    let (uri, _) = pds
        .create_record(
            member,
            SUBSCRIPTION,
            None,
            json!({"subject": community.did, "createdAt": CREATED_AT}),
        )
        .await;
    rkey_of(&uri)
}

on_both_backends! {
    // ---- Without a firehose: identity and tokens from the real PDS and PLC. ----

    async fn a_token_from_the_pds_get_service_auth_is_accepted(backend) {
        let network = atproto::network().await;
        let pds = network.pds();
        let app = herald_with_plc(backend, network, &[]).await;
        let alice = pds.create_account("alice").await;

        let (status, body) = call_as(&app, &pds, &alice, UNREAD, None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["count"], 0);
        let (status, body) = call_as(&app, &pds, &alice, LIST, None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["notifications"], json!([]));

        // The same real token is refused for another method, and for another audience.
        let token = pds.get_service_auth(&alice, &app.service_did, UNREAD).await;
        let (status, body) = app.call_with_token(Some(&token), LIST, None, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let elsewhere = pds.get_service_auth(&alice, "did:web:elsewhere.test", UNREAD).await;
        let (status, body) = app.call_with_token(Some(&elsewhere), UNREAD, None, &[]).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("BadJwtAudience")), "{body}");
    }

    async fn the_pds_proxies_a_members_calls_to_herald(backend) {
        let network = atproto::network().await;
        let pds = network.pds();
        // The PDS finds Herald through its did:web document, served by Herald itself; did:web
        // is resolved over plain http for the host `localhost` only.
        let port = atproto::free_port();
        let did = format!("did:web:localhost%3A{port}");
        let listen = format!("127.0.0.1:{port}");
        let public = format!("http://localhost:{port}");
        let mut app = herald_with_plc(backend, network, &[
            ("HERALD_LISTEN", listen.as_str()),
            ("HERALD_SERVICE_DID", did.as_str()),
            ("HERALD_PUBLIC_URL", public.as_str()),
        ]).await;
        app.service_did = did.clone();
        let proxy = format!("{did}#herald_appview");
        let alice = pds.create_account("alice").await;

        let (status, body) = pds.call_proxied(&alice, &proxy, UNREAD, None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["count"], 0);

        // A procedure: the body goes through, and so does its effect.
        let seen_at = "2026-11-21T12:00:00.000Z";
        let (status, body) = pds.call_proxied(&alice, &proxy, SEEN, Some(json!({"seenAt": seen_at})), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = pds.call_proxied(&alice, &proxy, LIST, None, &[("limit", "5")]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["notifications"], json!([]));
        assert!(body["seenAt"].as_str().is_some_and(|s| s.starts_with("2026-11-21T12:00:00")), "{body}");

        // Herald's XRPC errors come back through the PDS with their name.
        let (status, body) = pds.call_proxied(&alice, &proxy, LIST, None, &[("limit", "0")]).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("InvalidRequest")), "{body}");
    }

    // ---- Following the PDS's firehose (HERALD_RELAY_URL): needs the relay consumer. ----

    async fn records_written_on_the_pds_are_indexed_and_deletions_unindexed(backend) {
        let network = atproto::network().await;
        let pds = network.pds();
        let app = herald_following(backend, network, &pds).await;
        let community = community_on_pds(&pds).await;
        let alice = pds.create_account("alice").await;
        let rkey = subscribe_on_pds(&pds, &alice, &community).await;
        pds.put_record(&alice, PREFERENCES, "self",
            json!({"digestHour": 7, "timezone": "Europe/Paris", "updatedAt": CREATED_AT})).await;

        let indexed_community = indexed(&app, &community.did, COMMUNITY, "self", |_| true).await;
        assert_eq!(indexed_community["name"], "Riverside");
        let subscription = indexed(&app, &alice.did, SUBSCRIPTION, &rkey, |_| true).await;
        assert_eq!(subscription["subject"], community.did.as_str());
        indexed(&app, &alice.did, PREFERENCES, "self", |p| p["digestHour"] == 7).await;

        // What the member sees of it, asked with a PDS-issued token.
        let (status, prefs) = call_as(&app, &pds, &alice, GET_PREFERENCES, None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{prefs}");
        assert_eq!(prefs["preferences"]["timezone"], "Europe/Paris", "{prefs}");
        assert_eq!(prefs["subscriptions"][0]["uri"],
            format!("at://{}/{SUBSCRIPTION}/{rkey}", alice.did).as_str(), "{prefs}");
        assert_eq!(publish_as(&app, &pds, &community, "before-mute").await["recipients"], 1);

        // Updates: the newer version replaces the indexed one.
        pds.put_record(&alice, SUBSCRIPTION, &rkey,
            json!({"subject": community.did, "muted": true, "createdAt": CREATED_AT})).await;
        indexed(&app, &alice.did, SUBSCRIPTION, &rkey, |s| s["muted"] == true).await;
        assert_eq!(publish_as(&app, &pds, &community, "while-muted").await["recipients"], 0);
        pds.put_record(&alice, PREFERENCES, "self", json!({"digestHour": 21, "updatedAt": CREATED_AT})).await;
        indexed(&app, &alice.did, PREFERENCES, "self", |p| p["digestHour"] == 21).await;

        // Deletions.
        pds.delete_record(&alice, SUBSCRIPTION, &rkey).await;
        pds.delete_record(&alice, PREFERENCES, "self").await;
        unindexed(&app, &alice.did, SUBSCRIPTION, &rkey).await;
        unindexed(&app, &alice.did, PREFERENCES, "self").await;
        pds.delete_record(&community, COMMUNITY, "self").await;
        unindexed(&app, &community.did, COMMUNITY, "self").await;
        let (status, body) = call_as(&app, &pds, &community, PUBLISH,
            Some(json!({"community": community.did, "pipe": "digest", "item": {"id": "gone", "title": "Gone"}})), &[]).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("UnknownCommunity")), "{body}");

        // Every commit of the real PDS verified against its repo's key: none was refused.
        let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
        let refused: Vec<&str> = metrics.lines()
            .filter(|l| l.starts_with("herald_ingest_rejected_total{") && !l.ends_with(" 0"))
            .collect();
        assert!(refused.is_empty(), "{refused:?}");
    }

    async fn a_publication_reaches_the_inbox_of_a_member_subscribed_on_the_pds(backend) {
        let network = atproto::network().await;
        let pds = network.pds();
        let app = herald_following(backend, network, &pds).await;
        let community = community_on_pds(&pds).await;
        let (alice, bob) = (pds.create_account("alice").await, pds.create_account("bob").await);
        let rkey = subscribe_on_pds(&pds, &alice, &community).await;
        indexed(&app, &community.did, COMMUNITY, "self", |_| true).await;
        indexed(&app, &alice.did, SUBSCRIPTION, &rkey, |_| true).await;

        let published = publish_as(&app, &pds, &community, "first").await;
        assert_eq!(published["recipients"], 1, "{published}");
        assert_eq!(inbox_as(&app, &pds, &alice).await, vec!["first"]);
        assert!(inbox_as(&app, &pds, &bob).await.is_empty());
        let (status, body) = call_as(&app, &pds, &alice, UNREAD, None, &[]).await;
        assert_eq!((status, body["count"].as_i64()), (StatusCode::OK, Some(1)), "{body}");
    }

    // (c) Deactivation through the PDS: an `#account` event (active: false, status:
    // deactivated) on the firehose. Written before the relay consumer; adapt as needed.
    async fn an_account_deactivated_on_the_pds_stops_receiving(backend) {
        let network = atproto::network().await;
        let pds = network.pds();
        let app = herald_following(backend, network, &pds).await;
        let community = community_on_pds(&pds).await;
        let (alice, bob) = (pds.create_account("alice").await, pds.create_account("bob").await);
        let alice_rkey = subscribe_on_pds(&pds, &alice, &community).await;
        let bob_rkey = subscribe_on_pds(&pds, &bob, &community).await;
        indexed(&app, &community.did, COMMUNITY, "self", |_| true).await;
        indexed(&app, &alice.did, SUBSCRIPTION, &alice_rkey, |_| true).await;
        indexed(&app, &bob.did, SUBSCRIPTION, &bob_rkey, |_| true).await;
        assert_eq!(publish_as(&app, &pds, &community, "before").await["recipients"], 2);

        pds.deactivate(&bob).await;
        // The firehose is in order: once a record written after the deactivation is indexed,
        // the `#account` event before it has been applied.
        let marker = subscribe_on_pds(&pds, &alice, &alice).await;
        indexed(&app, &alice.did, SUBSCRIPTION, &marker, |_| true).await;

        let after = publish_as(&app, &pds, &community, "after").await;
        assert_eq!(after["recipients"], 1, "{after}");
        assert_eq!(inbox_as(&app, &pds, &alice).await, vec!["after", "before"]);
        // Bob's inbox, read straight from the store: a deactivated account cannot get a token.
        let bob_items: Vec<String> = app.store().list_notifications(&bob.did, None, 100).await.unwrap()
            .into_iter().map(|n| n.item_id).collect();
        assert_eq!(bob_items, vec!["before"]);
    }

    // (d) Backfill: `herald backfill` (the real binary, HERALD_* from the test's settings plus
    // HERALD_RELAY_URL) indexes what the PDS held before Herald started, and exits 0. Herald
    // itself runs on the Jetstream stand-in here, so only the backfill can bring the records.
    // Written before the command exists; adapt as needed.
    async fn backfill_indexes_what_the_pds_held_before_herald_started(backend) {
        let network = atproto::network().await;
        let pds = network.pds();
        let community = community_on_pds(&pds).await;
        let (alice, bob) = (pds.create_account("alice").await, pds.create_account("bob").await);
        let alice_rkey = subscribe_on_pds(&pds, &alice, &community).await;
        pds.put_record(&alice, PREFERENCES, "self", json!({"digestHour": 6, "updatedAt": CREATED_AT})).await;
        pds.put_record(&alice, PREFERENCES, "self", json!({"digestHour": 8, "updatedAt": CREATED_AT})).await;
        let bob_rkey = subscribe_on_pds(&pds, &bob, &community).await;
        let bob_gone = subscribe_on_pds(&pds, &bob, &alice).await;
        pds.delete_record(&bob, SUBSCRIPTION, &bob_gone).await;

        let app = herald_with_plc(backend, network, &[]).await;
        assert!(indexed_body(&app, &alice.did, SUBSCRIPTION, &alice_rkey).await.is_none());

        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("HERALD_")) {
            command.env_remove(key);
        }
        command
            .arg("backfill")
            .envs(app.settings_values())
            .env("HERALD_RELAY_URL", network.relay_ws_url())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(WITHIN, command.output())
            .await
            .unwrap_or_else(|_| panic!("herald backfill did not finish within {WITHIN:?}"))
            .expect("run herald backfill");
        assert!(out.status.success(), "herald backfill: {}\n{}{}", out.status,
            String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

        // Each repo as it is now: the latest version of a record, never a deleted one.
        let indexed_community = indexed_body(&app, &community.did, COMMUNITY, "self").await;
        assert!(indexed_community.is_some_and(|c| c.contains("Riverside")));
        assert!(indexed_body(&app, &alice.did, SUBSCRIPTION, &alice_rkey).await.is_some());
        assert!(indexed_body(&app, &bob.did, SUBSCRIPTION, &bob_rkey).await.is_some());
        assert!(indexed_body(&app, &bob.did, SUBSCRIPTION, &bob_gone).await.is_none());
        let prefs: Value = serde_json::from_str(&indexed_body(&app, &alice.did, PREFERENCES, "self").await
            .expect("alice's preferences")).unwrap();
        assert_eq!(prefs["digestHour"], 8);

        let published = publish_as(&app, &pds, &community, "after-backfill").await;
        assert_eq!(published["recipients"], 2, "{published}");
        assert_eq!(inbox_as(&app, &pds, &alice).await, vec!["after-backfill"]);
    }
}
