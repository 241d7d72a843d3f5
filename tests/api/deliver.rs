//! Delivery (issue 4): the dispatcher draining the outbox through every channel, against a
//! real SMTP server and local servers speaking Twilio's, Telegram's and a push service's
//! formats — what each received, and what the outbox recorded for every failure mode.

use std::time::Duration;

use herald::sandbox::Identity;
use herald::storage::{DeadFilter, Outcome, Settled, now_micros};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::contacts::code_in;
use crate::helpers::*;
use crate::on_both_backends;

const ADD: &str = "community.herald.contact.add";
const VERIFY: &str = "community.herald.contact.verify";
const LIST: &str = "community.herald.contact.list";

pub fn delivering(with: With) -> With {
    With {
        deliver: true,
        ..with
    }
}

/// Outbox rows of a publication once none is pending or leased: `(recipient, channel,
/// status)`.
pub async fn settled(app: &TestApp, publication: &str) -> Vec<(String, String, String)> {
    for _ in 0..400 {
        let rows = app.store().outbox_for(publication).await.unwrap();
        if rows.iter().all(|(_, _, s)| s != "pending" && s != "leased") {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "deliveries of {publication} never settled: {:?}",
        app.store().outbox_for(publication).await.unwrap()
    );
}

/// The outbox id of `member`'s delivery of `publication` on `channel`.
async fn delivery_id(app: &TestApp, publication: &str, channel: &str) -> String {
    let sql = format!(
        "SELECT id FROM outbox WHERE publication_id = '{publication}' AND channel = '{channel}'"
    );
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app_database_url(app))
        .await
        .unwrap();
    sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap()
}

fn app_database_url(app: &TestApp) -> String {
    use secrecy::ExposeSecret;
    app.settings().database_url.expose_secret().to_string()
}

pub async fn publish_item(app: &TestApp, community: &Identity, item: Value) -> String {
    let (status, body) = app
        .call(
            Some(community),
            "community.herald.publish",
            Some(json!({"community": community.did, "pipe": "opportunity", "item": item})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// A community named Riverside and `member` subscribed to its opportunities on `channels`.
pub async fn routed(app: &TestApp, community: &Identity, member: &Identity, channels: &[&str]) {
    app.community(community, json!({})).await;
    app.subscribe(
        member,
        community,
        json!({"routes": [{"pipe": "opportunity", "channels": channels}]}),
    )
    .await;
}

pub async fn verified_sms(app: &TestApp, member: &Identity, number: &str) -> String {
    let (status, body) = app
        .call(
            Some(member),
            ADD,
            Some(json!({"channel": "sms", "address": number})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let twilio = app.providers.twilio.as_ref().unwrap();
    let code = code_in(&twilio.messages().last().unwrap().body);
    let (status, body) = app
        .call(
            Some(member),
            VERIFY,
            Some(json!({"id": id, "code": code})),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    id
}

pub async fn verified_telegram(app: &TestApp, member: &Identity, chat: i64) -> String {
    let (status, body) = app
        .call(Some(member), ADD, Some(json!({"channel": "telegram"})), &[])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let url = body["verification"]["pairingUrl"].as_str().unwrap();
    let token = url.rsplit('=').next().unwrap();
    telegram_text(app, chat, &format!("/start {token}"), None).await;
    id
}

/// A private-chat message to the bot's webhook, from a user with `language_code`.
pub async fn telegram_text(app: &TestApp, chat: i64, text: &str, language_code: Option<&str>) {
    let mut update = herald::sandbox::telegram::Telegram::start_update(1, chat, "private", text);
    if let Some(code) = language_code {
        update["message"]["from"]["language_code"] = json!(code);
    }
    let response = app
        .http
        .post(format!("{}/hooks/telegram", app.base))
        .header("X-Telegram-Bot-Api-Secret-Token", TELEGRAM_SECRET)
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn contacts(app: &TestApp, member: &Identity) -> Vec<Value> {
    let (status, body) = app.call(Some(member), LIST, None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["contacts"].as_array().unwrap().clone()
}

on_both_backends! {
    async fn an_email_delivery_arrives_rendered_with_unsubscribe_headers_and_is_recorded(backend) {
        let app = spawn_app_with(backend, delivering(With { smtp: true, ..With::default() })).await;
        let community = app.identity("community");
        let ada = app.identity("ada");
        routed(&app, &community, &ada, &["inbox", "email"]).await;
        app.verified_email(&ada, "ada@example.org").await;
        let publication = publish_item(&app, &community, json!({
            "id": "trees", "title": "Plant trees <Saturday>", "text": "Bring gloves.",
            "url": "https://example.org/trees"})).await;

        assert_eq!(settled(&app, &publication).await,
            vec![(ada.did.clone(), "email".into(), "sent".into())]);
        let smtp = app.providers.smtp.as_ref().unwrap();
        let mail = smtp.wait_for(1, Duration::from_secs(5)).await.pop().unwrap();
        assert_eq!(mail.subject().as_deref(), Some("Riverside: Plant trees <Saturday>"));
        assert_eq!(mail.header("To").as_deref(), Some("ada@example.org"));
        assert!(mail.header("Date").is_some_and(|d| d.ends_with("+0000")), "{:?}", mail.header("Date"));
        let text = mail.text_body();
        assert!(text.contains("Bring gloves."), "{text}");
        assert!(text.contains("Open: https://example.org/trees"), "{text}");
        assert!(text.contains("/manage?token="), "{text}");
        let html = mail.html_body().expect("an HTML part");
        assert!(html.contains("Plant trees &lt;Saturday&gt;"), "{html}");
        let unsubscribe = mail.header("List-Unsubscribe").expect("List-Unsubscribe");
        assert!(unsubscribe.starts_with('<') && unsubscribe.contains("/unsubscribe?token="), "{unsubscribe}");
        assert_eq!(mail.header("List-Unsubscribe-Post").as_deref(), Some("List-Unsubscribe=One-Click"));
        // The bodies travel in quoted-printable, encoded once per publication with the links
        // set in per member: decoded, each holds the member's whole link.
        let link = unsubscribe.trim_start_matches('<').trim_end_matches('>');
        assert!(text.lines().any(|line| line.trim_end().ends_with(&format!(": {link}"))), "{text}");
        let token = link.rsplit("token=").next().unwrap();
        assert!(html.contains(&format!("unsubscribe?token={token}\">")), "{html}");

        let id = delivery_id(&app, &publication, "email").await;
        let (status, attempts, claims, provider, provider_id, _) =
            app.store().delivery(&id).await.unwrap().unwrap();
        assert_eq!((status.as_str(), attempts, claims), ("sent", 1, 1));
        assert_eq!(provider.as_deref(), Some("smtp"));
        let message_id = mail.header("Message-ID").unwrap();
        assert_eq!(provider_id.as_deref(), Some(message_id.as_str()));
        assert!(message_id.contains(&id), "the delivery id is the Message-ID: {message_id}");
        assert_eq!(app.metrics().delivery_count("email", "sent"), 1);
        assert_eq!(app.inbox(&ada).await, vec!["trees"]);
    }

    async fn the_members_language_picks_the_template_words(backend) {
        let app = spawn_app_with(backend, delivering(With { smtp: true, ..With::default() })).await;
        let community = app.identity("community");
        let bea = app.identity("bea");
        routed(&app, &community, &bea, &["email"]).await;
        app.ingest([herald::sandbox::event::create(&bea.did, PREFERENCES, "self", &herald::sandbox::tid(),
            json!({"language": "fr-CA", "updatedAt": "2026-11-21T10:00:00.000Z"}))]).await;
        app.verified_email(&bea, "bea@example.org").await;
        let publication = publish_item(&app, &community, json!({"id": "f1", "title": "Fête",
            "url": "https://example.org/f"})).await;
        settled(&app, &publication).await;
        let mail = app.providers.smtp.as_ref().unwrap().wait_for(1, Duration::from_secs(5)).await.pop().unwrap();
        assert!(mail.text_body().contains("Ouvrir: https://example.org/f"), "{}", mail.text_body());
        assert!(mail.text_body().contains("Gérer les notifications"), "{}", mail.text_body());
    }

    async fn sms_waits_out_a_429_and_then_sends_once(backend) {
        let app = spawn_app_with(backend, delivering(With { twilio: true, ..With::default() })).await;
        let community = app.identity("community");
        let cy = app.identity("cy");
        routed(&app, &community, &cy, &["sms"]).await;
        verified_sms(&app, &cy, "+14155552671").await;
        let twilio = app.providers.twilio.as_ref().unwrap();
        let before = twilio.messages().len();
        twilio.fail_next(herald::sandbox::twilio::Fault::RateLimited { retry_after_secs: 1 });
        let started = std::time::Instant::now();
        let publication = publish_item(&app, &community, json!({"id": "s1", "title": "Tonight"})).await;
        assert_eq!(settled(&app, &publication).await[0].2, "sent");
        assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After is honoured");
        let sent = &twilio.messages()[before..];
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to, "+14155552671");
        assert_eq!(sent[0].body, "Riverside: Tonight\nReply STOP to opt out.", "with the opt-out carriers require");
        let id = delivery_id(&app, &publication, "sms").await;
        let (_, attempts, _, provider, provider_id, _) = app.store().delivery(&id).await.unwrap().unwrap();
        assert_eq!(attempts, 2);
        assert_eq!(provider.as_deref(), Some("twilio"));
        assert_eq!(provider_id, Some(sent[0].sid.clone()));
    }

    async fn a_permanent_failure_is_a_dead_letter_until_an_operator_retries_it(backend) {
        let app = spawn_app_with(backend, delivering(With { twilio: true, ..With::default() })).await;
        let community = app.identity("community");
        let dee = app.identity("dee");
        routed(&app, &community, &dee, &["sms"]).await;
        verified_sms(&app, &dee, "+14155552672").await;
        let twilio = app.providers.twilio.as_ref().unwrap();
        twilio.fail_next(herald::sandbox::twilio::Fault::Status(400));
        let publication = publish_item(&app, &community, json!({"id": "p1", "title": "Poll"})).await;
        assert_eq!(settled(&app, &publication).await[0].2, "dead");
        let dead = app.store().dead_letters(Some("sms"), 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].attempts, 1, "a permanent failure is not retried");
        let error = dead[0].last_error.clone().unwrap();
        assert!(error.contains("permanent"), "{error}");
        assert!(!error.contains("4155552672"), "no number in the error: {error}");
        assert_eq!(app.metrics().delivery_count("sms", "dead"), 1);

        let requeued = app.store().retry_dead_letters(&DeadFilter { ids: vec![dead[0].id.clone()], channel: None }, now_micros()).await.unwrap();
        assert_eq!(requeued, 1);
        assert_eq!(settled(&app, &publication).await[0].2, "sent");
        assert!(app.store().dead_letters(None, 10).await.unwrap().is_empty());
    }

    async fn transient_failures_back_off_and_give_up_after_the_configured_attempts(backend) {
        let app = spawn_app_with(backend, delivering(With { twilio: true, ..With::default() })).await;
        let community = app.identity("community");
        let eve = app.identity("eve");
        routed(&app, &community, &eve, &["sms"]).await;
        verified_sms(&app, &eve, "+14155552673").await;
        let twilio = app.providers.twilio.as_ref().unwrap();
        let requests_before = twilio.requests().len();
        for _ in 0..4 {
            twilio.fail_next(herald::sandbox::twilio::Fault::Status(500));
        }
        let publication = publish_item(&app, &community, json!({"id": "t1", "title": "Retry me"})).await;
        assert_eq!(settled(&app, &publication).await[0].2, "dead");
        assert_eq!(twilio.requests().len() - requests_before, 4, "HERALD_DELIVERY_MAX_ATTEMPTS=4");
        let dead = app.store().dead_letters(None, 10).await.unwrap();
        assert!(dead[0].last_error.as_deref().unwrap().starts_with("gave up after 4 attempts"), "{dead:?}");
    }

    async fn a_blocked_telegram_bot_disables_the_contact_and_cancels_the_delivery(backend) {
        let app = spawn_app_with(backend, delivering(With { telegram: true, ..With::default() })).await;
        let community = app.identity("community");
        let fin = app.identity("fin");
        routed(&app, &community, &fin, &["telegram"]).await;
        verified_telegram(&app, &fin, 777).await;
        let telegram = app.providers.telegram.as_ref().unwrap();

        let first = publish_item(&app, &community, json!({"id": "g1", "title": "Garden day",
            "text": "Saturday 10:00", "url": "https://example.org/g"})).await;
        assert_eq!(settled(&app, &first).await[0].2, "sent");
        let message = telegram.sent().last().unwrap().clone();
        assert_eq!(message.chat_id, 777);
        assert_eq!(message.text, "Riverside\nGarden day\n\nSaturday 10:00\n\nhttps://example.org/g");

        telegram.fail_next(herald::sandbox::telegram::Fault::Blocked);
        let second = publish_item(&app, &community, json!({"id": "g2", "title": "Again"})).await;
        assert_eq!(settled(&app, &second).await[0].2, "cancelled");
        assert_eq!(contacts(&app, &fin).await[0]["status"], "disabled");
        // The next publication does not even queue Telegram for Fin.
        let third = publish_item(&app, &community, json!({"id": "g3", "title": "Third"})).await;
        assert!(app.store().outbox_for(&third).await.unwrap().is_empty());
    }

    async fn an_expired_push_subscription_is_removed(backend) {
        let app = spawn_app_with(backend, delivering(With { push: true, ..With::default() })).await;
        let community = app.identity("community");
        let gil = app.identity("gil");
        routed(&app, &community, &gil, &["webpush"]).await;
        let service = app.providers.push.as_ref().unwrap();
        let browser = herald::sandbox::push::Browser::new();
        let (_, body) = app.call(Some(&gil), ADD, Some(json!({"channel": "webpush",
            "subscription": browser.subscription(service)})), &[]).await;
        let id = body["id"].as_str().unwrap().to_string();
        let code: Value = serde_json::from_slice(&service.received_for(&browser)[0]).unwrap();
        let (status, _) = app.call(Some(&gil), VERIFY, Some(json!({"id": id, "code": code["code"]})), &[]).await;
        assert_eq!(status, StatusCode::OK);

        let first = publish_item(&app, &community, json!({"id": "w1", "title": "Push me"})).await;
        assert_eq!(settled(&app, &first).await[0].2, "sent");
        let payload: Value = serde_json::from_slice(service.received_for(&browser).last().unwrap()).unwrap();
        assert_eq!(payload["title"], "Push me");
        assert_eq!(payload["community"], "Riverside");

        service.fail_next(herald::sandbox::push::Fault::Gone);
        let second = publish_item(&app, &community, json!({"id": "w2", "title": "Gone"})).await;
        assert_eq!(settled(&app, &second).await[0].2, "cancelled");
        assert!(contacts(&app, &gil).await.is_empty(), "the subscription is removed");
    }

    async fn a_contact_removed_after_publish_cancels_its_delivery(backend) {
        let app = spawn_app_with(backend, With { twilio: true, ..With::default() }).await;
        let community = app.identity("community");
        let hal = app.identity("hal");
        routed(&app, &community, &hal, &["sms"]).await;
        let contact = verified_sms(&app, &hal, "+14155552674").await;
        let publication = publish_item(&app, &community, json!({"id": "r1", "title": "Removed"})).await;
        let (status, _) = app.call(Some(&hal), "community.herald.contact.remove", Some(json!({"id": contact})), &[]).await;
        assert_eq!(status, StatusCode::OK);
        let mut app = app;
        app.deliver = true;
        app.restart().await;
        let twilio = app.providers.twilio.as_ref().unwrap();
        let before = twilio.messages().len();
        assert_eq!(settled(&app, &publication).await[0].2, "cancelled");
        assert_eq!(twilio.messages().len(), before, "nothing sent to a removed contact");
    }

    async fn a_channel_without_a_provider_is_reported_not_skipped(backend) {
        let mut app = spawn_app_with(backend, With { twilio: true, ..With::default() }).await;
        let community = app.identity("community");
        let ivy = app.identity("ivy");
        routed(&app, &community, &ivy, &["sms"]).await;
        verified_sms(&app, &ivy, "+14155552675").await;
        let publication = publish_item(&app, &community, json!({"id": "u1", "title": "No SMS"})).await;
        // The operator removes the SMS provider and restarts with delivery on.
        app.providers.twilio = None;
        app.deliver = true;
        app.restart().await;
        assert_eq!(settled(&app, &publication).await[0].2, "dead");
        let dead = app.store().dead_letters(None, 10).await.unwrap();
        assert_eq!(dead[0].last_error.as_deref(), Some("channel sms has no provider configured"));
        let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains(r#"herald_outbox{channel="sms",status="dead"} 1"#), "{metrics}");
    }

    async fn a_private_feed_lists_what_was_delivered_to_it(backend) {
        let app = spawn_app_with(backend, delivering(With::default())).await;
        let community = app.identity("community");
        let joy = app.identity("joy");
        routed(&app, &community, &joy, &["feed"]).await;
        let (status, body) = app.call(Some(&joy), ADD, Some(json!({"channel": "feed"})), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "verified");
        let feed_url = body["feedUrl"].as_str().unwrap().to_string();
        let path = url::Url::parse(&feed_url).unwrap().path().to_string();
        assert!(path.starts_with("/feed/"), "{feed_url}");

        let publication = publish_item(&app, &community, json!({"id": "a1", "title": "Atom & you",
            "text": "Read it", "url": "https://example.org/a1"})).await;
        assert_eq!(settled(&app, &publication).await[0].2, "sent");
        let response = app.http.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/atom+xml"));
        let xml = response.text().await.unwrap();
        let feed: atom_syndication::Feed = xml.parse().expect("valid Atom");
        assert_eq!(feed.entries().len(), 1);
        assert_eq!(feed.entries()[0].title().as_str(), "Atom & you");
        assert_eq!(feed.entries()[0].links()[0].href(), "https://example.org/a1");
        assert_eq!(feed.entries()[0].id(), format!("urn:uuid:{publication}"));

        // A wrong token and a revoked one get nothing.
        let r = app.http.get(format!("{}/feed/not-a-token", app.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let listed = contacts(&app, &joy).await;
        assert_eq!(listed[0]["channel"], "feed");
        assert!(!listed[0].to_string().contains(path.trim_start_matches("/feed/")), "the token is shown once");
        let (status, _) = app.call(Some(&joy), "community.herald.contact.remove", Some(json!({"id": "feed"})), &[]).await;
        assert_eq!(status, StatusCode::OK);
        let r = app.http.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    async fn claims_are_exclusive_and_a_stale_claim_cannot_record_an_outcome(backend) {
        let app = spawn_app(backend).await;
        let community = app.identity("community");
        app.community(&community, json!({})).await;
        let mut events = Vec::new();
        for i in 0..300 {
            let member = Identity::plc(&format!("m{i}"));
            events.push(herald::sandbox::event::create(&member.did, SUBSCRIPTION, &herald::sandbox::tid(),
                &herald::sandbox::tid(), json!({"subject": community.did, "createdAt": "2026-11-21T10:00:00.000Z",
                "routes": [{"pipe": "opportunity", "channels": ["feed"]}]})));
            // A feed makes the member reachable on `feed`.
            app.vault().store().put_feed(&member.did, format!("hash-{i}").as_bytes()).await.unwrap();
        }
        app.ingest(events).await;
        let publication = publish_item(&app, &community, json!({"id": "c1", "title": "Claims"})).await;
        assert_eq!(app.store().outbox_for(&publication).await.unwrap().len(), 300);

        // Four claimers at once, at the same instant (so their leases end at the same
        // microsecond): every row is claimed by exactly one of them, and each gets back the
        // rows it took and no other's.
        let lease = Duration::from_secs(60);
        let now = now_micros();
        let claims = futures_util::future::join_all((0..4).map(|_| {
            let store = app.store().clone();
            async move { store.claim_deliveries(100, lease, now).await.unwrap() }
        })).await;
        let mut ids: Vec<String> = claims.iter().flatten().map(|c| c.id.clone()).collect();
        assert_eq!(ids.len(), 300);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 300, "no row claimed twice");
        let mut tokens: Vec<&str> = Vec::new();
        for claim in claims.iter().filter(|c| !c.is_empty()) {
            assert!(claim.iter().all(|c| c.lease_token == claim[0].lease_token), "one claim, one token");
            tokens.push(&claim[0].lease_token);
        }
        let claimers = tokens.len();
        tokens.sort();
        tokens.dedup();
        assert_eq!(tokens.len(), claimers, "each claim has its own token");
        assert!(app.store().claim_deliveries(10, lease, now_micros()).await.unwrap().is_empty());

        // A lease that ran out is claimed again; the first claim's outcome is then refused.
        // (Any claimer's row: one of the four may have found nothing left to claim.)
        let row = claims.iter().flatten().next().expect("rows were claimed").clone();
        index_sql(&app, &format!("UPDATE outbox SET next_attempt_at = 0 WHERE id = '{}'", row.id)).await;
        let again = app.store().claim_deliveries(10, lease, now_micros()).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, row.id);
        assert_eq!(again[0].claims, 2);
        let stale = Settled { id: row.id.clone(), lease_token: row.lease_token.clone(),
            outcome: Outcome::Dead { error: "late".into() } };
        assert_eq!(app.store().settle_deliveries(&[stale], now_micros()).await.unwrap(), 0);
        let current = Settled { id: row.id.clone(), lease_token: again[0].lease_token.clone(),
            outcome: Outcome::Sent { provider: "feed".into(), provider_id: None } };
        assert_eq!(app.store().settle_deliveries(&[current], now_micros()).await.unwrap(), 1);
        assert_eq!(app.store().delivery(&row.id).await.unwrap().unwrap().0, "sent");
    }

    async fn one_settle_records_every_kind_of_outcome_with_its_text_intact(backend) {
        let app = spawn_app(backend).await;
        let community = app.identity("community");
        app.community(&community, json!({})).await;
        let mut events = Vec::new();
        for i in 0..5 {
            let member = Identity::plc(&format!("s{i}"));
            events.push(herald::sandbox::event::create(&member.did, SUBSCRIPTION, &herald::sandbox::tid(),
                &herald::sandbox::tid(), json!({"subject": community.did, "createdAt": "2026-11-21T10:00:00.000Z",
                "routes": [{"pipe": "opportunity", "channels": ["feed"]}]})));
            app.vault().store().put_feed(&member.did, format!("hash-{i}").as_bytes()).await.unwrap();
        }
        app.ingest(events).await;
        let publication = publish_item(&app, &community, json!({"id": "s1", "title": "Settle"})).await;
        let rows = app.store().claim_deliveries(10, Duration::from_secs(60), now_micros()).await.unwrap();
        assert_eq!(rows.len(), 5);
        // Outcomes travel to the database as one JSON list per kind: quotes, backslashes,
        // newlines and non-ASCII text must come back as written, and a missing id as NULL.
        let text = "550 \"no\" such user\\mailbox\n'quoted' — ünïcode ✓";
        let at = now_micros() + 3_600_000_000;
        let outcomes = [
            Outcome::Sent { provider: "smtp".into(), provider_id: Some(format!("<{text}>")) },
            Outcome::Retry { at, error: text.into() },
            Outcome::Dead { error: text.into() },
            Outcome::Cancelled { reason: text.into() },
            Outcome::Held { at, fold: true },
        ];
        let settled: Vec<Settled> = rows.iter().zip(outcomes.iter()).map(|(row, outcome)| Settled {
            id: row.id.clone(), lease_token: row.lease_token.clone(), outcome: outcome.clone() }).collect();
        assert_eq!(app.store().settle_deliveries(&settled, now_micros()).await.unwrap(), 5);

        let row = |i: usize| {
            let id = rows[i].id.clone();
            let store = app.store().clone();
            async move { store.delivery(&id).await.unwrap().unwrap() }
        };
        let (status, attempts, _, provider, provider_id, error) = row(0).await;
        assert_eq!((status.as_str(), attempts, provider.as_deref()), ("sent", 1, Some("smtp")));
        assert_eq!(provider_id, Some(format!("<{text}>")));
        assert_eq!(error, None);
        let (status, attempts, _, _, _, error) = row(1).await;
        assert_eq!((status.as_str(), attempts, error.as_deref()), ("pending", 1, Some(text)));
        let (status, attempts, _, _, _, error) = row(2).await;
        assert_eq!((status.as_str(), attempts, error.as_deref()), ("dead", 1, Some(text)));
        let (status, attempts, _, _, _, error) = row(3).await;
        assert_eq!((status.as_str(), attempts, error.as_deref()), ("cancelled", 1, Some(text)));
        let (status, attempts, _, _, _, _) = row(4).await;
        assert_eq!((status.as_str(), attempts), ("pending", 0), "a hold is not an attempt");
        // The retry and the hold are due when they said, not before.
        assert!(app.store().claim_deliveries(10, Duration::from_secs(60), now_micros()).await.unwrap().is_empty());
        let due = app.store().claim_deliveries(10, Duration::from_secs(60), at).await.unwrap();
        let mut due: Vec<(String, bool)> = due.into_iter().map(|c| (c.id, c.fold)).collect();
        due.sort();
        let mut expected = vec![(rows[1].id.clone(), false), (rows[4].id.clone(), true)];
        expected.sort();
        assert_eq!(due, expected);
        assert_eq!(app.store().outbox_for(&publication).await.unwrap().len(), 5);
    }

    async fn a_failing_sms_provider_fails_over_and_its_breaker_opens(backend) {
        let app = spawn_app_with(backend, delivering(With { twilio: true, vonage: true, ..With::default() })).await;
        let community = app.identity("community");
        let kit = app.identity("kit");
        routed(&app, &community, &kit, &["sms"]).await;
        verified_sms(&app, &kit, "+14155552676").await;
        let twilio = app.providers.twilio.as_ref().unwrap();
        let vonage = app.providers.vonage.as_ref().unwrap();
        let twilio_before = twilio.requests().len();
        // Twilio is down for the next eight messages (five open its breaker).
        for _ in 0..8 {
            twilio.fail_next(herald::sandbox::twilio::Fault::Status(503));
        }
        for n in 0..8 {
            let publication = publish_item(&app, &community, json!({"id": format!("f{n}"), "title": format!("Failover {n}")})).await;
            assert_eq!(settled(&app, &publication).await[0].2, "sent");
            let id = delivery_id(&app, &publication, "sms").await;
            let (_, attempts, _, provider, provider_id, _) = app.store().delivery(&id).await.unwrap().unwrap();
            assert_eq!((attempts, provider.as_deref()), (1, Some("vonage")), "failed over in the same attempt");
            assert_eq!(provider_id, Some(vonage.messages().last().unwrap().message_ids[0].clone()));
        }
        let sent = vonage.messages();
        assert_eq!(sent.len(), 8);
        assert_eq!(sent[0].to, "14155552676");
        assert!(sent[0].client_ref.as_deref().is_some_and(|r| !r.is_empty()), "the delivery id tags the message");
        assert_eq!(twilio.requests().len() - twilio_before, 5,
            "after five transient failures Twilio's breaker is open and it is not called");
        let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains(r#"herald_circuit_breaker_opened_total{provider="twilio"} 1"#), "{metrics}");
        assert!(metrics.contains(r#"herald_delivery_failovers_total{channel="sms",provider="vonage"}"#), "{metrics}");
    }

    async fn a_permanent_refusal_does_not_fail_over(backend) {
        let app = spawn_app_with(backend, delivering(With { twilio: true, vonage: true, ..With::default() })).await;
        let community = app.identity("community");
        let lou = app.identity("lou");
        routed(&app, &community, &lou, &["sms"]).await;
        verified_sms(&app, &lou, "+14155552677").await;
        app.providers.twilio.as_ref().unwrap().fail_next(herald::sandbox::twilio::Fault::Status(400));
        let publication = publish_item(&app, &community, json!({"id": "x1", "title": "Refused"})).await;
        assert_eq!(settled(&app, &publication).await[0].2, "dead");
        assert!(app.providers.vonage.as_ref().unwrap().messages().is_empty());
    }

    async fn email_fails_over_from_smtp_to_resend_with_the_delivery_id_as_idempotency_key(backend) {
        // SMTP comes first, but no SMTP server listens at its URL: every send fails to connect.
        let mut app = spawn_app_with(backend, delivering(With { resend: true, ..With::default() })).await;
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let community = app.identity("community");
        let max = app.identity("max");
        routed(&app, &community, &max, &["email"]).await;
        app.extra_settings.push(("HERALD_SMTP_URL", format!("smtp://{closed}")));
        app.restart().await;
        app.verified_email(&max, "max@example.org").await;
        let publication = publish_item(&app, &community, json!({"id": "e1", "title": "Via Resend"})).await;
        assert_eq!(settled(&app, &publication).await[0].2, "sent");
        let emails = app.providers.resend.as_ref().unwrap().emails();
        assert_eq!(emails.len(), 1);
        assert_eq!(emails[0].to, vec!["max@example.org".to_string()]);
        assert_eq!(emails[0].subject, "Riverside: Via Resend");
        let id = delivery_id(&app, &publication, "email").await;
        assert_eq!(emails[0].idempotency_key.as_deref(), Some(id.as_str()));
        assert!(emails[0].headers.contains_key("List-Unsubscribe"));
        let (_, attempts, _, provider, _, _) = app.store().delivery(&id).await.unwrap().unwrap();
        assert_eq!((attempts, provider.as_deref()), (1, Some("resend")), "failed over within one attempt");
        assert_eq!(app.metrics().delivery_count("email", "sent"), 1);
    }

    async fn a_webhook_contact_is_verified_through_its_endpoint_and_gets_signed_deliveries(backend) {
        let app = spawn_app_with(backend, delivering(With::default())).await;
        let community = app.identity("community");
        let ned = app.identity("ned");
        routed(&app, &community, &ned, &["webhook"]).await;
        // The member's endpoint holds its own secret and gives it to Herald, so it can check
        // the verification POST's signature too.
        let secret = herald::channels::webhook::WebhookSecret::generate();
        let receiver = herald::sandbox::webhook::WebhookReceiver::start(secret.clone()).await;
        let (status, body) = app.call(Some(&ned), ADD, Some(json!({"channel": "webhook",
            "address": receiver.url().to_string(), "secret": secret.expose()})), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["verification"]["method"], "webhook");
        assert_eq!(body["secret"].as_str(), Some(secret.expose().as_str()));
        let id = body["id"].as_str().unwrap().to_string();
        let verification = receiver.wait_for(1, Duration::from_secs(5)).await.pop().unwrap();
        assert!(verification.verified);
        assert_eq!(verification.body["type"], "community.herald.contact.verify");
        let code = verification.body["code"].as_str().unwrap();
        let (status, body) = app.call(Some(&ned), VERIFY, Some(json!({"id": id, "code": code})), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // Without a secret Herald makes one, signs with it and shows it once; an endpoint that
        // cannot check it yet and refuses the POST gets a clear upstream failure.
        let other = app.identity("other");
        let (status, body) = app.call(Some(&other), ADD, Some(json!({"channel": "webhook",
            "address": receiver.url().to_string()})), &[]).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_GATEWAY, Some("UpstreamFailure")), "{body}");
        // A bad URL is refused with a reason.
        let (status, body) = app.call(Some(&ned), ADD, Some(json!({"channel": "webhook",
            "address": "ftp://example.org/hook"})), &[]).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("InvalidRequest")));

        let publication = publish_item(&app, &community, json!({"id": "h1", "title": "Hooked",
            "url": "https://example.org/h1"})).await;
        assert_eq!(settled(&app, &publication).await[0].2, "sent");
        let deliveries = receiver.wait_for(1, Duration::from_secs(5)).await;
        let delivery = deliveries.last().unwrap();
        assert!(delivery.verified, "signed with the member's secret");
        assert_eq!(delivery.body["type"], "community.herald.notification");
        assert_eq!(delivery.body["data"]["title"], "Hooked");
        assert_eq!(delivery.body["data"]["recipient"], ned.did.as_str());
        assert_eq!(delivery.id, delivery_id(&app, &publication, "webhook").await);

        // 410 from the endpoint disables the contact.
        receiver.fail_next(herald::sandbox::webhook::Fault::Gone);
        let second = publish_item(&app, &community, json!({"id": "h2", "title": "Gone"})).await;
        assert_eq!(settled(&app, &second).await[0].2, "cancelled");
        let listed = contacts(&app, &ned).await;
        assert_eq!(listed[0]["status"], "disabled");
    }
}

/// Run SQL against the index database.
async fn index_sql(app: &TestApp, sql: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app_database_url(app))
        .await
        .unwrap();
    sqlx::query(sql).execute(&pool).await.unwrap();
}
