//! The Resend email adapter against the local server speaking Resend's wire format
//! (`herald::sandbox::resend`): what the server received, field by field and header by header;
//! that a retried delivery is one email thanks to `Idempotency-Key`; and every failure mode
//! mapped to the `SendError` kind the dispatcher acts on — without the recipient address or
//! the API key in any error text.

use std::time::{Duration, Instant};

use herald::channels::email::OutgoingEmail;
use herald::channels::resend::{ResendConfigError, ResendSender};
use herald::channels::{SendError, Sent};
use herald::sandbox::resend::{Fault, ReceivedEmail, Resend};
use herald::settings::{ProviderSettings, ResendSettings};
use secrecy::SecretString;
use serde_json::json;
use url::Url;

mod support;
use support::{CLIENT_TIMEOUT, HANG, assert_reveals_none, texts, unreachable_url};

const API_KEY: &str = "re_Sandbox_9f2c7e1d4b";
const FROM: &str = "Herald <noreply@herald.test>";
const TO: &str = "member@example.org";

/// The recipient and the key, in the forms they could leak in.
const SECRETS: &[&str] = &[TO, "member@", API_KEY, "9f2c7e1d4b"];

fn sender(api: Url, key: &str) -> ResendSender {
    ResendSender::new(api, SecretString::from(key.to_string()), FROM)
        .unwrap()
        .with_timeout(CLIENT_TIMEOUT)
}

async fn resend() -> (Resend, ResendSender) {
    let server = Resend::start(API_KEY).await.unwrap();
    let sender = sender(server.url(), API_KEY);
    (server, sender)
}

fn email(key: Option<&str>) -> OutgoingEmail {
    OutgoingEmail {
        to: TO.into(),
        subject: "New in Rust Paris: meetup on Thursday".into(),
        text: "Rust Paris meets on Thursday at 19:00.".into(),
        html: Some("<p>Rust Paris meets on <b>Thursday</b> at 19:00.</p>".into()),
        headers: vec![
            (
                "List-Unsubscribe".into(),
                "<https://herald.test/unsubscribe/abc>, <mailto:unsubscribe@herald.test>".into(),
            ),
            (
                "List-Unsubscribe-Post".into(),
                "List-Unsubscribe=One-Click".into(),
            ),
            ("Precedence".into(), "bulk".into()),
        ],
        idempotency_key: key.map(str::to_string),
    }
}

/// Waits until the server has no idempotent request in progress.
async fn settled(server: &Resend) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.in_progress() > 0 {
        assert!(Instant::now() < deadline, "the sandbox never settled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_email_is_posted_as_resend_json_with_every_field_and_header() {
    let (server, sender) = resend().await;
    let sent = sender.send(&email(Some("delivery-42"))).await.unwrap();

    let emails = server.emails();
    assert_eq!(emails.len(), 1);
    let received = &emails[0];
    assert_eq!(
        sent,
        Sent {
            provider_id: Some(received.id.clone())
        }
    );
    assert_eq!(
        received,
        &ReceivedEmail {
            id: received.id.clone(),
            from: FROM.into(),
            to: vec![TO.into()],
            subject: "New in Rust Paris: meetup on Thursday".into(),
            text: Some("Rust Paris meets on Thursday at 19:00.".into()),
            html: Some("<p>Rust Paris meets on <b>Thursday</b> at 19:00.</p>".into()),
            headers: [
                (
                    "List-Unsubscribe",
                    "<https://herald.test/unsubscribe/abc>, <mailto:unsubscribe@herald.test>",
                ),
                ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
                ("Precedence", "bulk"),
            ]
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
            idempotency_key: Some("delivery-42".into()),
        }
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/emails")
    );
    assert_eq!(request.status, 200);
    assert_eq!(
        request.headers["authorization"],
        format!("Bearer {API_KEY}").as_str()
    );
    assert_eq!(request.headers["content-type"], "application/json");
    assert_eq!(request.headers["idempotency-key"], "delivery-42");
    // Exactly Resend's documented fields, and no Message-ID: Resend assigns its own.
    assert_eq!(
        request.body,
        json!({
            "from": FROM,
            "to": [TO],
            "subject": "New in Rust Paris: meetup on Thursday",
            "text": "Rust Paris meets on Thursday at 19:00.",
            "html": "<p>Rust Paris meets on <b>Thursday</b> at 19:00.</p>",
            "headers": {
                "List-Unsubscribe":
                    "<https://herald.test/unsubscribe/abc>, <mailto:unsubscribe@herald.test>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "Precedence": "bulk",
            },
        })
    );
}

#[tokio::test]
async fn a_plain_text_email_without_a_key_sends_neither_html_nor_an_idempotency_key() {
    let (server, sender) = resend().await;
    let plain = OutgoingEmail {
        to: format!("Member <{TO}>"),
        subject: "Hello".into(),
        text: "Plain text only.".into(),
        ..Default::default()
    };
    let sent = sender.send(&plain).await.unwrap();
    let request = &server.requests()[0];
    assert_eq!(
        request.body,
        json!({"from": FROM, "to": [format!("Member <{TO}>")], "subject": "Hello",
               "text": "Plain text only."})
    );
    assert!(request.headers.get("idempotency-key").is_none());
    let received = &server.emails()[0];
    assert_eq!(sent.provider_id.as_deref(), Some(received.id.as_str()));
    assert_eq!(
        (
            received.html.as_deref(),
            received.idempotency_key.as_deref()
        ),
        (None, None)
    );
}

#[tokio::test]
async fn a_retried_delivery_with_the_same_key_is_one_email_with_one_id() {
    let (server, sender) = resend().await;
    let first = sender.send(&email(Some("delivery-7"))).await.unwrap();
    let second = sender.send(&email(Some("delivery-7"))).await.unwrap();
    assert_eq!(first, second);
    assert!(first.provider_id.is_some());
    assert_eq!(server.emails().len(), 1);
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 200]);

    // A different delivery is a different email.
    let third = sender.send(&email(Some("delivery-8"))).await.unwrap();
    assert_ne!(third, first);
    assert_eq!(server.emails().len(), 2);
}

#[tokio::test]
async fn a_delivery_retried_after_a_timeout_is_sent_once() {
    let (server, sender) = resend().await;
    server.fail_next(Fault::Hang(Duration::from_secs(1)));
    let started = Instant::now();
    let err = sender
        .send(&email(Some("delivery-timeout")))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(err, SendError::transient("resend request timed out"));

    // Whether or not the server finished the first request after the client gave up, the
    // retry with the same key leaves exactly one email, and reports its id.
    settled(&server).await;
    let sent = sender.send(&email(Some("delivery-timeout"))).await.unwrap();
    let emails = server.emails();
    assert_eq!(emails.len(), 1);
    assert_eq!(sent.provider_id.as_deref(), Some(emails[0].id.as_str()));
}

#[tokio::test]
async fn a_repeat_while_the_first_is_in_progress_is_transient_and_the_first_wins() {
    let server = Resend::start(API_KEY).await.unwrap();
    let sender = ResendSender::new(server.url(), SecretString::from(API_KEY), FROM)
        .unwrap()
        .with_timeout(Duration::from_secs(10));
    server.fail_next(Fault::Hang(Duration::from_millis(500)));
    let first = tokio::spawn({
        let sender = sender.clone();
        async move { sender.send(&email(Some("delivery-race"))).await }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.in_progress() == 0 {
        assert!(Instant::now() < deadline, "the first request never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let err = sender
        .send(&email(Some("delivery-race")))
        .await
        .unwrap_err();
    let SendError::Transient { reason, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        reason.starts_with("resend answered HTTP 409 concurrent_idempotent_requests"),
        "{reason}"
    );
    assert_reveals_none(&err, SECRETS);

    let sent = first.await.unwrap().unwrap();
    let again = sender.send(&email(Some("delivery-race"))).await.unwrap();
    assert_eq!(sent, again);
    assert_eq!(server.emails().len(), 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_permanent() {
    let (server, sender) = resend().await;
    sender.send(&email(Some("delivery-9"))).await.unwrap();
    let mut changed = email(Some("delivery-9"));
    changed.subject = "Rescheduled".into();
    let err = sender.send(&changed).await.unwrap_err();
    let SendError::Permanent { reason } = &err else {
        panic!("{err:?}")
    };
    assert!(
        reason.starts_with("resend answered HTTP 409 invalid_idempotent_request"),
        "{reason}"
    );
    assert_reveals_none(&err, SECRETS);
    assert_eq!(server.emails().len(), 1);
}

#[tokio::test]
async fn rate_limits_are_transient_with_their_retry_after() {
    let (server, sender) = resend().await;
    server.fail_next(Fault::RateLimited {
        retry_after_secs: 42,
    });
    let err = sender.send(&email(None)).await.unwrap_err();
    assert_eq!(
        err,
        SendError::Transient {
            reason: "resend answered HTTP 429 rate_limit_exceeded: too many requests".into(),
            retry_after: Some(Duration::from_secs(42)),
        }
    );
    assert!(server.emails().is_empty());
    // The next request goes through.
    assert!(sender.send(&email(None)).await.is_ok());
    assert_eq!(server.emails().len(), 1);
}

#[tokio::test]
async fn quotas_are_transient_with_a_long_wait_so_the_caller_can_fail_over() {
    let (server, sender) = resend().await;
    for (fault, name, wait) in [
        (Fault::DailyQuota, "daily_quota_exceeded", 60 * 60),
        (Fault::MonthlyQuota, "monthly_quota_exceeded", 24 * 60 * 60),
    ] {
        server.fail_next(fault);
        let err = sender.send(&email(None)).await.unwrap_err();
        let SendError::Transient {
            reason,
            retry_after,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert!(reason.contains(name), "{reason}");
        assert_eq!(retry_after, &Some(Duration::from_secs(wait)));
        assert_reveals_none(&err, SECRETS);
    }
    assert!(server.emails().is_empty());
}

#[tokio::test]
async fn server_errors_are_transient_and_client_errors_permanent() {
    let (server, sender) = resend().await;
    for (status, name, transient) in [
        (500, "internal_server_error", true),
        (502, "application_error", true),
        (503, "application_error", true),
        (409, "concurrent_idempotent_requests", true),
        (400, "validation_error", false),
        (404, "not_found", false),
        (422, "validation_error", false),
        (451, "security_error", false),
    ] {
        server.fail_next(Fault::Status(status));
        let err = sender.send(&email(Some("delivery-1"))).await.unwrap_err();
        assert_eq!(err.is_transient(), transient, "{status}: {err:?}");
        if transient {
            assert!(
                matches!(
                    err,
                    SendError::Transient {
                        retry_after: None,
                        ..
                    }
                ),
                "{err:?}"
            );
        } else {
            assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
        }
        assert!(
            texts(&err).contains(&format!("HTTP {status} {name}")),
            "{err:?}"
        );
        assert_reveals_none(&err, SECRETS);
    }
    assert!(server.emails().is_empty());
}

#[tokio::test]
async fn a_validation_error_is_permanent_and_never_echoes_resends_message() {
    let (server, sender) = resend().await;
    server.fail_next(Fault::Validation);
    let err = sender.send(&email(None)).await.unwrap_err();
    assert_eq!(
        err,
        SendError::permanent(
            "resend answered HTTP 422 validation_error: the request was refused as invalid"
        )
    );
    assert_reveals_none(&err, SECRETS);
    assert_eq!(server.requests()[0].status, 422);
    assert!(server.emails().is_empty());
}

#[tokio::test]
async fn a_wrong_api_key_is_permanent_and_never_echoed() {
    let server = Resend::start(API_KEY).await.unwrap();
    let wrong = "re_Wrong_5ecret_key";
    let sender = sender(server.url(), wrong);
    let err = sender.send(&email(None)).await.unwrap_err();
    assert_eq!(
        err,
        SendError::permanent(
            "resend answered HTTP 403 invalid_api_key: the API key is invalid (check \
             HERALD_RESEND_API_KEY)"
        )
    );
    assert_reveals_none(&err, &[TO, wrong, "5ecret", API_KEY]);
    assert!(!format!("{sender:?}").contains("5ecret"));
    assert_eq!(server.requests()[0].status, 403);
    assert!(server.emails().is_empty());
}

#[tokio::test]
async fn a_wrong_api_path_is_permanent() {
    let server = Resend::start(API_KEY).await.unwrap();
    let sender = sender(server.url().join("v2/").unwrap(), API_KEY);
    let err = sender.send(&email(None)).await.unwrap_err();
    let SendError::Permanent { reason } = &err else {
        panic!("{err:?}")
    };
    assert!(
        reason.starts_with("resend answered HTTP 404 not_found"),
        "{reason}"
    );
    assert_eq!(server.requests()[0].path, "/v2/emails");
}

#[tokio::test]
async fn a_hanging_api_times_out_as_transient() {
    let (server, sender) = resend().await;
    server.fail_next(Fault::Hang(HANG));
    let started = Instant::now();
    let err = sender.send(&email(None)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(err, SendError::transient("resend request timed out"));
}

#[tokio::test]
async fn an_unreachable_api_is_transient() {
    let sender = sender(unreachable_url().await, API_KEY);
    let err = sender.send(&email(Some("delivery-1"))).await.unwrap_err();
    assert_eq!(
        err,
        SendError::transient("resend request could not connect")
    );
    assert_reveals_none(&err, SECRETS);
}

#[tokio::test]
async fn an_unsendable_email_is_refused_before_anything_is_sent() {
    let (server, sender) = resend().await;
    let mut bad_recipient = email(None);
    bad_recipient.to = "member@@example.org".into();
    let mut message_id = email(None);
    message_id
        .headers
        .push(("Message-ID".into(), "<x@herald.test>".into()));
    let mut injected = email(None);
    injected
        .headers
        .push(("Feedback-Id".into(), "x\r\nBcc: member@example.org".into()));
    for outgoing in [bad_recipient, message_id, injected] {
        let err = sender.send(&outgoing).await.unwrap_err();
        assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
        assert_reveals_none(&err, SECRETS);
    }
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn the_sender_built_from_settings_sends_through_the_configured_api() {
    let server = Resend::start(API_KEY).await.unwrap();
    let mut settings = ProviderSettings {
        email_from: FROM.into(),
        resend: ResendSettings {
            api_url: Some(server.url()),
            api_key: None,
        },
        ..Default::default()
    };
    assert!(ResendSender::from_settings(&settings).unwrap().is_none());
    settings.resend.api_key = Some(SecretString::from(API_KEY));
    let sender = ResendSender::from_settings(&settings).unwrap().unwrap();
    let sent = sender.send(&email(Some("delivery-s"))).await.unwrap();
    assert_eq!(
        sent.provider_id.as_deref(),
        Some(server.emails()[0].id.as_str())
    );

    settings.email_from = "not an address".into();
    assert!(matches!(
        ResendSender::from_settings(&settings),
        Err(ResendConfigError::InvalidFrom(_))
    ));
}
