//! Email identity (seeds 001 and 002): transfer between accounts, the manage page,
//! unsubscribe-from-all and "this is not me", standalone subscriptions and their conversion,
//! pre-validation, and key rotation — against a real SMTP server.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::contacts::{code_in, link_in, token_of};
use crate::helpers::*;
use crate::on_both_backends;
use herald::sandbox::Identity;

const ADD: &str = "community.herald.contact.add";
const VERIFY: &str = "community.herald.contact.verify";
const LIST: &str = "community.herald.contact.list";
const SUBSCRIBE: &str = "community.herald.subscribeEmail";

async fn contacts(app: &TestApp, member: &Identity) -> Vec<Value> {
    let (_, body) = app.call(Some(member), LIST, None, &[]).await;
    body["contacts"].as_array().unwrap().clone()
}

async fn manage_post(app: &TestApp, token: &str, fields: &[(&str, &str)]) -> StatusCode {
    let mut form = vec![("token", token)];
    form.extend_from_slice(fields);
    app.http
        .post(format!("{}/manage", app.base))
        .form(&form)
        .send()
        .await
        .unwrap()
        .status()
}

async fn manage_page(app: &TestApp, token: &str) -> String {
    let r = app
        .http
        .get(format!("{}/manage", app.base))
        .query(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

/// The email outbox rows of a publication.
async fn email_rows(app: &TestApp, publication: &Value) -> Vec<String> {
    app.store()
        .outbox_for(publication["id"].as_str().unwrap())
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, channel, _)| channel == "email")
        .map(|(r, _, _)| r)
        .collect()
}

on_both_backends! {
    async fn an_address_moves_between_accounts_only_when_its_mailbox_confirms(backend) {
        let app = spawn_app_with(backend, With { smtp: true, ..With::default() }).await;
        let smtp = app.providers.smtp.as_ref().unwrap();
        let community = app.identity("community");
        let (alice, bob) = (app.identity("alice"), app.identity("bob"));
        app.community(&community, json!({})).await;
        for m in [&alice, &bob] {
            app.subscribe(m, &community, json!({"routes": [{"pipe": "digest", "channels": ["inbox", "email"]}]})).await;
        }
        app.verified_email(&alice, "shared@example.org").await;

        let (status, body) = app.call(Some(&bob), ADD, Some(json!({"channel": "email", "address": "shared@example.org"})), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["verification"]["method"], "transfer");
        let bob_contact = body["id"].as_str().unwrap().to_string();
        let mail = smtp.wait_for(1, Duration::from_secs(5)).await.remove(0);
        let text = mail.text_body();
        assert!(text.contains(&format!("transfer your email from Account {} to Account {}", alice.did, bob.did)), "{text}");

        // Until confirmed, alice keeps the address and its mail; bob gets none.
        assert_eq!(contacts(&app, &alice).await[0]["status"], "verified");
        let (_, published) = app.publish(&community, &community, "digest", "before").await;
        assert_eq!(email_rows(&app, &published).await, vec![alice.did.clone()]);

        let (status, body) = app.call(Some(&bob), VERIFY, Some(json!({"id": bob_contact, "code": code_in(&text)})), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(contacts(&app, &alice).await.is_empty(), "the address left alice's account");
        let (_, published) = app.publish(&community, &community, "digest", "after").await;
        assert_eq!(email_rows(&app, &published).await, vec![bob.did.clone()]);
    }

    async fn changing_the_account_email_replaces_the_old_one(backend) {
        let app = spawn_app_with(backend, With { smtp: true, ..With::default() }).await;
        let carol = app.identity("carol");
        app.verified_email(&carol, "old@example.org").await;
        let (status, _) = app.call(Some(&carol), ADD, Some(json!({"channel": "email", "address": "new@example.org"})), &[]).await;
        assert_eq!(status, StatusCode::OK);
        let list = contacts(&app, &carol).await;
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["address"], "n•••@example.org");
        assert_eq!(list[0]["status"], "pending");
    }

    async fn the_manage_page_unsubscribes_from_all_email_and_only_it_undoes_that(backend) {
        let app = spawn_app_with(backend, With { smtp: true, ..With::default() }).await;
        let smtp = app.providers.smtp.as_ref().unwrap();
        let community = app.identity("community");
        let dan = app.identity("dan");
        app.community(&community, json!({})).await;
        app.subscribe(&dan, &community, json!({"routes": [{"pipe": "digest", "channels": ["inbox", "email"]}]})).await;
        let (_, body) = app.call(Some(&dan), ADD, Some(json!({"channel": "email", "address": "dan@example.org"})), &[]).await;
        let text = smtp.wait_for(1, Duration::from_secs(5)).await.remove(0).text_body();
        app.call(Some(&dan), VERIFY, Some(json!({"id": body["id"], "code": code_in(&text)})), &[]).await;
        let token = token_of(&link_in(&text, "/manage"));

        let page = manage_page(&app, &token).await;
        assert!(page.contains("dan@example.org") && page.contains(&dan.did));
        assert!(page.contains("Unsubscribe from all email"));
        assert_eq!(manage_post(&app, &token, &[("action", "unsubscribe_all")]).await, StatusCode::SEE_OTHER);
        assert!(manage_page(&app, &token).await.contains("Re-enable email"));

        let (_, published) = app.publish(&community, &community, "digest", "quiet").await;
        assert!(email_rows(&app, &published).await.is_empty(), "no email after unsubscribe-all");
        assert_eq!(app.inbox(&dan).await, vec!["quiet"], "the inbox still receives");
        // Nothing the account can call clears it: re-adding the address is refused as already
        // verified, and there is no XRPC method for it.
        let (_, body) = app.call(Some(&dan), ADD, Some(json!({"channel": "email", "address": "dan@example.org"})), &[]).await;
        assert_eq!(body["error"], "AlreadyVerified");
        let (_, published) = app.publish(&community, &community, "digest", "still-quiet").await;
        assert!(email_rows(&app, &published).await.is_empty());

        assert_eq!(manage_post(&app, &token, &[("action", "resubscribe_all")]).await, StatusCode::SEE_OTHER);
        let (_, published) = app.publish(&community, &community, "digest", "back").await;
        assert_eq!(email_rows(&app, &published).await, vec![dan.did.clone()]);

        // A forged token shows nothing.
        let r = app.http.get(format!("{}/manage", app.base)).query(&[("token", "forged.token")]).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(!r.text().await.unwrap().contains("dan@example.org"));
    }

    async fn one_click_unsubscribe_acts_on_post_and_never_on_get(backend) {
        let app = spawn_app_with(backend, With { smtp: true, ..With::default() }).await;
        let smtp = app.providers.smtp.as_ref().unwrap();
        let community = app.identity("community");
        app.community(&community, json!({})).await;
        app.call(None, SUBSCRIBE, Some(json!({"community": community.did, "email": "eve@example.org"})), &[]).await;
        let mail = smtp.wait_for(1, Duration::from_secs(5)).await.remove(0);
        assert_eq!(mail.header("List-Unsubscribe-Post").as_deref(), Some("List-Unsubscribe=One-Click"));
        let header = mail.header("List-Unsubscribe").expect("List-Unsubscribe");
        let text = mail.text_body();
        let token = token_of(&link_in(&text, "/unsubscribe"));
        assert_eq!(header, format!("<http://herald.test{}>", link_in(&text, "/unsubscribe")));
        let get = app.http.get(format!("{}/unsubscribe", app.base)).query(&[("token", &token)]).send().await.unwrap();
        assert_eq!(get.status(), StatusCode::OK);
        let (_, published) = app.publish(&community, &community, "digest", "d1").await;
        assert_eq!(email_rows(&app, &published).await.len(), 1, "a GET changed nothing");
        let post = app.http.post(format!("{}/unsubscribe?token={token}", app.base))
            .form(&[("List-Unsubscribe", "One-Click")]).send().await.unwrap();
        assert_eq!(post.status(), StatusCode::OK);
        let (_, published) = app.publish(&community, &community, "digest", "d2").await;
        assert!(email_rows(&app, &published).await.is_empty());
    }

    async fn this_is_not_me_detaches_the_address_and_stops_all_email(backend) {
        let app = spawn_app_with(backend, With { smtp: true, ..With::default() }).await;
        let smtp = app.providers.smtp.as_ref().unwrap();
        let (mallory, community) = (app.identity("mallory"), app.identity("community"));
        app.community(&community, json!({})).await;
        app.call(Some(&mallory), ADD, Some(json!({"channel": "email", "address": "victim@example.org"})), &[]).await;
        let text = smtp.wait_for(1, Duration::from_secs(5)).await.remove(0).text_body();
        let token = token_of(&link_in(&text, "/manage"));
        assert!(manage_page(&app, &token).await.contains(&mallory.did));
        assert_eq!(manage_post(&app, &token, &[("action", "not_me")]).await, StatusCode::SEE_OTHER);
        assert!(contacts(&app, &mallory).await.is_empty());
        assert!(manage_page(&app, &token).await.contains("blocked"));
        // No email of any kind goes there again.
        app.call(Some(&mallory), ADD, Some(json!({"channel": "email", "address": "victim@example.org"})), &[]).await;
        app.call(None, SUBSCRIBE, Some(json!({"community": community.did, "email": "victim@example.org"})), &[]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(smtp.messages().len(), 1);
    }

    async fn the_manage_page_lists_pending_accounts_and_choosing_one_clears_the_rest(backend) {
        let app = spawn_app_with(backend, With { smtp: true, ..With::default() }).await;
        let smtp = app.providers.smtp.as_ref().unwrap();
        let (fay, gil) = (app.identity("fay"), app.identity("gil"));
        app.call(Some(&fay), ADD, Some(json!({"channel": "email", "address": "family@example.org"})), &[]).await;
        app.call(Some(&gil), ADD, Some(json!({"channel": "email", "address": "family@example.org"})), &[]).await;
        let text = smtp.wait_for(2, Duration::from_secs(5)).await.remove(1).text_body();
        let token = token_of(&link_in(&text, "/manage"));
        let page = manage_page(&app, &token).await;
        assert!(page.contains(&fay.did) && page.contains(&gil.did));
        let gil_contact = contacts(&app, &gil).await[0]["id"].as_str().unwrap().to_string();
        assert_eq!(manage_post(&app, &token, &[("action", "choose"), ("contact", &gil_contact)]).await, StatusCode::SEE_OTHER);
        assert_eq!(contacts(&app, &gil).await[0]["status"], "verified");
        assert!(contacts(&app, &fay).await.is_empty(), "the other pending claim is cleared");
    }

    async fn a_standalone_subscription_is_active_at_once_and_welcomed(backend) {
        let app = spawn_app_with(backend, With { smtp: true, ..With::default() }).await;
        let smtp = app.providers.smtp.as_ref().unwrap();
        let community = app.identity("community");
        app.community(&community, json!({"name": "Riverside Gardeners"})).await;
        let (status, body) = app.call(None, SUBSCRIBE, Some(json!({"community": community.did, "email": "Kim@Example.org", "pipes": ["digest"]})), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"status": "accepted"}));
        let mail = smtp.wait_for(1, Duration::from_secs(5)).await.remove(0);
        assert_eq!(mail.rcpt_tos, vec!["kim@example.org"]);
        assert!(mail.text_body().contains("You're in. Welcome to the community."));
        link_in(&mail.text_body(), "/manage");

        let (_, published) = app.publish(&community, &community, "digest", "d1").await;
        let rows = email_rows(&app, &published).await;
        assert_eq!(rows.len(), 1);
        assert!(rows[0].starts_with("email:"), "{rows:?}");
        assert!(!rows[0].contains("kim"), "the outbox names the address by id only");
        let (_, published) = app.publish(&community, &community, "opportunity", "o1").await;
        assert!(email_rows(&app, &published).await.is_empty(), "not a subscribed pipe");

        for (input, status) in [
            (json!({"community": community.did, "email": "nope"}), StatusCode::BAD_REQUEST),
            (json!({"community": "not-a-did", "email": "k@example.org"}), StatusCode::BAD_REQUEST),
            (json!({"community": "did:plc:unknowncommunity000000", "email": "k@example.org"}), StatusCode::BAD_REQUEST),
        ] {
            assert_eq!(app.call(None, SUBSCRIBE, Some(input), &[]).await.0, status);
        }
    }

    async fn subscribing_an_account_owned_address_reveals_nothing_and_subscribes_nothing(backend) {
        let app = spawn_app_with(backend, With { smtp: true, ..With::default() }).await;
        let smtp = app.providers.smtp.as_ref().unwrap();
        let (community, lee) = (app.identity("community"), app.identity("lee"));
        app.community(&community, json!({})).await;
        app.verified_email(&lee, "lee@example.org").await;
        let (status, body) = app.call(None, SUBSCRIBE, Some(json!({"community": community.did, "email": "lee@example.org"})), &[]).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"status": "accepted"})), "same answer as a new address");
        let mail = smtp.wait_for(1, Duration::from_secs(5)).await.remove(0);
        assert!(mail.text_body().contains("belongs to an account"));
        let (_, published) = app.publish(&community, &community, "digest", "d1").await;
        assert!(email_rows(&app, &published).await.is_empty());
    }

    async fn verifying_an_address_converts_its_standalone_subscriptions(backend) {
        let app = spawn_app_with(backend, With { smtp: true, ..With::default() }).await;
        let (community, max) = (app.identity("community"), app.identity("max"));
        app.community(&community, json!({})).await;
        app.call(None, SUBSCRIBE, Some(json!({"community": community.did, "email": "max@example.org", "pipes": ["digest"]})), &[]).await;
        app.verified_email(&max, "max@example.org").await;

        let (_, prefs) = app.call(Some(&max), "community.herald.getPreferences", None, &[]).await;
        assert_eq!(prefs["keptSubscriptions"], json!([{"community": community.did,
            "routes": [{"pipe": "digest", "channels": ["inbox", "email"]}]}]));
        let (_, published) = app.publish(&community, &community, "digest", "d1").await;
        assert_eq!(email_rows(&app, &published).await, vec![max.did.clone()]);
        assert_eq!(app.inbox(&max).await, vec!["d1"]);

        // Once the member publishes their own record for the community, it decides.
        app.subscribe(&max, &community, json!({"routes": [{"pipe": "digest", "channels": ["inbox"]}]})).await;
        let (_, prefs) = app.call(Some(&max), "community.herald.getPreferences", None, &[]).await;
        assert_eq!(prefs["keptSubscriptions"], json!([]));
        let (_, published) = app.publish(&community, &community, "digest", "d2").await;
        assert!(email_rows(&app, &published).await.is_empty());
    }

    async fn double_opt_in_waits_for_the_confirmation_link(backend) {
        let app = spawn_app_with(backend, With { smtp: true, double_opt_in: true, ..With::default() }).await;
        let smtp = app.providers.smtp.as_ref().unwrap();
        let community = app.identity("community");
        app.community(&community, json!({})).await;
        app.call(None, SUBSCRIBE, Some(json!({"community": community.did, "email": "ned@example.org"})), &[]).await;
        let text = smtp.wait_for(1, Duration::from_secs(5)).await.remove(0).text_body();
        let (_, published) = app.publish(&community, &community, "digest", "d1").await;
        assert!(email_rows(&app, &published).await.is_empty());
        let link = link_in(&text, "/subscribe/confirm");
        let r = app.http.post(format!("{}/subscribe/confirm", app.base)).form(&[("token", token_of(&link))]).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let (_, published) = app.publish(&community, &community, "digest", "d2").await;
        assert_eq!(email_rows(&app, &published).await.len(), 1);
    }

    async fn subscribe_email_is_rate_limited_per_address(backend) {
        let app = spawn_app_with(backend, With { smtp: true, ..With::default() }).await;
        let community = app.identity("community");
        app.community(&community, json!({})).await;
        let input = json!({"community": community.did, "email": "olga@example.org"});
        for _ in 0..5 {
            assert_eq!(app.call(None, SUBSCRIBE, Some(input.clone()), &[]).await.0, StatusCode::OK);
        }
        let (status, body) = app.call(None, SUBSCRIBE, Some(input), &[]).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("RateLimitExceeded")));
    }

    async fn a_trusted_prevalidation_verifies_at_once_and_anything_else_falls_back(backend) {
        let app = spawn_app_with(backend, With { smtp: true, ..With::default() }).await;
        let smtp = app.providers.smtp.as_ref().unwrap();
        let pat = app.identity("pat");
        let stranger = app.identity("untrusted-validator");
        let good = app.prevalidation(&pat, "PAT@example.org");
        let (_, body) = app.call(Some(&pat), ADD, Some(json!({"channel": "email", "address": "pat@example.org", "prevalidation": good})), &[]).await;
        assert_eq!(body["status"], "verified", "{body}");
        assert_eq!(body["verification"]["method"], "prevalidated");
        assert!(smtp.messages().is_empty(), "no validation email for a pre-validated address");

        let cases = [
            ("expired", app.prevalidation_from(&app.prevalidator, &app.service_did, &pat, "pat2@example.org", -120)),
            ("untrusted", app.prevalidation_from(&stranger, &app.service_did, &pat, "pat2@example.org", 600)),
            ("wrong audience", app.prevalidation_from(&app.prevalidator, "did:web:elsewhere.test", &pat, "pat2@example.org", 600)),
            ("other member", app.prevalidation_from(&app.prevalidator, &app.service_did, &stranger, "pat2@example.org", 600)),
            ("other email", app.prevalidation(&pat, "someone@example.org")),
            ("garbage", "not.a.jwt".to_string()),
        ];
        for (i, (case, token)) in cases.into_iter().enumerate() {
            let address = format!("pat{i}@example.org");
            let token = token.replace("pat2@example.org", &address);
            let (status, body) = app.call(Some(&pat), ADD, Some(json!({"channel": "email", "address": address, "prevalidation": token})), &[]).await;
            assert_eq!(status, StatusCode::OK, "{case}: {body}");
            assert_eq!(body["status"], "pending", "{case}: falls back to normal verification");
            assert_eq!(body["verification"]["method"], "email", "{case}");
            smtp.wait_for(i + 1, Duration::from_secs(5)).await;
        }
    }

    async fn key_rotation_interrupted_and_resumed_keeps_every_address_readable(backend) {
        let mut app = spawn_app(backend).await;
        let members: Vec<Identity> = (0..5).map(|i| app.identity(&format!("rot{i}"))).collect();
        for (i, m) in members.iter().enumerate() {
            app.verified_email(m, &format!("rot{i}@example.org")).await;
        }
        let mut batches = 0;
        let report = app.vault().rotate_keys_in_batches(2, |_, _| {
            batches += 1;
            std::ops::ControlFlow::Break(())
        }).await.unwrap();
        assert!(report.added_key);
        assert_eq!(report.version, 2);
        assert!(report.remaining > 0, "{report:?}");
        // Mid-rotation, old and new keys both decrypt.
        for (i, m) in members.iter().enumerate() {
            assert_eq!(contacts(&app, m).await[0]["address"], format!("r•••@example.org"), "member {i}");
        }
        // A new process reads the ring from the key file and finishes the same rotation.
        app.restart().await;
        let report = app.vault().rotate_keys_in_batches(2, |_, _| std::ops::ControlFlow::Continue(())).await.unwrap();
        assert!(!report.added_key, "resumed, not a third key");
        assert_eq!((report.version, report.remaining), (2, 0));
        assert_eq!(app.vault().store().count_stale(2).await.unwrap(), 0);
        for m in &members {
            assert_eq!(contacts(&app, m).await[0]["status"], "verified");
        }
        let ring = std::fs::read_to_string(app.dir.path().join("vault.key")).unwrap();
        assert!(ring.contains("key 1 ") && ring.contains("key 2 "), "old keys stay in the ring");
    }
}
