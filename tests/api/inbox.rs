use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;
use crate::on_both_backends;

const LIST: &str = "community.herald.listNotifications";
const UNREAD: &str = "community.herald.getUnreadCount";
const SEEN: &str = "community.herald.updateSeen";

on_both_backends! {
    async fn the_inbox_pages_newest_first_and_tracks_what_was_seen(backend) {
        let app = spawn_app(backend).await;
        let community = app.identity("community");
        let alice = app.identity("alice");
        app.community(&community, json!({})).await;
        app.subscribe(&alice, &community, json!({})).await;
        for i in 0..5 {
            let (status, body) = app.publish(&community, &community, "digest", &format!("item-{i}")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let (_, count) = app.call(Some(&alice), UNREAD, None, &[]).await;
        assert_eq!(count["count"], 5);

        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "2")];
            if let Some(c) = &cursor { query.push(("cursor", c.as_str())); }
            let (status, page) = app.call(Some(&alice), LIST, None, &query).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            for n in page["notifications"].as_array().unwrap() {
                assert_eq!(n["community"], community.did.as_str());
                assert_eq!(n["pipe"], "digest");
                assert_eq!(n["isRead"], false);
                assert!(n["indexedAt"].as_str().unwrap().ends_with('Z'));
                ids.push(n["itemId"].as_str().unwrap().to_string());
            }
            match page["cursor"].as_str() { Some(c) => cursor = Some(c.into()), None => break }
        }
        assert_eq!(ids, vec!["item-4", "item-3", "item-2", "item-1", "item-0"]);

        // Mark everything up to the newest as seen.
        let (_, page) = app.call(Some(&alice), LIST, None, &[("limit", "1")]).await;
        let newest = page["notifications"][0]["indexedAt"].as_str().unwrap().to_string();
        let (status, body) = app.call(Some(&alice), SEEN, Some(json!({"seenAt": newest})), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, count) = app.call(Some(&alice), UNREAD, None, &[]).await;
        assert_eq!(count["count"], 0);
        let (_, page) = app.call(Some(&alice), LIST, None, &[]).await;
        assert!(page["notifications"].as_array().unwrap().iter().all(|n| n["isRead"] == true));
        assert!(page["seenAt"].as_str().is_some_and(|s| !s.is_empty()));

        // The watermark never moves back.
        let (status, _) = app.call(Some(&alice), SEEN, Some(json!({"seenAt": "2001-01-01T00:00:00Z"})), &[]).await;
        assert_eq!(status, StatusCode::OK);
        let (_, count) = app.call(Some(&alice), UNREAD, None, &[]).await;
        assert_eq!(count["count"], 0);
    }

    async fn inbox_input_errors_use_the_xrpc_shape(backend) {
        let app = spawn_app(backend).await;
        let alice = app.identity("alice");
        for query in [vec![("limit", "0")], vec![("limit", "abc")], vec![("cursor", "garbage")]] {
            let (status, body) = app.call(Some(&alice), LIST, None, &query).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query:?}: {body}");
            assert_eq!(body["error"], "InvalidRequest");
        }
        let (status, body) = app.call(Some(&alice), SEEN, Some(json!({"seenAt": "yesterday"})), &[]).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("InvalidRequest")));
    }

    async fn one_members_inbox_is_not_anothers(backend) {
        let app = spawn_app(backend).await;
        let community = app.identity("community");
        let (alice, bob) = (app.identity("alice"), app.identity("bob"));
        app.community(&community, json!({})).await;
        app.subscribe(&alice, &community, json!({})).await;
        app.publish(&community, &community, "digest", "for-alice").await;
        assert_eq!(app.inbox(&alice).await, vec!["for-alice"]);
        assert!(app.inbox(&bob).await.is_empty());
    }
}
