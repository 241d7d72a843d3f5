use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;
use crate::on_both_backends;
use herald::sandbox::{event, tid};

on_both_backends! {
    async fn creates_updates_and_deletes_land_in_the_index(backend) {
        let app = spawn_app(backend).await;
        let community = app.identity("community");
        let alice = app.identity("alice");
        app.community(&community, json!({})).await;
        let rkey = tid();
        app.ingest([event::create(&alice.did, SUBSCRIPTION, &rkey, &tid(),
            json!({"subject": community.did, "createdAt": "2026-11-21T10:00:00Z"}))]).await;
        assert_eq!(app.publish(&community, &community, "digest", "a").await.1["recipients"], 1);

        app.ingest([event::update(&alice.did, SUBSCRIPTION, &rkey, &tid(),
            json!({"subject": community.did, "muted": true, "createdAt": "2026-11-21T10:00:00Z"}))]).await;
        assert_eq!(app.publish(&community, &community, "digest", "b").await.1["recipients"], 0);

        app.ingest([event::delete(&alice.did, SUBSCRIPTION, &rkey, &tid())]).await;
        assert_eq!(app.store().count_records(SUBSCRIPTION).await.unwrap(), 0);
        assert_eq!(app.publish(&community, &community, "digest", "c").await.1["recipients"], 0);

        // Deleting the community record makes it unknown.
        app.ingest([event::delete(&community.did, COMMUNITY, "self", &tid())]).await;
        let (status, body) = app.publish(&community, &community, "digest", "d").await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("UnknownCommunity")));
    }

    async fn replayed_and_older_events_change_nothing(backend) {
        let app = spawn_app(backend).await;
        let community = app.identity("community");
        let alice = app.identity("alice");
        app.community(&community, json!({})).await;
        let rkey = tid();
        let (old_rev, new_rev) = (tid(), tid());
        let create = event::create(&alice.did, SUBSCRIPTION, &rkey, &old_rev,
            json!({"subject": community.did, "createdAt": "2026-11-21T10:00:00Z"}));
        let mute = event::update(&alice.did, SUBSCRIPTION, &rkey, &new_rev,
            json!({"subject": community.did, "muted": true, "createdAt": "2026-11-21T10:00:00Z"}));
        app.ingest([create.clone(), mute.clone()]).await;
        // Upstream delivers at least once: the same events again, then the older one alone.
        app.ingest([create.clone(), mute, create]).await;
        assert_eq!(app.publish(&community, &community, "digest", "x").await.1["recipients"], 0,
            "the older create must not un-mute");
        let body = app.store().record_body(&alice.did, SUBSCRIPTION, &rkey).await.unwrap().unwrap();
        assert!(body.contains("\"muted\":true"), "{body}");

        // A delete followed by a replay of the create leaves it deleted.
        let gone = tid();
        app.ingest([event::delete(&alice.did, SUBSCRIPTION, &rkey, &gone)]).await;
        app.ingest([event::create(&alice.did, SUBSCRIPTION, &rkey, &old_rev,
            json!({"subject": community.did, "createdAt": "2026-11-21T10:00:00Z"}))]).await;
        assert_eq!(app.store().count_records(SUBSCRIPTION).await.unwrap(), 0);
    }

    async fn after_a_restart_ingest_resumes_from_its_cursor(backend) {
        let mut app = spawn_app(backend).await;
        let community = app.identity("community");
        app.community(&community, json!({})).await;
        let before = app.store().cursor("jetstream").await.unwrap().unwrap();
        app.stop().await;

        // Written while Herald was down.
        let bob = app.identity("bob");
        let missed = app.jetstream.push(event::create(&bob.did, SUBSCRIPTION, &tid(), &tid(),
            json!({"subject": community.did, "createdAt": "2026-11-21T10:00:00Z"})));
        app.restart().await;
        app.wait_for_cursor(missed).await;
        let last = app.jetstream.requests().last().cloned().unwrap();
        assert!(last.contains(&format!("cursor={before}")), "{last}");
        assert!(last.contains("wantedCollections=community.herald.*"), "{last}");
        assert_eq!(app.inbox(&bob).await.len(), 0);
        assert_eq!(app.publish(&community, &community, "digest", "x").await.1["recipients"], 1);
    }

    async fn a_dropped_socket_is_reconnected_from_the_committed_cursor(backend) {
        let app = spawn_app(backend).await;
        let community = app.identity("community");
        app.community(&community, json!({})).await;
        let committed = app.store().cursor("jetstream").await.unwrap().unwrap();
        app.jetstream.disconnect_all();
        let alice = app.identity("alice");
        app.subscribe(&alice, &community, json!({})).await;
        let requests = app.jetstream.requests();
        assert!(requests.len() >= 2, "{requests:?}");
        assert!(requests.iter().skip(1).any(|r| r.contains(&format!("cursor={committed}"))), "{requests:?}");
        assert_eq!(app.publish(&community, &community, "digest", "x").await.1["recipients"], 1);
    }

    async fn malformed_records_and_frames_are_skipped_and_later_ones_land(backend) {
        let app = spawn_app(backend).await;
        let community = app.identity("community");
        let alice = app.identity("alice");
        app.community(&community, json!({})).await;
        app.jetstream.push_raw("this is not json");
        app.jetstream.push_raw(r#"{"did": 5}"#);
        app.jetstream.push_raw("x".repeat(300 * 1024));
        app.jetstream.push(json!({"did": alice.did, "kind": "commit"}));
        app.jetstream.push(event::create(&alice.did, SUBSCRIPTION, &tid(), &tid(),
            json!({"subject": 42, "createdAt": "2026-11-21T10:00:00Z"})));
        app.jetstream.push(event::create(&alice.did, SUBSCRIPTION, &tid(), &tid(),
            json!({"createdAt": "2026-11-21T10:00:00Z"})));
        app.jetstream.push(event::create(&alice.did, PREFERENCES, "self", &tid(),
            json!({"digestHour": 99, "updatedAt": "2026-11-21T10:00:00Z"})));
        app.jetstream.push(event::create(&alice.did, "community.herald.unknownThing", &tid(), &tid(),
            json!({"x": 1})));
        // And then a good one.
        app.subscribe(&alice, &community, json!({})).await;

        assert_eq!(app.store().count_records(SUBSCRIPTION).await.unwrap(), 1);
        assert_eq!(app.store().count_records(PREFERENCES).await.unwrap(), 0);
        let m = app.metrics();
        assert!(m.skipped_count("not_json") >= 1);
        assert!(m.skipped_count("malformed_event") >= 2);
        assert!(m.skipped_count("oversize") >= 1);
        assert_eq!(m.skipped_count("invalid_record"), 3);
        assert_eq!(m.skipped_count("unindexed_collection"), 1);
        let text = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
        assert!(text.contains("herald_ingest_skipped_total{reason=\"invalid_record\"} 3"), "{text}");
        assert_eq!(app.publish(&community, &community, "digest", "x").await.1["recipients"], 1);
    }

    async fn deactivated_taken_down_and_deleted_accounts_receive_nothing(backend) {
        let app = spawn_app(backend).await;
        let community = app.identity("community");
        let (a, b, c) = (app.identity("a"), app.identity("b"), app.identity("c"));
        app.community(&community, json!({})).await;
        for who in [&a, &b, &c] {
            app.subscribe(who, &community, json!({})).await;
        }
        app.ingest([
            event::account(&a.did, false, Some("deactivated"), 10),
            event::account(&b.did, false, Some("takendown"), 11),
            event::account(&c.did, false, Some("deleted"), 12),
        ]).await;
        assert_eq!(app.publish(&community, &community, "digest", "1").await.1["recipients"], 0);
        // A deleted account's records are purged from the index.
        assert_eq!(app.store().count_records(SUBSCRIPTION).await.unwrap(), 2);

        // Reactivation restores delivery; a replayed older status event does not undo it.
        app.ingest([event::account(&a.did, true, None, 20), event::account(&a.did, false, Some("deactivated"), 10)]).await;
        assert_eq!(app.publish(&community, &community, "digest", "2").await.1["recipients"], 1);
        assert_eq!(app.inbox(&a).await, vec!["2"]);
    }

    async fn a_deleted_accounts_contacts_and_feed_leave_the_vault(backend) {
        let app = spawn_app(backend).await;
        let (gone, stays) = (app.identity("gone"), app.identity("stays"));
        for (who, email) in [(&gone, "gone@example.org"), (&stays, "stays@example.org")] {
            app.verified_email(who, email).await;
            let (status, body) = app.call(Some(who), "community.herald.contact.add",
                Some(json!({"channel": "feed"})), &[]).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let contacts = |who: &herald::sandbox::Identity| {
            let (app, did) = (&app, who.did.clone());
            async move { app.vault().list_contacts(&did).await.unwrap().len() }
        };
        assert_eq!((contacts(&gone).await, contacts(&stays).await), (2, 2));

        let now = chrono::Utc::now().timestamp_micros();
        assert_eq!(app.vault().forget_deleted_accounts(10, now).await.unwrap(), 0);
        app.ingest([event::account(&gone.did, false, Some("deleted"), 30)]).await;
        assert_eq!(app.vault().forget_deleted_accounts(10, now).await.unwrap(), 1);

        assert_eq!(contacts(&gone).await, 0, "contacts and feed forgotten");
        assert_eq!(contacts(&stays).await, 2, "nobody else's");
        assert_eq!(app.vault().forget_deleted_accounts(10, now).await.unwrap(), 0, "once");
        // The same account deleted again (after coming back) is forgotten again.
        app.ingest([event::account(&gone.did, true, None, 31)]).await;
        app.verified_email(&gone, "gone@example.org").await;
        app.ingest([event::account(&gone.did, false, Some("deleted"), 32)]).await;
        assert_eq!(app.vault().forget_deleted_accounts(10, now).await.unwrap(), 1);
        assert_eq!(contacts(&gone).await, 0);
    }

    async fn an_identity_event_refreshes_the_cached_key(backend) {
        let app = spawn_app(backend).await;
        let alice = app.identity("alice");
        let nsid = "community.herald.getUnreadCount";
        assert_eq!(app.call(Some(&alice), nsid, None, &[]).await.0, StatusCode::OK);
        let rotated = herald::sandbox::Identity::plc("alice");
        app.plc.register_identity(&rotated);
        app.ingest([event::identity(&alice.did, "alice.test", 5)]).await;
        let (status, body) = app.call(Some(&rotated), nsid, None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}
