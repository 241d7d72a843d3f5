//! The SMS, Telegram and web push adapters against the local servers that speak Twilio's,
//! the Bot API's and a push service's wire formats: what each server received, field by field,
//! and every failure mode mapped to the `SendError` kind the dispatcher acts on — without an
//! address, chat id, endpoint or credential in any error text.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use herald::channels::sms::SmsSender;
use herald::channels::telegram::{self, TelegramBot, Update};
use herald::channels::webpush::{self, MAX_PAYLOAD, Urgency, WebPushSender};
use herald::channels::{SendError, Sent};
use herald::model::PushSubscription;
use herald::sandbox::push::{self, Browser, PushService};
use herald::sandbox::telegram::{self as tg, Telegram};
use herald::sandbox::twilio::{self, Twilio};
use secrecy::SecretString;
use serde_json::json;
use url::Url;

mod support;
use support::{CLIENT_TIMEOUT, HANG, assert_reveals_none, texts, unreachable_url};

// ---------------------------------------------------------------------------------------
// SMS through the Twilio Messages API
// ---------------------------------------------------------------------------------------

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-auth-token-7f3a";
const FROM: &str = "+15005550006";
const TO: &str = "+14155552671";

fn sms_sender(api: Url, token: &str) -> SmsSender {
    SmsSender::new(api, SID, SecretString::from(token.to_string()), FROM)
        .unwrap()
        .with_timeout(CLIENT_TIMEOUT)
}

async fn twilio() -> (Twilio, SmsSender) {
    let server = Twilio::start(SID, AUTH_TOKEN).await.unwrap();
    let sender = sms_sender(server.url(), AUTH_TOKEN);
    (server, sender)
}

/// The recipient, the account and its token, in the forms they could leak in.
const SMS_SECRETS: &[&str] = &[TO, "14155552671", SID, AUTH_TOKEN];

#[tokio::test]
async fn an_sms_is_posted_as_twilio_form_fields_with_basic_auth() {
    let (server, sender) = twilio().await;
    let sent = sender
        .send(
            TO,
            "Your code is 123456. Reply STOP to opt out.",
            Some("delivery-1"),
        )
        .await
        .unwrap();

    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(
        sent,
        Sent {
            provider_id: Some(message.sid.clone())
        }
    );
    assert!(message.sid.starts_with("SM"));
    assert_eq!(message.to, TO);
    assert_eq!(message.from, FROM);
    assert_eq!(message.body, "Your code is 123456. Reply STOP to opt out.");
    let expected_auth = format!("Basic {}", STANDARD.encode(format!("{SID}:{AUTH_TOKEN}")));
    assert_eq!(message.headers["authorization"], expected_auth.as_str());
    assert_eq!(
        message.headers["content-type"],
        "application/x-www-form-urlencoded"
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    let fields: Vec<(&str, &str)> = requests[0]
        .form
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("To", TO),
            ("From", FROM),
            ("Body", "Your code is 123456. Reply STOP to opt out."),
        ]
    );
    // Twilio's Messages API has no idempotency key, so none is invented.
    assert!(
        requests[0]
            .headers
            .keys()
            .all(|name| !name.as_str().contains("idempotency"))
    );
}

#[tokio::test]
async fn an_sms_to_a_number_that_replied_stop_is_gone() {
    let (server, sender) = twilio().await;
    server.fail_next(twilio::Fault::Unsubscribed);
    let err = sender.send(TO, "hello", None).await.unwrap_err();
    let SendError::Gone { reason } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("21610"), "{reason}");
    assert_reveals_none(&err, SMS_SECRETS);
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn an_sms_to_an_invalid_number_is_permanent_and_the_reason_never_echoes_it() {
    let (server, sender) = twilio().await;
    let bad = "+4479";
    let err = sender.send(bad, "hello", None).await.unwrap_err();
    let SendError::Permanent { reason } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("21211"), "{reason}");
    // Twilio's own message names the number; the reason must not.
    assert_eq!(server.requests()[0].status, 400);
    assert_reveals_none(&err, &[bad, "4479", SID, AUTH_TOKEN]);
}

#[tokio::test]
async fn twilio_rate_limits_are_transient_with_their_retry_after() {
    let (server, sender) = twilio().await;
    server.fail_next(twilio::Fault::RateLimited {
        retry_after_secs: 42,
    });
    let err = sender.send(TO, "hello", None).await.unwrap_err();
    assert!(
        matches!(&err, SendError::Transient { retry_after: Some(d), reason }
            if *d == Duration::from_secs(42) && reason.contains("20429")),
        "{err:?}"
    );
    assert_reveals_none(&err, SMS_SECRETS);
    // The next request goes through.
    assert!(sender.send(TO, "hello", None).await.is_ok());
}

#[tokio::test]
async fn twilio_server_errors_are_transient_and_client_errors_permanent() {
    let (server, sender) = twilio().await;
    for (status, transient) in [(500, true), (503, true), (404, false), (400, false)] {
        server.fail_next(twilio::Fault::Status(status));
        let err = sender.send(TO, "hello", None).await.unwrap_err();
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
        assert!(texts(&err).contains(&status.to_string()));
        assert_reveals_none(&err, SMS_SECRETS);
    }
}

#[tokio::test]
async fn wrong_twilio_credentials_are_permanent_and_never_echo_the_token() {
    let server = Twilio::start(SID, AUTH_TOKEN).await.unwrap();
    let sender = sms_sender(server.url(), "not-the-token");
    let err = sender.send(TO, "hello", None).await.unwrap_err();
    let SendError::Permanent { reason } = &err else {
        panic!("{err:?}")
    };
    assert!(
        reason.contains("401") && reason.contains("20003"),
        "{reason}"
    );
    assert_reveals_none(&err, &[TO, SID, AUTH_TOKEN, "not-the-token"]);
    assert!(!format!("{sender:?}").contains("not-the-token"));
}

#[tokio::test]
async fn a_hanging_sms_gateway_times_out_as_transient() {
    let (server, sender) = twilio().await;
    server.fail_next(twilio::Fault::Hang(HANG));
    let started = Instant::now();
    let err = sender.send(TO, "hello", None).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(err, SendError::transient("twilio request timed out"));
}

#[tokio::test]
async fn an_unreachable_sms_gateway_is_transient() {
    let sender = sms_sender(unreachable_url().await, AUTH_TOKEN);
    let err = sender.send(TO, "hello", None).await.unwrap_err();
    assert_eq!(
        err,
        SendError::transient("twilio request could not connect")
    );
}

// ---------------------------------------------------------------------------------------
// Telegram Bot API
// ---------------------------------------------------------------------------------------

const BOT_TOKEN: &str = "7100000001:AAH-sandbox_secret_part";
const BOT_NAME: &str = "herald_test_bot";
const CHAT: i64 = 987_654_321;

fn bot(api: Url, token: &str) -> TelegramBot {
    TelegramBot::new(
        api,
        SecretString::from(token.to_string()),
        Some(BOT_NAME.into()),
    )
    .unwrap()
    .with_timeout(CLIENT_TIMEOUT)
}

async fn telegram() -> (Telegram, TelegramBot) {
    let server = Telegram::start_named(BOT_TOKEN, BOT_NAME).await.unwrap();
    let bot = bot(server.url(), BOT_TOKEN);
    (server, bot)
}

const TELEGRAM_SECRETS: &[&str] = &[BOT_TOKEN, "AAH-sandbox_secret_part", "987654321"];

#[tokio::test]
async fn a_telegram_message_is_sent_as_json_and_returns_its_message_id() {
    let (server, bot) = telegram().await;
    let sent = bot
        .send_message(CHAT, "Connected to Herald ✓")
        .await
        .unwrap();
    let messages = server.sent();
    assert_eq!(
        messages,
        vec![tg::TelegramMessage {
            message_id: 1,
            chat_id: CHAT,
            text: "Connected to Herald ✓".into()
        }]
    );
    assert_eq!(sent.provider_id.as_deref(), Some("1"));
    let request = &server.requests()[0];
    assert_eq!(request.method, "sendMessage");
    assert!(request.authorized);
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        request.params,
        json!({"chat_id": CHAT, "text": "Connected to Herald ✓"})
    );
}

#[tokio::test]
async fn a_blocked_bot_a_deactivated_user_or_a_missing_chat_is_gone() {
    let (server, bot) = telegram().await;
    for (fault, description) in [
        (tg::Fault::Blocked, "Forbidden: bot was blocked by the user"),
        (tg::Fault::Deactivated, "Forbidden: user is deactivated"),
        (tg::Fault::ChatNotFound, "Bad Request: chat not found"),
    ] {
        server.fail_next(fault);
        let err = bot.send_message(CHAT, "hello").await.unwrap_err();
        let SendError::Gone { reason } = &err else {
            panic!("{err:?}")
        };
        assert!(reason.ends_with(description), "{reason}");
        assert_reveals_none(&err, TELEGRAM_SECRETS);
    }
    assert!(server.sent().is_empty());
}

#[tokio::test]
async fn telegram_flood_control_is_transient_with_retry_after_from_its_parameters() {
    let (server, bot) = telegram().await;
    server.fail_next(tg::Fault::RateLimited {
        retry_after_secs: 9,
    });
    let err = bot.send_message(CHAT, "hello").await.unwrap_err();
    assert_eq!(
        err,
        SendError::Transient {
            reason: "telegram answered 429: Too Many Requests: retry after 9".into(),
            retry_after: Some(Duration::from_secs(9)),
        }
    );
}

#[tokio::test]
async fn telegram_server_errors_are_transient_and_bad_requests_permanent() {
    let (server, bot) = telegram().await;
    server.fail_next(tg::Fault::Status(502));
    let err = bot.send_message(CHAT, "hello").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_reveals_none(&err, TELEGRAM_SECRETS);

    let err = bot.send_message(CHAT, &"x".repeat(4097)).await.unwrap_err();
    assert_eq!(
        err,
        SendError::permanent("telegram answered 400: Bad Request: message is too long")
    );
}

#[tokio::test]
async fn a_wrong_bot_token_is_permanent_and_never_appears_in_errors_or_debug() {
    let server = Telegram::start_named(BOT_TOKEN, BOT_NAME).await.unwrap();
    let wrong = "7100000001:AAH-wrong_secret";
    let bot = bot(server.url(), wrong);
    let err = bot.send_message(CHAT, "hello").await.unwrap_err();
    assert_eq!(
        err,
        SendError::permanent("telegram answered 401: Unauthorized")
    );
    assert!(!server.requests()[0].authorized);
    assert!(!format!("{bot:?}").contains("wrong_secret"));
}

#[tokio::test]
async fn telegram_timeouts_and_refused_connections_are_transient_without_the_token() {
    let (server, bot) = telegram().await;
    server.fail_next(tg::Fault::Hang(HANG));
    let err = bot.send_message(CHAT, "hello").await.unwrap_err();
    assert_eq!(err, SendError::transient("telegram request timed out"));

    let bot = self::bot(unreachable_url().await, BOT_TOKEN);
    let err = bot.send_message(CHAT, "hello").await.unwrap_err();
    assert_eq!(
        err,
        SendError::transient("telegram request could not connect")
    );
    assert_reveals_none(&err, TELEGRAM_SECRETS);
}

#[tokio::test]
async fn get_me_reports_the_bot_behind_the_token() {
    let (_server, bot) = telegram().await;
    let me = bot.get_me().await.unwrap();
    assert_eq!(me.id, 7_100_000_001);
    assert!(me.is_bot);
    assert_eq!(me.username.as_deref(), Some(BOT_NAME));
}

#[tokio::test]
async fn a_pairing_link_comes_back_as_a_start_update_carrying_its_token() {
    let (_server, bot) = telegram().await;
    let link = bot.pairing_link("pair_Tok-3n").unwrap();
    assert_eq!(link, format!("https://t.me/{BOT_NAME}?start=pair_Tok-3n"));
    let token = link.rsplit('=').next().unwrap();

    let raw = Telegram::start_update(1, CHAT, "private", &format!("/start {token}"));
    let update: Update = serde_json::from_value(raw).unwrap();
    let message = update.message.unwrap();
    assert_eq!(
        (message.chat.id, message.chat.kind.as_str()),
        (CHAT, "private")
    );
    assert_eq!(message.from.unwrap().id, CHAT);
    let text = message.text.unwrap();
    assert_eq!(telegram::start_payload(&text), Some("pair_Tok-3n"));

    let raw = Telegram::start_update(2, -100_777, "group", &format!("/start@{BOT_NAME} {token}"));
    let update: Update = serde_json::from_value(raw).unwrap();
    let message = update.message.unwrap();
    assert_eq!(message.chat.kind, "group");
    assert_ne!(message.from.unwrap().id, -100_777);
    assert_eq!(
        bot.start_payload_for(&message.text.unwrap()),
        Some("pair_Tok-3n")
    );
}

// ---------------------------------------------------------------------------------------
// Web Push
// ---------------------------------------------------------------------------------------

fn push_sender() -> WebPushSender {
    WebPushSender::new(&webpush::generate_vapid_key(), "mailto:ops@herald.test")
        .and_then(|sender| sender.allowing_private(true))
        .unwrap()
        .with_timeout(CLIENT_TIMEOUT)
}

/// The subscription's endpoint, its capability path and its keys.
fn push_secrets(sub: &PushSubscription) -> Vec<String> {
    let id = sub.endpoint.rsplit('/').next().unwrap().to_string();
    vec![
        sub.endpoint.clone(),
        id,
        sub.keys.p256dh.clone(),
        sub.keys.auth.clone(),
    ]
}

fn assert_push_reveals_none(err: &SendError, sub: &PushSubscription) {
    let secrets = push_secrets(sub);
    assert_reveals_none(err, &secrets.iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_push_arrives_encrypted_with_vapid_and_decrypts_to_the_same_bytes() {
    let service = PushService::start().await.unwrap();
    let sender = push_sender();
    let browser = Browser::new();
    let sub = browser.subscription_with_key(&service, &sender.public_key_b64url());
    let payload = br#"{"type":"community.herald.contact.verify","code":"123456"}"#;

    let before = chrono::Utc::now().timestamp();
    let sent = sender
        .send_with_urgency(&sub, payload, Duration::from_secs(600), Urgency::High)
        .await
        .unwrap();

    let messages = service.messages();
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(sent.provider_id.as_deref(), Some(message.location.as_str()));
    assert_eq!(message.ttl, 600);
    assert_eq!(message.urgency.as_deref(), Some("high"));
    assert_eq!(message.headers["content-encoding"], "aes128gcm");
    assert_eq!(message.headers["content-type"], "application/octet-stream");
    assert_eq!(message.vapid.aud, service.origin());
    assert_eq!(message.vapid.sub, "mailto:ops@herald.test");
    assert_eq!(message.vapid.key, sender.public_key_b64url());
    let ahead = message.vapid.exp - before;
    assert!((12 * 3600 - 5..=12 * 3600 + 5).contains(&ahead), "{ahead}");
    // What the service holds is ciphertext; only the browser's keys open it.
    assert!(!message.body.windows(6).any(|w| w == b"123456"));
    assert_eq!(service.received_for(&browser), vec![payload.to_vec()]);
    assert!(
        service
            .try_received_for(&Browser::new())
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_push_without_urgency_sends_no_urgency_header_and_the_largest_payload_fits() {
    let service = PushService::start().await.unwrap();
    let sender = push_sender();
    let browser = Browser::new();
    let sub = browser.subscription(&service);
    let payload = vec![b'a'; MAX_PAYLOAD];
    sender
        .send(&sub, &payload, Duration::from_secs(30))
        .await
        .unwrap();
    let message = &service.messages()[0];
    assert_eq!(message.urgency, None);
    assert_eq!(message.body.len(), 4096);
    assert_eq!(service.received_for(&browser), vec![payload]);
}

#[tokio::test]
async fn an_expired_or_unknown_push_subscription_is_gone() {
    let service = PushService::start().await.unwrap();
    let sender = push_sender();
    let browser = Browser::new();
    let sub = browser.subscription(&service);

    service.unsubscribe(&browser);
    let err = sender
        .send(&sub, b"hi", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SendError::Gone { reason } if reason.contains("410")),
        "{err:?}"
    );
    assert_push_reveals_none(&err, &sub);

    let never_registered = PushSubscription {
        endpoint: format!("{}/push/0123456789abcdef", service.origin()),
        keys: sub.keys.clone(),
    };
    let err = sender
        .send(&never_registered, b"hi", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SendError::Gone { reason } if reason.contains("404")),
        "{err:?}"
    );
    assert_push_reveals_none(&err, &never_registered);

    let live = Browser::new();
    let sub = live.subscription(&service);
    for fault in [push::Fault::Gone, push::Fault::NotFound] {
        service.fail_next(fault);
        let err = sender
            .send(&sub, b"hi", Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Gone { .. }), "{err:?}");
        assert_push_reveals_none(&err, &sub);
    }
    assert!(service.messages().is_empty());
}

#[tokio::test]
async fn push_rate_limits_are_transient_with_retry_after() {
    let service = PushService::start().await.unwrap();
    let sender = push_sender();
    let sub = Browser::new().subscription(&service);
    service.fail_next(push::Fault::RateLimited {
        retry_after_secs: 120,
    });
    let err = sender
        .send(&sub, b"hi", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SendError::Transient { retry_after: Some(d), .. } if *d == Duration::from_secs(120)),
        "{err:?}"
    );
    assert_push_reveals_none(&err, &sub);
}

#[tokio::test]
async fn an_oversized_push_is_permanent() {
    let service = PushService::start().await.unwrap();
    let sender = push_sender();
    let sub = Browser::new().subscription(&service);

    let err = sender
        .send(&sub, &vec![0u8; MAX_PAYLOAD + 1], Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
    assert!(service.requests().is_empty(), "refused before any request");

    service.fail_next(push::Fault::Status(413));
    let err = sender
        .send(&sub, b"hi", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SendError::Permanent { reason } if reason.contains("413")),
        "{err:?}"
    );
    assert_push_reveals_none(&err, &sub);
}

#[tokio::test]
async fn a_push_signed_with_another_vapid_key_is_refused_as_permanent() {
    let service = PushService::start().await.unwrap();
    let browser = Browser::new();
    let sub = browser.subscription_with_key(&service, &push_sender().public_key_b64url());
    let err = push_sender()
        .send(&sub, b"hi", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SendError::Permanent { reason } if reason.contains("403")),
        "{err:?}"
    );
    assert_eq!(service.requests()[0].status, 403);
    assert_push_reveals_none(&err, &sub);
}

#[tokio::test]
async fn push_server_errors_timeouts_and_refused_connections_are_transient() {
    let service = PushService::start().await.unwrap();
    let sender = push_sender();
    let sub = Browser::new().subscription(&service);

    service.fail_next(push::Fault::Status(503));
    let err = sender
        .send(&sub, b"hi", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_push_reveals_none(&err, &sub);

    service.fail_next(push::Fault::Hang(HANG));
    let err = sender
        .send(&sub, b"hi", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(err, SendError::transient("push request timed out"));

    let gone_host = PushSubscription {
        endpoint: format!("{}push/abc", unreachable_url().await),
        keys: sub.keys.clone(),
    };
    let err = sender
        .send(&gone_host, b"hi", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(err, SendError::transient("push request could not connect"));
}

#[tokio::test]
async fn a_subscription_with_broken_keys_is_refused_without_a_request() {
    let service = PushService::start().await.unwrap();
    let sub = Browser::new().subscription(&service);
    let broken = PushSubscription {
        endpoint: sub.endpoint.clone(),
        keys: herald::model::PushKeys {
            p256dh: URL_SAFE_NO_PAD.encode([4u8; 65]),
            auth: sub.keys.auth.clone(),
        },
    };
    let err = push_sender()
        .send(&broken, b"hi", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
    assert_push_reveals_none(&err, &broken);
    assert!(service.requests().is_empty());
}

#[tokio::test]
async fn a_push_to_a_loopback_endpoint_is_refused_unless_private_addresses_are_allowed() {
    let service = PushService::start().await.unwrap();
    let guarded = WebPushSender::new(&webpush::generate_vapid_key(), "mailto:ops@herald.test")
        .unwrap()
        .with_timeout(CLIENT_TIMEOUT);
    let browser = Browser::new();
    let sub = browser.subscription_with_key(&service, &guarded.public_key_b64url());
    // The same service reached by name: the resolver, not the URL check, must refuse it.
    let by_name = PushSubscription {
        endpoint: sub.endpoint.replace("127.0.0.1", "localhost"),
        keys: sub.keys.clone(),
    };
    assert_ne!(by_name.endpoint, sub.endpoint);

    for target in [&sub, &by_name] {
        let err = guarded
            .send(target, b"hi", Duration::from_secs(60))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            SendError::permanent("push endpoint refused: its address is not public"),
            "{}",
            target.endpoint
        );
        assert_push_reveals_none(&err, target);
    }
    assert!(service.messages().is_empty(), "nothing reached the service");

    let allowed = guarded.allowing_private(true).unwrap();
    allowed
        .send(&sub, b"hi", Duration::from_secs(60))
        .await
        .expect("allowed for a local service");
    assert_eq!(service.received_for(&browser), vec![b"hi".to_vec()]);
}
