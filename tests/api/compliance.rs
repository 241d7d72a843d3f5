//! Compliance (issue 5): provider callbacks with valid and forged signatures — Resend's
//! bounces and complaints, Twilio's and Vonage's inbound SMS keywords in every language of
//! seed 004, Telegram's /stop — and what they change: suppressed addresses and opted-out
//! numbers get nothing more while the other channels go on, across a restart.

use herald::channels::webhook::WebhookSecret;
use herald::inbound::keywords::Language;
use herald::model::Channel;
use herald::sandbox::Identity;
use herald::vault::ComplianceReply;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::deliver::{
    publish_item, routed, settled, telegram_text, verified_sms, verified_telegram,
};
use crate::helpers::*;
use crate::on_both_backends;

const ADD: &str = "community.herald.contact.add";
const LIST: &str = "community.herald.contact.list";
const VONAGE_SIGNATURE_SECRET: &str = "vonage-signature-secret";
/// Where Twilio is told to post: `HERALD_PUBLIC_URL` (the harness's) and the path.
const TWILIO_URL: &str = "http://herald.test/hooks/twilio/sms";

/// An app with the callback secrets set (Resend's is returned), restarted to read them.
async fn app_with(backend: herald::settings::Backend, with: With) -> (TestApp, WebhookSecret) {
    let mut app = spawn_app_with(backend, with).await;
    let secret = WebhookSecret::generate();
    app.extra_settings.extend([
        ("HERALD_RESEND_WEBHOOK_SECRET", secret.expose()),
        (
            "HERALD_VONAGE_SIGNATURE_SECRET",
            VONAGE_SIGNATURE_SECRET.to_string(),
        ),
    ]);
    // A first event stores an ingest cursor, so the restarted ingest resumes from it instead
    // of starting at live events (and missing those pushed before it reconnects).
    let warmup = app.identity("warmup");
    app.ingest([herald::sandbox::event::identity(
        &warmup.did,
        "warmup.test",
        1,
    )])
    .await;
    app.restart().await;
    (app, secret)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A Resend event about `to`, dated `created_at`.
fn resend_event(kind: &str, to: &str, bounce_type: Option<&str>, created_at: &str) -> Vec<u8> {
    let mut data = json!({
        "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
        "from": "Herald <herald@herald.test>",
        "to": [to],
        "subject": "Riverside: Plant trees",
        "created_at": created_at,
    });
    if let Some(kind) = bounce_type {
        data["bounce"] = json!({"type": kind, "subType": "General", "message": "550 5.1.1"});
    }
    serde_json::to_vec(&json!({"type": kind, "created_at": created_at, "data": data})).unwrap()
}

/// POST a Resend webhook signed with `secret` at unix time `at` (no signature when `None`).
async fn post_resend(
    app: &TestApp,
    secret: Option<&WebhookSecret>,
    at: i64,
    body: &[u8],
) -> (StatusCode, Value) {
    let mut request = app
        .http
        .post(format!("{}/hooks/resend", app.base))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(secret) = secret {
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        request = request.headers(herald::inbound::resend::svix_headers(secret, &id, at, body));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// POST an inbound SMS as Twilio does, signed with `token` (unsigned when `None`). Returns
/// the status, content type and body.
async fn post_twilio(
    app: &TestApp,
    token: Option<&str>,
    from: &str,
    text: &str,
) -> (StatusCode, String, String) {
    let params: Vec<(String, String)> = [
        ("ToCountry", "US"),
        ("SmsMessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("NumMedia", "0"),
        ("From", from),
        ("To", "+14155550000"),
        ("Body", text),
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("AccountSid", TWILIO_SID),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut request = app
        .http
        .post(format!("{}/hooks/twilio/sms", app.base))
        .form(&params);
    if let Some(token) = token {
        let signature = herald::inbound::twilio::signature(token.as_bytes(), TWILIO_URL, &params);
        request = request.header("X-Twilio-Signature", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

/// POST an inbound SMS as Vonage does (sender as digits), signed with `secret` at `at`.
async fn post_vonage(
    app: &TestApp,
    secret: &str,
    at: i64,
    msisdn: &str,
    text: &str,
) -> (StatusCode, Value) {
    let mut params: Vec<(String, String)> = [
        ("msisdn", msisdn.to_string()),
        ("to", "447700900000".to_string()),
        ("messageId", "0A0000000123ABCD1".to_string()),
        ("text", text.to_string()),
        ("type", "text".to_string()),
        (
            "keyword",
            text.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_uppercase(),
        ),
        ("message-timestamp", "2026-03-01 12:00:00".to_string()),
        ("timestamp", at.to_string()),
        ("nonce", uuid::Uuid::new_v4().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let sig = herald::inbound::vonage::signature(secret.as_bytes(), &params);
    params.push(("sig".into(), sig));
    let response = app
        .http
        .post(format!("{}/hooks/vonage/sms", app.base))
        .form(&params)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The text of a TwiML answer's `<Message>`, unescaped; `None` for an empty answer.
fn twiml_message(body: &str) -> Option<String> {
    let start = body.find("<Message>")? + "<Message>".len();
    let end = body.find("</Message>")?;
    Some(
        body[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

fn reply(app: &TestApp, reply: ComplianceReply, lang: Language) -> String {
    app.vault().compliance_reply(reply, lang.code())
}

/// `member`'s contacts as `(channel, status)`.
async fn contact_states(app: &TestApp, member: &Identity) -> Vec<(String, String)> {
    let (status, body) = app.call(Some(member), LIST, None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["channel"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The stored suppression reason of `email`'s address (`None`: not suppressed).
async fn suppression(app: &TestApp, email: &str) -> Option<String> {
    let state = app.vault().bounce_state(email).await.unwrap().unwrap();
    let row = app
        .vault()
        .store()
        .email_address(&state.address_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.suppressed_at.is_some(), state.suppressed);
    row.suppressed_reason
}

async fn score(app: &TestApp, email: &str) -> f64 {
    app.vault()
        .bounce_state(email)
        .await
        .unwrap()
        .unwrap()
        .score
}

fn sms_rows(rows: &[(String, String, String)]) -> Vec<&(String, String, String)> {
    rows.iter()
        .filter(|(_, channel, _)| channel == "sms")
        .collect()
}

on_both_backends! {
    async fn a_complaint_suppresses_the_address_at_once_while_the_inbox_continues(backend) {
        let with = With { smtp: true, deliver: true, ..With::default() };
        let (mut app, secret) = app_with(backend, with).await;
        let community = app.identity("community");
        let ada = app.identity("ada");
        routed(&app, &community, &ada, &["inbox", "email"]).await;
        app.verified_email(&ada, "ada@example.org").await;

        let body = resend_event("email.complained", "Ada <Ada@Example.org>", None, "2026-03-01T10:00:00Z");
        let (status, _) = post_resend(&app, Some(&secret), now(), &body).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(suppression(&app, "ada@example.org").await.as_deref(), Some("complaint"));
        assert_eq!(app.metrics().inbound_count("resend", "complaint", "suppressed"), 1);
        // A second complaint (Resend retries) changes nothing.
        let (status, _) = post_resend(&app, Some(&secret), now(), &body).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(app.metrics().inbound_count("resend", "complaint", "already_suppressed"), 1);

        let publication = publish_item(&app, &community, json!({"id": "c1", "title": "After"})).await;
        assert!(settled(&app, &publication).await.is_empty(), "no email is even queued");
        assert_eq!(app.inbox(&ada).await, vec!["c1"]);
        assert!(app.providers.smtp.as_ref().unwrap().messages().is_empty());

        app.restart().await;
        assert_eq!(suppression(&app, "ada@example.org").await.as_deref(), Some("complaint"));
        let publication = publish_item(&app, &community, json!({"id": "c2", "title": "Later"})).await;
        assert!(settled(&app, &publication).await.is_empty());
        assert_eq!(app.inbox(&ada).await, vec!["c2", "c1"]);
    }

    async fn a_mailbox_the_relay_says_does_not_exist_is_suppressed_at_send_time(backend) {
        let with = With { smtp: true, deliver: true, ..With::default() };
        let (app, _secret) = app_with(backend, with).await;
        let community = app.identity("community");
        let bob = app.identity("bob");
        routed(&app, &community, &bob, &["inbox", "email"]).await;
        // The SMTP test server answers 550 5.1.1 for this local part.
        app.verified_email(&bob, "fail5xx.bob@example.org").await;
        let publication = publish_item(&app, &community, json!({"id": "b1", "title": "First"})).await;
        assert_eq!(settled(&app, &publication).await[0].2, "cancelled", "a hard bounce, not a retry");
        let reason = suppression(&app, "fail5xx.bob@example.org").await.expect("suppressed");
        assert!(reason.contains("5.1.1"), "{reason}");
        let publication = publish_item(&app, &community, json!({"id": "b2", "title": "Second"})).await;
        assert!(settled(&app, &publication).await.is_empty(), "no email is queued any more");
        assert_eq!(app.inbox(&bob).await, vec!["b2", "b1"]);
    }

    async fn a_hard_bounce_suppresses_and_soft_bounces_are_scored_once_a_day(backend) {
        let (app, secret) = app_with(backend, With { smtp: true, ..With::default() }).await;
        for (name, email) in [("bo", "bo@example.org"), ("cy", "cy@example.org"), ("di", "di@example.org")] {
            let member = app.identity(name);
            app.verified_email(&member, email).await;
        }
        let post = |to: &'static str, kind: &'static str, day: &'static str| {
            let body = resend_event("email.bounced", to, Some(kind), &format!("2026-03-{day}T08:00:00Z"));
            let secret = &secret;
            let app = &app;
            async move {
                let (status, body) = post_resend(app, Some(secret), now(), &body).await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
        };

        post("bo@example.org", "Permanent", "01").await;
        assert_eq!(suppression(&app, "bo@example.org").await.as_deref(), Some("bounce"));
        assert_eq!(app.metrics().inbound_count("resend", "hard_bounce", "suppressed"), 1);

        // Two soft bounces on one day count once; Undetermined is soft too.
        post("cy@example.org", "Transient", "01").await;
        post("cy@example.org", "Undetermined", "01").await;
        assert_eq!(score(&app, "cy@example.org").await, 0.5);
        assert_eq!(app.metrics().inbound_count("resend", "soft_bounce", "not_counted"), 1);
        for day in ["02", "03", "04", "05", "06", "07", "08", "09"] {
            post("cy@example.org", "Transient", day).await;
        }
        assert_eq!(score(&app, "cy@example.org").await, 4.5);
        assert_eq!(suppression(&app, "cy@example.org").await, None);
        post("cy@example.org", "Transient", "10").await;
        assert_eq!(score(&app, "cy@example.org").await, 5.0);
        assert_eq!(suppression(&app, "cy@example.org").await.as_deref(), Some("bounces"));

        // A score whose last bounce is more than seven days old starts again.
        post("di@example.org", "Transient", "01").await;
        post("di@example.org", "Transient", "02").await;
        post("di@example.org", "Transient", "12").await;
        assert_eq!(score(&app, "di@example.org").await, 0.5);

        // An address Herald never had is acknowledged and ignored.
        post("stranger@example.org", "Permanent", "01").await;
        assert_eq!(app.metrics().inbound_count("resend", "hard_bounce", "unknown_address"), 1);
    }

    async fn a_forged_missing_or_stale_resend_signature_is_refused_and_changes_nothing(backend) {
        let (app, secret) = app_with(backend, With { smtp: true, ..With::default() }).await;
        let eve = app.identity("eve");
        app.verified_email(&eve, "eve@example.org").await;
        let body = resend_event("email.complained", "eve@example.org", None, "2026-03-01T10:00:00Z");

        let forger = WebhookSecret::generate();
        let (status, error) = post_resend(&app, Some(&forger), now(), &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(error["error"], "InvalidSignature", "{error}");
        assert!(error["message"].is_string());
        let (status, error) = post_resend(&app, None, now(), &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(error["error"], "AuthenticationRequired", "{error}");
        let (status, error) = post_resend(&app, Some(&secret), now() - 600, &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(error["error"], "InvalidSignature");
        assert!(error["message"].as_str().unwrap().contains("older"), "{error}");

        assert_eq!(suppression(&app, "eve@example.org").await, None);
        assert_eq!(app.metrics().inbound_count("resend", "other", "rejected"), 3);
        let (status, _) = post_resend(&app, Some(&secret), now(), &body).await;
        assert_eq!(status, StatusCode::OK, "the same event, signed, is taken");
        assert_eq!(suppression(&app, "eve@example.org").await.as_deref(), Some("complaint"));
    }

    async fn callbacks_without_their_secret_are_not_found(backend) {
        let app = spawn_app(backend).await;
        let body = resend_event("email.complained", "x@example.org", None, "2026-03-01T10:00:00Z");
        let (status, error) = post_resend(&app, Some(&WebhookSecret::generate()), now(), &body).await;
        assert_eq!((status, error["error"].as_str()), (StatusCode::NOT_FOUND, Some("NotFound")));
        let (status, _, _) = post_twilio(&app, Some(TWILIO_TOKEN), "+14155552671", "STOP").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = post_vonage(&app, VONAGE_SIGNATURE_SECRET, now(), "447911123456", "STOP").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    async fn twilio_stop_ends_sms_while_email_and_inbox_go_on_and_start_brings_it_back(backend) {
        let with = With { smtp: true, twilio: true, deliver: true, ..With::default() };
        let (mut app, _) = app_with(backend, with).await;
        let community = app.identity("community");
        let fay = app.identity("fay");
        routed(&app, &community, &fay, &["inbox", "email", "sms"]).await;
        app.verified_email(&fay, "fay@example.org").await;
        verified_sms(&app, &fay, "+14155552671").await;
        let twilio = app.providers.twilio.as_ref().unwrap();
        let smtp = app.providers.smtp.as_ref().unwrap();

        let (status, content_type, body) = post_twilio(&app, Some(TWILIO_TOKEN), "+1 (415) 555-2671", "Stop").await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("text/xml"), "{content_type}");
        assert!(body.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>"), "{body}");
        assert_eq!(
            twiml_message(&body).as_deref(),
            Some("You have been unsubscribed from Herald and will receive no more messages. Reply START to resubscribe.")
        );
        assert!(app.vault().sms_opted_out("+14155552671").await.unwrap());
        assert_eq!(app.metrics().inbound_count("twilio", "stop", "opted_out"), 1);
        let mut states = contact_states(&app, &fay).await;
        states.sort();
        assert_eq!(states, vec![("email".into(), "verified".into()), ("sms".into(), "disabled".into())]);

        let sms_before = twilio.messages().len();
        let publication = publish_item(&app, &community, json!({"id": "s1", "title": "Quiet"})).await;
        let rows = settled(&app, &publication).await;
        assert_eq!(rows, vec![(fay.did.clone(), "email".into(), "sent".into())]);
        assert_eq!(smtp.wait_for(1, std::time::Duration::from_secs(5)).await.len(), 1);
        assert_eq!(twilio.messages().len(), sms_before, "no SMS to a number that said STOP");
        assert_eq!(app.inbox(&fay).await, vec!["s1"]);

        app.restart().await;
        assert!(app.vault().sms_opted_out("+14155552671").await.unwrap(), "the opt-out survives a restart");
        let publication = publish_item(&app, &community, json!({"id": "s2", "title": "Still quiet"})).await;
        assert!(sms_rows(&settled(&app, &publication).await).is_empty());

        let (status, _, body) = post_twilio(&app, Some(TWILIO_TOKEN), "+14155552671", "START").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(twiml_message(&body), Some(reply(&app, ComplianceReply::SmsStarted, Language::En)));
        assert!(!app.vault().sms_opted_out("+14155552671").await.unwrap());
        assert!(contact_states(&app, &fay).await.iter().all(|(_, status)| status == "verified"));
        let twilio = app.providers.twilio.as_ref().unwrap();
        let publication = publish_item(&app, &community, json!({"id": "s3", "title": "Back"})).await;
        let rows = settled(&app, &publication).await;
        assert_eq!(sms_rows(&rows), vec![&(fay.did.clone(), "sms".to_string(), "sent".to_string())]);
        let last = twilio.messages().last().unwrap().clone();
        assert_eq!(last.to, "+14155552671");
        assert!(last.body.starts_with("Riverside: Back"), "{}", last.body);
    }

    async fn start_also_lifts_a_carrier_unsubscribe_the_dispatcher_recorded(backend) {
        let with = With { twilio: true, deliver: true, ..With::default() };
        let (app, _) = app_with(backend, with).await;
        let community = app.identity("community");
        let jo = app.identity("jo");
        routed(&app, &community, &jo, &["sms"]).await;
        verified_sms(&app, &jo, "+14155552672").await;
        let twilio = app.providers.twilio.as_ref().unwrap();
        twilio.fail_next(herald::sandbox::twilio::Fault::Unsubscribed);
        let publication = publish_item(&app, &community, json!({"id": "u1", "title": "Refused"})).await;
        assert_eq!(settled(&app, &publication).await[0].2, "cancelled");
        assert_eq!(contact_states(&app, &jo).await, vec![("sms".into(), "disabled".into())]);

        let (status, _, _) = post_twilio(&app, Some(TWILIO_TOKEN), "+14155552672", "start").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(contact_states(&app, &jo).await, vec![("sms".into(), "verified".into())]);
        let publication = publish_item(&app, &community, json!({"id": "u2", "title": "Welcome back"})).await;
        assert_eq!(settled(&app, &publication).await[0].2, "sent");
        let last = twilio.messages().last().unwrap().body.clone();
        assert!(last.starts_with("Riverside: Welcome back"), "{last}");
    }

    async fn a_stop_between_publish_and_delivery_cancels_the_sms(backend) {
        let (mut app, _) = app_with(backend, With { twilio: true, ..With::default() }).await;
        let community = app.identity("community");
        let gus = app.identity("gus");
        routed(&app, &community, &gus, &["sms"]).await;
        verified_sms(&app, &gus, "+447911123456").await;
        let publication = publish_item(&app, &community, json!({"id": "q1", "title": "Queued"})).await;
        let (status, _, _) = post_twilio(&app, Some(TWILIO_TOKEN), "+447911123456", "UNSUBSCRIBE").await;
        assert_eq!(status, StatusCode::OK);
        app.deliver = true;
        app.restart().await;
        let twilio = app.providers.twilio.as_ref().unwrap();
        let before = twilio.messages().len();
        assert_eq!(settled(&app, &publication).await[0].2, "cancelled");
        assert_eq!(twilio.messages().len(), before);
    }

    async fn every_seed_004_language_leaves_and_joins_by_sms_and_is_answered_in_it(backend) {
        let (app, _) = app_with(backend, With { twilio: true, ..With::default() }).await;
        let number = "+4915123456789";
        let cases = [
            ("STOP", "START", Language::En),
            ("goodbye", "hello", Language::En),
            ("Kwaheri", "Habari", Language::En),
            ("再见", "你好", Language::En),
            ("ADIÓS", "HOLA", Language::Es),
            ("adios", "Hola", Language::Es),
            ("AUREVOIR", "BONJOUR", Language::Fr),
            ("quitter", "allô", Language::Fr),
            ("TSCHÜSS", "HALLO", Language::De),
            ("tschüß", "hallo", Language::De),
        ];
        for (leave, join, language) in cases {
            let (status, _, body) = post_twilio(&app, Some(TWILIO_TOKEN), number, leave).await;
            assert_eq!(status, StatusCode::OK, "{leave}");
            assert_eq!(twiml_message(&body), Some(reply(&app, ComplianceReply::SmsStopped, language)), "{leave}");
            assert!(app.vault().sms_opted_out(number).await.unwrap(), "{leave}");
            let (status, _, body) = post_twilio(&app, Some(TWILIO_TOKEN), number, join).await;
            assert_eq!(status, StatusCode::OK, "{join}");
            assert_eq!(twiml_message(&body), Some(reply(&app, ComplianceReply::SmsStarted, language)), "{join}");
            assert!(!app.vault().sms_opted_out(number).await.unwrap(), "{join}");
        }
        for (help, language) in [("HELP", Language::En), ("Ayuda", Language::Es), ("aide", Language::Fr), ("HILFE", Language::De)] {
            let (_, _, body) = post_twilio(&app, Some(TWILIO_TOKEN), number, help).await;
            let text = twiml_message(&body).unwrap();
            assert_eq!(text, reply(&app, ComplianceReply::SmsHelp, language));
            assert!(text.contains("STOP") && text.ends_with("http://herald.test"), "{text}");
        }
        // Chatter is not answered, and changes nothing.
        let (status, _, body) = post_twilio(&app, Some(TWILIO_TOKEN), number, "Hello, is the garden open?").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(twiml_message(&body), None);
        assert!(body.contains("<Response></Response>"), "{body}");
        assert_eq!(app.metrics().inbound_count("twilio", "other", "ignored"), 1);
        assert_eq!(app.metrics().inbound_count("twilio", "stop", "opted_out"), 10);
        assert_eq!(app.metrics().inbound_count("twilio", "start", "opted_in"), 10);
    }

    async fn a_forged_twilio_request_or_a_malformed_sender_changes_nothing(backend) {
        let (app, _) = app_with(backend, With { twilio: true, ..With::default() }).await;
        let number = "+33612345678";
        let (status, _, body) = post_twilio(&app, Some("not-the-auth-token"), number, "STOP").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["error"], "InvalidSignature");
        let (status, _, body) = post_twilio(&app, None, number, "STOP").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["error"], "AuthenticationRequired");
        assert!(!app.vault().sms_opted_out(number).await.unwrap());

        for sender in ["+1555", "33612345678", "Herald", ""] {
            let (status, _, body) = post_twilio(&app, Some(TWILIO_TOKEN), sender, "STOP").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{sender:?}");
            let error: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(error["error"], "InvalidRequest");
            assert!(error["message"].as_str().unwrap().starts_with("sender: phone number"), "{error}");
        }
        assert_eq!(app.metrics().inbound_count("twilio", "other", "rejected"), 2);
        assert_eq!(app.metrics().inbound_count("twilio", "other", "invalid"), 4);
    }

    async fn an_opted_out_number_gets_no_code_and_no_delivery_even_if_verified_later(backend) {
        let (app, _) = app_with(backend, With { twilio: true, ..With::default() }).await;
        let hana = app.identity("hana");
        let number = "+61412345678";
        post_twilio(&app, Some(TWILIO_TOKEN), number, "STOP").await;
        let twilio = app.providers.twilio.as_ref().unwrap();
        let before = twilio.messages().len();
        let (status, error) = app.call(Some(&hana), ADD, Some(json!({"channel": "sms", "address": "+61 412 345 678"})), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error["error"], "NumberOptedOut", "{error}");
        assert!(error["message"].as_str().unwrap().contains("START"));
        assert_eq!(twilio.messages().len(), before, "no code goes to a number that said STOP");

        // An operator import verifies it anyway: it is still never delivered to.
        app.vault().import_verified_contact(&hana.did, Channel::Sms, number).await.unwrap();
        assert!(app.vault().reachable(std::slice::from_ref(&hana.did)).await.unwrap().is_empty());
        assert!(app.vault().targets(&hana.did, Channel::Sms).await.unwrap().is_empty());

        post_twilio(&app, Some(TWILIO_TOKEN), number, "Unstop").await;
        assert_eq!(app.vault().reachable(std::slice::from_ref(&hana.did)).await.unwrap(),
            vec![(hana.did.clone(), Channel::Sms)]);
        assert_eq!(app.vault().targets(&hana.did, Channel::Sms).await.unwrap().len(), 1);
    }

    async fn an_opt_out_is_kept_without_the_number_and_metrics_name_no_one(backend) {
        let (app, _) = app_with(backend, With { twilio: true, ..With::default() }).await;
        let number = "+447911123457";
        post_twilio(&app, Some(TWILIO_TOKEN), number, "STOP").await;
        assert!(app.vault().sms_opted_out(number).await.unwrap());
        let dump = match backend {
            herald::settings::Backend::Sqlite => {
                let mut bytes = Vec::new();
                for entry in std::fs::read_dir(app.dir.path()).unwrap() {
                    let path = entry.unwrap().path();
                    if path.extension().is_none_or(|e| e != "key") {
                        bytes.extend(std::fs::read(&path).unwrap_or_default());
                    }
                }
                String::from_utf8_lossy(&bytes).to_string()
            }
            herald::settings::Backend::Postgres => {
                sqlx::any::install_default_drivers();
                let pool = sqlx::AnyPool::connect(&app.vault_url).await.unwrap();
                let rows: Vec<String> = sqlx::query_scalar("SELECT CAST(t AS TEXT) FROM sms_opt_outs t")
                    .fetch_all(&pool).await.unwrap();
                pool.close().await;
                assert_eq!(rows.len(), 1);
                rows.join("\n")
            }
        };
        assert!(!dump.is_empty());
        for secret in ["447911123457", "7911123457"] {
            assert!(!dump.contains(secret), "{secret} found in plaintext at rest");
        }
        let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("herald_inbound_events_total{source=\"twilio\",kind=\"stop\",outcome=\"opted_out\"} 1"), "{metrics}");
        assert!(!metrics.contains("7911123457"));
    }

    async fn vonage_keywords_are_taken_only_with_a_valid_fresh_signature_and_answered_by_sms(backend) {
        let (app, _) = app_with(backend, With { vonage: true, ..With::default() }).await;
        let number = "+447911123456";
        let vonage = app.providers.vonage.as_ref().unwrap();

        let (status, error) = post_vonage(&app, "forged-secret", now(), "447911123456", "STOP").await;
        assert_eq!((status, error["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("InvalidSignature")));
        let (status, error) = post_vonage(&app, VONAGE_SIGNATURE_SECRET, now() - 600, "447911123456", "STOP").await;
        assert_eq!((status, error["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("InvalidSignature")));
        assert!(!app.vault().sms_opted_out(number).await.unwrap());
        assert!(vonage.messages().is_empty());

        let (status, _) = post_vonage(&app, VONAGE_SIGNATURE_SECRET, now(), "447911123456", "Tschüss").await;
        assert_eq!(status, StatusCode::OK);
        assert!(app.vault().sms_opted_out(number).await.unwrap());
        let answer = wait_for_vonage(&app, 1).await;
        assert_eq!(answer.to, "447911123456");
        assert_eq!(answer.text, reply(&app, ComplianceReply::SmsStopped, Language::De));
        assert_eq!(app.metrics().inbound_count("vonage", "stop", "opted_out"), 1);

        let (status, _) = post_vonage(&app, VONAGE_SIGNATURE_SECRET, now(), "447911123456", "Bonjour").await;
        assert_eq!(status, StatusCode::OK);
        assert!(!app.vault().sms_opted_out(number).await.unwrap());
        assert_eq!(wait_for_vonage(&app, 2).await.text, reply(&app, ComplianceReply::SmsStarted, Language::Fr));

        let (status, error) = post_vonage(&app, VONAGE_SIGNATURE_SECRET, now(), "12", "STOP").await;
        assert_eq!((status, error["error"].as_str()), (StatusCode::BAD_REQUEST, Some("InvalidRequest")));
    }

    async fn telegram_stop_quiets_the_chat_and_a_bare_start_brings_it_back(backend) {
        let with = With { telegram: true, deliver: true, ..With::default() };
        let mut app = spawn_app_with(backend, with).await;
        let community = app.identity("community");
        let ivy = app.identity("ivy");
        routed(&app, &community, &ivy, &["inbox", "telegram"]).await;
        verified_telegram(&app, &ivy, 4242).await;
        let telegram = app.providers.telegram.as_ref().unwrap();

        telegram_text(&app, 4242, "/stop", Some("es")).await;
        let answer = telegram.sent().last().unwrap().clone();
        assert_eq!(answer.chat_id, 4242);
        assert_eq!(answer.text, reply(&app, ComplianceReply::TelegramStopped, Language::Es));
        assert_eq!(contact_states(&app, &ivy).await, vec![("telegram".into(), "disabled".into())]);
        assert_eq!(app.metrics().inbound_count("telegram", "stop", "stopped"), 1);

        let before = telegram.sent().len();
        let publication = publish_item(&app, &community, json!({"id": "t1", "title": "Hush"})).await;
        assert!(settled(&app, &publication).await.is_empty(), "a stopped chat is not even queued");
        assert_eq!(telegram.sent().len(), before);
        assert_eq!(app.inbox(&ivy).await, vec!["t1"]);

        app.restart().await;
        assert_eq!(contact_states(&app, &ivy).await, vec![("telegram".into(), "disabled".into())]);
        let telegram = app.providers.telegram.as_ref().unwrap();
        telegram_text(&app, 4242, "/start", None).await;
        assert_eq!(telegram.sent().last().unwrap().text, reply(&app, ComplianceReply::TelegramResumed, Language::En));
        assert_eq!(contact_states(&app, &ivy).await, vec![("telegram".into(), "verified".into())]);
        let publication = publish_item(&app, &community, json!({"id": "t2", "title": "Hello again"})).await;
        assert_eq!(settled(&app, &publication).await[0].2, "sent");
        assert!(telegram.sent().last().unwrap().text.contains("Hello again"));

        // A bare /start from a chat with nothing stopped is not answered.
        let before = telegram.sent().len();
        telegram_text(&app, 5151, "/start", None).await;
        assert_eq!(telegram.sent().len(), before);
    }
}

async fn wait_for_vonage(app: &TestApp, n: usize) -> herald::sandbox::vonage::SmsMessage {
    let vonage = app.providers.vonage.as_ref().unwrap();
    for _ in 0..400 {
        if vonage.messages().len() >= n {
            return vonage.messages()[n - 1].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!(
        "Vonage received {} answers, not {n}",
        vonage.messages().len()
    );
}
