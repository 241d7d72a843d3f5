//! The Vonage SMS adapter against the local server that speaks Vonage's SMS API: what it
//! received, field by field, and every failure mode — HTTP errors, and the per-message
//! statuses Vonage reports inside an HTTP 200 — mapped to the `SendError` kind the dispatcher
//! acts on, without the number, the API key or the API secret in any error text.

use std::time::{Duration, Instant};

use herald::channels::vonage::{MAX_CLIENT_REF, VonageSender};
use herald::channels::{SendError, Sent};
use herald::sandbox::vonage::{Fault, Vonage};
use secrecy::SecretString;
use url::Url;

mod support;
use support::{CLIENT_TIMEOUT, HANG, assert_reveals_none, texts, unreachable_url};

const API_KEY: &str = "a1b2c3d4";
const API_SECRET: &str = "vonage-secret-9Qx7";
const FROM: &str = "Herald";
const TO: &str = "+447700900123";
const TO_DIGITS: &str = "447700900123";

/// The recipient, the key and the secret, in the forms they could leak in.
const SECRETS: &[&str] = &[TO, TO_DIGITS, "7700900123", API_KEY, API_SECRET];

fn sender(api: Url, secret: &str) -> VonageSender {
    VonageSender::new(api, API_KEY, SecretString::from(secret.to_string()), FROM)
        .unwrap()
        .with_timeout(CLIENT_TIMEOUT)
}

async fn vonage() -> (Vonage, VonageSender) {
    let server = Vonage::start(API_KEY, API_SECRET).await.unwrap();
    let sender = sender(server.url(), API_SECRET);
    (server, sender)
}

fn fields(form: &[(String, String)]) -> Vec<(&str, &str)> {
    form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test]
async fn an_sms_is_posted_as_vonage_form_fields_with_the_key_as_client_ref() {
    let (server, sender) = vonage().await;
    let text = "Your code is 123456. Reply STOP to opt out.";
    let sent = sender.send(TO, text, Some("delivery-1")).await.unwrap();

    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message.message_ids.len(), 1);
    assert_eq!(
        sent,
        Sent {
            provider_id: Some(message.message_ids[0].clone())
        }
    );
    assert_eq!(message.to, TO_DIGITS);
    assert_eq!(message.from, FROM);
    assert_eq!(message.text, text);
    assert_eq!(message.client_ref.as_deref(), Some("delivery-1"));
    assert_eq!(message.message_type, None);
    assert_eq!(
        message.headers["content-type"],
        "application/x-www-form-urlencoded"
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/sms/json");
    assert_eq!((requests[0].status, &requests[0].statuses), (200, &vec![0]));
    assert_eq!(
        fields(&requests[0].form),
        vec![
            ("api_key", API_KEY),
            ("api_secret", API_SECRET),
            ("from", FROM),
            ("to", TO_DIGITS),
            ("text", text),
            ("client-ref", "delivery-1"),
        ]
    );
    // Credentials travel in the body only.
    assert!(!requests[0].headers.contains_key("authorization"));
}

#[tokio::test]
async fn without_an_idempotency_key_no_client_ref_is_sent() {
    let (server, sender) = vonage().await;
    sender.send(TO, "hello", None).await.unwrap();
    let form = &server.requests()[0].form;
    assert!(form.iter().all(|(k, _)| k != "client-ref"), "{form:?}");
    assert_eq!(server.messages()[0].client_ref, None);
}

#[tokio::test]
async fn an_idempotency_key_longer_than_vonage_accepts_is_sent_as_a_stable_hash() {
    let (server, sender) = vonage().await;
    let key = "d".repeat(MAX_CLIENT_REF + 20);
    sender.send(TO, "hello", Some(&key)).await.unwrap();
    sender.send(TO, "hello", Some(&key)).await.unwrap();
    let messages = server.messages();
    assert_eq!(messages.len(), 2, "Vonage does not deduplicate");
    let first = messages[0].client_ref.clone().unwrap();
    assert_eq!(first.len(), 64);
    assert_eq!(messages[1].client_ref.as_deref(), Some(first.as_str()));
}

#[tokio::test]
async fn a_text_outside_gsm7_is_sent_as_unicode_and_gsm_extensions_are_not() {
    let (server, sender) = vonage().await;
    sender
        .send(TO, "Réunion ce soir 🎉 会议", None)
        .await
        .unwrap();
    sender
        .send(TO, "Price: 5€ [members] {free} ~ ^ | \\", None)
        .await
        .unwrap();
    let messages = server.messages();
    assert_eq!(messages[0].message_type.as_deref(), Some("unicode"));
    assert_eq!(messages[0].text, "Réunion ce soir 🎉 会议");
    assert_eq!(messages[1].message_type, None);
    assert_eq!(messages[1].text, "Price: 5€ [members] {free} ~ ^ | \\");
}

#[tokio::test]
async fn a_long_text_split_into_parts_is_sent_with_the_first_parts_id() {
    let (server, sender) = vonage().await;
    let text = "Community update: ".repeat(20); // 360 GSM-7 characters: 3 parts
    let sent = sender.send(TO, &text, Some("delivery-2")).await.unwrap();
    let message = &server.messages()[0];
    assert_eq!(message.message_ids.len(), 3);
    assert_eq!(sent.provider_id.as_ref(), Some(&message.message_ids[0]));
    assert_eq!(server.requests()[0].statuses, vec![0, 0, 0]);
}

#[tokio::test]
async fn a_long_text_with_one_refused_part_is_not_sent() {
    let (server, sender) = vonage().await;
    server.fail_next(Fault::PartStatus { part: 2, status: 1 });
    let text = "x".repeat(400);
    let err = sender.send(TO, &text, None).await.unwrap_err();
    let SendError::Transient { reason, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        reason.contains("part 2 of 3") && reason.contains("status 1"),
        "{reason}"
    );
    assert_eq!(server.requests()[0].statuses, vec![0, 1, 0]);
    assert!(server.messages().is_empty());
    assert_reveals_none(&err, SECRETS);
}

#[tokio::test]
async fn a_barred_or_deactivated_number_is_gone() {
    let (server, sender) = vonage().await;
    for status in [7, 33] {
        server.fail_next(Fault::VonageStatus(status));
        let err = sender.send(TO, "hello", None).await.unwrap_err();
        let SendError::Gone { reason } = &err else {
            panic!("{status}: {err:?}")
        };
        assert!(reason.contains(&format!("status {status}")), "{reason}");
        assert_reveals_none(&err, SECRETS);
    }
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn every_vonage_status_maps_to_its_kind_without_echoing_vonages_text() {
    let (server, sender) = vonage().await;
    let transient = [1, 5, 9, 10];
    let permanent = [2, 3, 4, 6, 8, 11, 12, 14, 15, 22, 23, 29, 32, 42];
    for status in transient.into_iter().chain(permanent) {
        server.fail_next(Fault::VonageStatus(status));
        let err = sender.send(TO, "hello", None).await.unwrap_err();
        if transient.contains(&status) {
            assert!(
                matches!(
                    err,
                    SendError::Transient {
                        retry_after: None,
                        ..
                    }
                ),
                "{status}: {err:?}"
            );
        } else {
            assert!(
                matches!(err, SendError::Permanent { .. }),
                "{status}: {err:?}"
            );
        }
        assert!(
            texts(&err).contains(&format!("status {status}:")),
            "{err:?}"
        );
        // The sandbox's error-text quotes the number for several statuses (as Vonage's
        // parameter errors quote values); none of it may come through.
        assert_reveals_none(&err, SECRETS);
        assert!(!texts(&err).contains("rejected"), "{err:?}");
    }
    assert!(server.messages().is_empty());
    // The server answered every one of them inside an HTTP 200.
    assert!(server.requests().iter().all(|r| r.status == 200));
}

#[tokio::test]
async fn an_invalid_number_is_permanent_and_the_reason_never_echoes_it() {
    let (server, sender) = vonage().await;
    let bad = "+4479";
    let err = sender.send(bad, "hello", None).await.unwrap_err();
    let SendError::Permanent { reason } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("status 3"), "{reason}");
    // Vonage's (the sandbox's) error-text names the number; the reason must not.
    assert_eq!(server.requests()[0].statuses, vec![3]);
    assert_reveals_none(&err, &[bad, "4479", API_KEY, API_SECRET]);
}

#[tokio::test]
async fn an_empty_text_is_refused_as_missing_and_permanent() {
    let (server, sender) = vonage().await;
    let err = sender.send(TO, "", None).await.unwrap_err();
    assert_eq!(
        err,
        SendError::permanent("vonage refused the message, status 2: missing parameters")
    );
    assert_eq!(server.requests()[0].statuses, vec![2]);
}

#[tokio::test]
async fn wrong_vonage_credentials_are_permanent_and_never_echo_the_secret() {
    let server = Vonage::start(API_KEY, API_SECRET).await.unwrap();
    let sender = sender(server.url(), "not-the-secret");
    let err = sender.send(TO, "hello", None).await.unwrap_err();
    let SendError::Permanent { reason } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("status 4"), "{reason}");
    assert_eq!(server.requests()[0].statuses, vec![4]);
    assert_reveals_none(
        &err,
        &[TO, TO_DIGITS, API_KEY, API_SECRET, "not-the-secret"],
    );
    let debug = format!("{sender:?}");
    assert!(
        !debug.contains("not-the-secret") && !debug.contains(API_KEY),
        "{debug}"
    );
}

#[tokio::test]
async fn vonage_http_rate_limits_are_transient_with_their_retry_after() {
    let (server, sender) = vonage().await;
    server.fail_next(Fault::RateLimited {
        retry_after_secs: 42,
    });
    let err = sender.send(TO, "hello", None).await.unwrap_err();
    assert_eq!(
        err,
        SendError::Transient {
            reason: "vonage answered HTTP 429".into(),
            retry_after: Some(Duration::from_secs(42)),
        }
    );
    // The next request goes through.
    assert!(sender.send(TO, "hello", None).await.is_ok());
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test]
async fn vonage_server_errors_are_transient_and_client_errors_permanent() {
    let (server, sender) = vonage().await;
    for (status, transient) in [
        (500, true),
        (502, true),
        (503, true),
        (400, false),
        (401, false),
        (404, false),
    ] {
        server.fail_next(Fault::Status(status));
        let err = sender.send(TO, "hello", None).await.unwrap_err();
        if transient {
            assert_eq!(
                err,
                SendError::Transient {
                    reason: format!("vonage answered HTTP {status}"),
                    retry_after: None,
                },
            );
        } else {
            assert_eq!(
                err,
                SendError::permanent(format!("vonage answered HTTP {status}"))
            );
        }
        assert_reveals_none(&err, SECRETS);
    }
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn a_hanging_vonage_times_out_as_transient() {
    let (server, sender) = vonage().await;
    server.fail_next(Fault::Hang(HANG));
    let started = Instant::now();
    let err = sender.send(TO, "hello", None).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(err, SendError::transient("vonage request timed out"));
}

#[tokio::test]
async fn an_unreachable_vonage_is_transient() {
    let sender = sender(unreachable_url().await, API_SECRET);
    let err = sender.send(TO, "hello", None).await.unwrap_err();
    assert_eq!(
        err,
        SendError::transient("vonage request could not connect")
    );
}
