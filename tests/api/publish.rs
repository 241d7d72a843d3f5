use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;
use crate::on_both_backends;
use herald::sandbox::{event, tid};

on_both_backends! {
    async fn a_publication_reaches_every_subscriber_as_their_routes_say(backend) {
        let app = spawn_app(backend).await;
        let community = app.identity("community");
        let (alice, bob, carol, dave) =
            (app.identity("alice"), app.identity("bob"), app.identity("carol"), app.identity("dave"));
        app.community(&community, json!({})).await;
        // alice: opportunities to inbox + email; bob: no routes (inbox by default);
        // carol: muted; dave: explicitly nothing for opportunities.
        app.subscribe(&alice, &community, json!({"routes": [{"pipe": "opportunity", "channels": ["inbox", "email"]}]})).await;
        app.subscribe(&bob, &community, json!({})).await;
        app.subscribe(&carol, &community, json!({"muted": true})).await;
        app.subscribe(&dave, &community, json!({"routes": [{"pipe": "opportunity", "channels": []}]})).await;
        // frank asks for email too but has no verified address: inbox only (DESIGN §3 step 4).
        let frank = app.identity("frank");
        app.subscribe(&frank, &community, json!({"routes": [{"pipe": "opportunity", "channels": ["inbox", "email"]}]})).await;
        app.verified_email(&alice, "alice@example.org").await;

        let (status, body) = app.publish(&community, &community, "opportunity", "cleanup").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["recipients"], 3);
        assert_eq!(app.inbox(&frank).await, vec!["cleanup"]);
        assert_eq!(body["duplicate"], false);

        assert_eq!(app.inbox(&alice).await, vec!["cleanup"]);
        assert_eq!(app.inbox(&bob).await, vec!["cleanup"]);
        assert!(app.inbox(&carol).await.is_empty());
        assert!(app.inbox(&dave).await.is_empty());
        // The email delivery waits in the outbox for the dispatcher; nothing is dropped.
        let outbox = app.store().outbox_for(body["id"].as_str().unwrap()).await.unwrap();
        assert_eq!(outbox, vec![(alice.did.clone(), "email".to_string(), "pending".to_string())]);
    }

    async fn default_routes_apply_where_a_subscription_names_no_route(backend) {
        let app = spawn_app(backend).await;
        let community = app.identity("community");
        let erin = app.identity("erin");
        app.community(&community, json!({})).await;
        app.subscribe(&erin, &community, json!({"routes": [{"pipe": "digest", "channels": ["inbox"]}]})).await;
        app.ingest([event::create(&erin.did, PREFERENCES, "self", &tid(), json!({
            "defaultRoutes": [{"pipe": "opportunity", "channels": ["email"]}],
            "updatedAt": "2026-11-21T10:00:00.000Z"}))]).await;
        app.verified_email(&erin, "erin@example.org").await;
        let (_, body) = app.publish(&community, &community, "opportunity", "o1").await;
        assert_eq!(body["recipients"], 1);
        assert!(app.inbox(&erin).await.is_empty(), "email only, not inbox");
        let outbox = app.store().outbox_for(body["id"].as_str().unwrap()).await.unwrap();
        assert_eq!(outbox[0].1, "email");
        // pausedAll silences everything.
        app.ingest([event::update(&erin.did, PREFERENCES, "self", &tid(), json!({
            "pausedAll": true, "updatedAt": "2026-11-21T11:00:00.000Z"}))]).await;
        let (_, body) = app.publish(&community, &community, "digest", "d1").await;
        assert_eq!(body["recipients"], 0);
    }

    async fn publishing_the_same_item_twice_is_a_no_op(backend) {
        let app = spawn_app(backend).await;
        let community = app.identity("community");
        let alice = app.identity("alice");
        app.community(&community, json!({})).await;
        app.subscribe(&alice, &community, json!({})).await;
        let (_, first) = app.publish(&community, &community, "digest", "weekly-47").await;
        let (status, second) = app.publish(&community, &community, "digest", "weekly-47").await;
        assert_eq!(status, StatusCode::OK, "{second}");
        assert_eq!(second["duplicate"], true);
        assert_eq!(second["id"], first["id"]);
        assert_eq!(second["recipients"], 1);
        assert_eq!(app.inbox(&alice).await, vec!["weekly-47"]);
    }

    async fn a_private_community_reaches_only_admitted_members(backend) {
        let app = spawn_app(backend).await;
        let community = app.identity("community");
        let (admin, member, stranger) = (app.identity("admin"), app.identity("member"), app.identity("stranger"));
        app.community(&community, json!({"visibility": "private", "admins": [admin.did]})).await;
        for who in [&admin, &member, &stranger] {
            app.subscribe(who, &community, json!({})).await;
        }
        app.store().admit_member(&community.did, &member.did, "member").await.unwrap();
        let (_, body) = app.publish(&community, &community, "digest", "secret-plans").await;
        assert_eq!(body["recipients"], 2);
        assert_eq!(app.inbox(&admin).await, vec!["secret-plans"]);
        assert_eq!(app.inbox(&member).await, vec!["secret-plans"]);
        assert!(app.inbox(&stranger).await.is_empty());
    }

    async fn a_listed_publisher_may_publish_and_others_may_not(backend) {
        let app = spawn_app(backend).await;
        let community = app.identity("community");
        let (bot, intruder) = (app.identity("polls-bot"), app.identity("intruder"));
        app.community(&community, json!({"publishers": [bot.did]})).await;
        let (status, _) = app.publish(&bot, &community, "digest", "poll-1").await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = app.publish(&intruder, &community, "digest", "spam").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"], "NotPublisher");
        assert!(body["message"].is_string());
    }

    async fn bad_publish_input_is_refused_with_a_reason(backend) {
        let app = spawn_app(backend).await;
        let community = app.identity("community");
        let stranger = app.identity("stranger");
        app.community(&community, json!({})).await;
        let nsid = "community.herald.publish";
        let cases = [
            json!({"community": community.did, "pipe": "digest"}),
            json!({"community": "not-a-did", "pipe": "digest", "item": {"id": "x", "title": "t"}}),
            json!({"community": community.did, "pipe": "digest", "item": {"id": "", "title": "t"}}),
            json!({"community": community.did, "pipe": "digest", "item": {"id": "x", "title": "t", "url": "javascript:alert(1)"}}),
            json!({"community": community.did, "pipe": "digest", "item": {"id": "x", "title": "t".repeat(301)}}),
        ];
        for case in cases {
            let (status, body) = app.call(Some(&community), nsid, Some(case.clone()), &[]).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{case} → {body}");
            assert_eq!(body["error"], "InvalidRequest", "{body}");
        }
        let (status, body) = app.publish(&community, &community, "no-such-pipe", "x").await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("UnknownPipe")));
        let (status, body) = app.publish(&stranger, &stranger, "digest", "x").await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("UnknownCommunity")));
    }

    async fn get_subscribers_lists_dids_and_channels_page_by_page(backend) {
        let app = spawn_app(backend).await;
        let community = app.identity("community");
        app.community(&community, json!({})).await;
        let mut members = Vec::new();
        for i in 0..5 {
            let m = app.identity(&format!("m{i}"));
            app.subscribe(&m, &community, json!({"routes": [{"pipe": "digest", "channels": ["inbox", "email"]}]})).await;
            members.push(m);
        }
        // A second subscription of one member must not split them in two.
        app.subscribe(&members[0], &community, json!({"routes": [{"pipe": "digest", "channels": ["sms"]}]})).await;
        let nsid = "community.herald.getSubscribers";
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("community", community.did.as_str()), ("pipe", "digest"), ("limit", "2")];
            if let Some(c) = &cursor { query.push(("cursor", c.as_str())); }
            let (status, body) = app.call(Some(&community), nsid, None, &query).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            for s in body["subscribers"].as_array().unwrap() {
                assert!(s.as_object().unwrap().keys().all(|k| k == "did" || k == "channels"));
                seen.push((s["did"].as_str().unwrap().to_string(), s["channels"].clone()));
            }
            match body["cursor"].as_str() { Some(c) => cursor = Some(c.into()), None => break }
        }
        assert_eq!(seen.len(), 5);
        let first = seen.iter().find(|(d, _)| *d == members[0].did).unwrap();
        assert_eq!(first.1, json!(["inbox", "email", "sms"]));
        let (status, _) = app.call(Some(&members[1]), nsid, None, &[("community", community.did.as_str())]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}
