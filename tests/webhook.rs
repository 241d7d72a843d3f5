//! The webhook adapter against the local Standard Webhooks receiver: what arrives (headers,
//! exact body, a signature the receiver verifies), every answer mapped to the `SendError` kind
//! the dispatcher acts on, the refusal of non-public addresses before any connection, and no
//! endpoint URL or secret in any error text.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use herald::channels::webhook::{
    self, DEFAULT_TOLERANCE, WebhookError, WebhookSecret, WebhookSender,
};
use herald::channels::{SendError, Sent};
use herald::sandbox::webhook::{Fault, WebhookReceiver};
use serde_json::{Value, json};
use url::Url;

mod support;
use support::{CLIENT_TIMEOUT, HANG, assert_reveals_none, texts, unreachable_url};

/// A token a receiver might put in its own URL: it must never surface in an error.
const PATH_TOKEN: &str = "p4th-t0ken-5e1f";
const QUERY_TOKEN: &str = "qu3ry-t0ken-77ab";

struct Setup {
    receiver: WebhookReceiver,
    sender: WebhookSender,
    secret: WebhookSecret,
    /// The receiver's endpoint with tokens in its path and query.
    url: Url,
}

async fn setup() -> Setup {
    let secret = WebhookSecret::generate();
    let receiver = WebhookReceiver::start(secret.clone()).await;
    let mut url = receiver.url();
    url.set_path(&format!("/hook/{PATH_TOKEN}"));
    url.set_query(Some(&format!("token={QUERY_TOKEN}")));
    let sender = WebhookSender::new(true)
        .unwrap()
        .with_timeout(CLIENT_TIMEOUT);
    Setup {
        receiver,
        sender,
        secret,
        url,
    }
}

impl Setup {
    /// Everything of the endpoint and the secret, in the forms they could leak in.
    fn secrets(&self) -> Vec<String> {
        let exposed = self.secret.expose();
        let key = exposed.trim_start_matches("whsec_").to_string();
        vec![
            PATH_TOKEN.to_string(),
            QUERY_TOKEN.to_string(),
            self.url.as_str().to_string(),
            self.url.authority().to_string(),
            exposed,
            key,
        ]
    }

    fn assert_reveals_none(&self, err: &SendError) {
        let secrets = self.secrets();
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        assert_reveals_none(err, &secrets);
    }

    async fn send(&self, id: &str) -> Result<Sent, SendError> {
        self.sender
            .send(&self.url, &self.secret, id, &payload())
            .await
    }
}

fn payload() -> Value {
    json!({
        "type": "community.herald.notification",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "data": {
            "community": "did:plc:community",
            "title": "Meeting moved",
            "body": "Thursday, 19:00 — \"room 2\"",
            "tags": ["a", "b"],
        },
    })
}

#[tokio::test]
async fn a_delivery_arrives_signed_with_the_standard_webhooks_headers() {
    let s = setup().await;
    let before = chrono::Utc::now().timestamp();
    let sent = s.send("dlv_01J9ZQ4S3M6Y2V8K7N5R0T1W3X").await.unwrap();
    let after = chrono::Utc::now().timestamp();
    assert_eq!(
        sent,
        Sent {
            provider_id: Some("dlv_01J9ZQ4S3M6Y2V8K7N5R0T1W3X".into())
        }
    );

    let deliveries = s.receiver.deliveries();
    assert_eq!(deliveries.len(), 1);
    let d = &deliveries[0];
    assert!(d.verified, "the receiver could not verify {d:?}");
    assert_eq!(d.status, 204);
    assert_eq!(d.path, format!("/hook/{PATH_TOKEN}"));
    assert_eq!(d.id, "dlv_01J9ZQ4S3M6Y2V8K7N5R0T1W3X");
    assert_eq!(d.headers["webhook-id"], "dlv_01J9ZQ4S3M6Y2V8K7N5R0T1W3X");
    assert!(
        (before..=after).contains(&d.timestamp),
        "{} not in {before}..={after}",
        d.timestamp
    );
    assert_eq!(
        d.headers["webhook-timestamp"],
        d.timestamp.to_string().as_str()
    );
    assert_eq!(d.headers["content-type"], "application/json");
    // The body is the payload, compact, and exactly the bytes the signature covers.
    assert_eq!(d.body, payload());
    assert_eq!(
        &d.raw[..],
        serde_json::to_vec(&payload()).unwrap().as_slice()
    );
    let signature = d.headers["webhook-signature"].to_str().unwrap();
    assert_eq!(
        signature,
        webhook::sign(&s.secret, &d.id, d.timestamp, &d.raw)
    );
    assert!(signature.starts_with("v1,"), "{signature}");
    // What a receiver runs, with the secret as its owner was shown it.
    let as_shown = WebhookSecret::parse(&s.secret.expose()).unwrap();
    webhook::verify(&as_shown, &d.headers, &d.raw, after, DEFAULT_TOLERANCE).unwrap();
    // …and a receiver holding another secret refuses it.
    assert!(matches!(
        webhook::verify(
            &WebhookSecret::generate(),
            &d.headers,
            &d.raw,
            after,
            DEFAULT_TOLERANCE
        ),
        Err(WebhookError::InvalidSignature)
    ));
}

#[tokio::test]
async fn a_retried_delivery_keeps_its_webhook_id_for_the_receiver_to_dedupe_on() {
    let s = setup().await;
    s.receiver.fail_next(Fault::Status(503));
    let err = s.send("dlv_retry").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    s.send("dlv_retry").await.unwrap();
    s.send("dlv_other").await.unwrap();

    let ids: Vec<String> = s.receiver.deliveries().into_iter().map(|d| d.id).collect();
    assert_eq!(ids, ["dlv_retry", "dlv_retry", "dlv_other"]);
    assert!(s.receiver.deliveries().iter().all(|d| d.verified));
    let accepted: Vec<String> = s.receiver.accepted().into_iter().map(|d| d.id).collect();
    assert_eq!(accepted, ["dlv_retry", "dlv_other"]);
}

#[tokio::test]
async fn a_receiver_with_another_secret_refuses_and_that_is_permanent() {
    let s = setup().await;
    let wrong = WebhookSecret::generate();
    let err = s
        .sender
        .send(&s.url, &wrong, "dlv_1", &payload())
        .await
        .unwrap_err();
    let SendError::Permanent { reason } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("401"), "{reason}");
    s.assert_reveals_none(&err);
    // The receiver's answer body ("signature did not verify") is not passed on.
    assert!(!texts(&err).contains("did not verify"), "{err:?}");
    let deliveries = s.receiver.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert!(!deliveries[0].verified);
    assert!(s.receiver.accepted().is_empty());
}

#[tokio::test]
async fn gone_means_the_endpoint_asked_to_stop() {
    let s = setup().await;
    s.receiver.fail_next(Fault::Gone);
    let err = s.send("dlv_1").await.unwrap_err();
    let SendError::Gone { reason } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("410"), "{reason}");
    s.assert_reveals_none(&err);
    assert_eq!(s.receiver.deliveries()[0].status, 410);
}

#[tokio::test]
async fn rate_limits_are_transient_with_their_retry_after() {
    let s = setup().await;
    s.receiver.fail_next(Fault::RateLimited {
        retry_after_secs: 42,
    });
    let err = s.send("dlv_1").await.unwrap_err();
    assert!(
        matches!(&err, SendError::Transient { retry_after: Some(d), reason }
            if *d == Duration::from_secs(42) && reason.contains("429")),
        "{err:?}"
    );
    s.assert_reveals_none(&err);
    // The next attempt goes through.
    assert!(s.send("dlv_1").await.is_ok());
}

#[tokio::test]
async fn server_errors_and_request_timeouts_are_transient_client_errors_permanent() {
    let s = setup().await;
    for (status, transient) in [
        (500, true),
        (502, true),
        (503, true),
        (504, true),
        (408, true),
        (400, false),
        (401, false),
        (404, false),
        (413, false),
    ] {
        s.receiver.fail_next(Fault::Status(status));
        let err = s.send("dlv_1").await.unwrap_err();
        if transient {
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
        assert!(texts(&err).contains(&status.to_string()), "{err:?}");
        s.assert_reveals_none(&err);
    }
    assert_eq!(s.receiver.len(), 9);
}

#[tokio::test]
async fn redirects_are_permanent_and_not_followed() {
    let s = setup().await;
    for status in [301, 302, 307, 308] {
        s.receiver.fail_next(Fault::Status(status));
        let err = s.send("dlv_1").await.unwrap_err();
        let SendError::Permanent { reason } = &err else {
            panic!("{status}: {err:?}")
        };
        assert!(reason.contains("redirected"), "{reason}");
        s.assert_reveals_none(&err);
    }
    // Following the `Location: /moved` would have shown up as requests to /moved.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let paths: Vec<String> = s
        .receiver
        .deliveries()
        .into_iter()
        .map(|d| d.path)
        .collect();
    assert_eq!(paths.len(), 4, "{paths:?}");
    assert!(paths.iter().all(|p| p.starts_with("/hook/")), "{paths:?}");
}

#[tokio::test]
async fn a_hanging_endpoint_times_out_as_transient() {
    let s = setup().await;
    s.receiver.fail_next(Fault::Hang(HANG));
    let started = Instant::now();
    let err = s.send("dlv_1").await.unwrap_err();
    assert!(started.elapsed() < HANG, "waited {:?}", started.elapsed());
    let SendError::Transient { reason, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("timed out"), "{reason}");
    s.assert_reveals_none(&err);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_transient() {
    let s = setup().await;
    let mut url = unreachable_url().await.join("hook").unwrap();
    url.set_query(Some(&format!("token={QUERY_TOKEN}")));
    let err = s
        .sender
        .send(&url, &s.secret, "dlv_1", &payload())
        .await
        .unwrap_err();
    let SendError::Transient { reason, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("could not connect"), "{reason}");
    assert_reveals_none(&err, &[QUERY_TOKEN, url.as_str(), url.authority()]);
}

/// A loopback listener that counts the connections it gets (and closes them).
async fn connection_counter() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (port, count)
}

#[tokio::test]
async fn without_allow_private_loopback_endpoints_are_refused_before_any_connection() {
    let s = setup().await;
    let (port, connections) = connection_counter().await;
    let strict = WebhookSender::new(false)
        .unwrap()
        .with_timeout(CLIENT_TIMEOUT);
    let endpoints = [
        // IP literals: reqwest never asks a resolver, so they are checked before sending.
        s.url.clone(),
        Url::parse(&format!(
            "https://127.0.0.1:{port}/hook?token={QUERY_TOKEN}"
        ))
        .unwrap(),
        Url::parse(&format!("https://[::1]:{port}/hook?token={QUERY_TOKEN}")).unwrap(),
        Url::parse(&format!("https://[::ffff:127.0.0.1]:{port}/hook")).unwrap(),
        Url::parse(&format!("https://2130706433:{port}/hook")).unwrap(),
        // A name: refused by the resolver (localhost is 127.0.0.1 here).
        Url::parse(&format!(
            "https://localhost:{port}/hook/{PATH_TOKEN}?token={QUERY_TOKEN}"
        ))
        .unwrap(),
        Url::parse(&format!("http://localhost:{}/hook", s.url.port().unwrap())).unwrap(),
    ];
    for url in &endpoints {
        let err = strict
            .send(url, &s.secret, "dlv_1", &payload())
            .await
            .unwrap_err();
        let SendError::Permanent { reason } = &err else {
            panic!("{url}: {err:?}")
        };
        assert!(reason.contains("not public"), "{url}: {reason}");
        s.assert_reveals_none(&err);
        assert_reveals_none(&err, &[url.as_str(), url.authority()]);
    }
    // Give a connection that slipped through time to be counted.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 0);
    assert!(s.receiver.is_empty(), "{:?}", s.receiver.deliveries());
    // The same endpoints are also refused at registration.
    assert!(matches!(
        webhook::parse_endpoint(endpoints[1].as_str(), false),
        Err(WebhookError::PrivateAddress)
    ));
    assert!(webhook::parse_endpoint(s.url.as_str(), false).is_err());
    assert_eq!(
        webhook::parse_endpoint(s.url.as_str(), true).unwrap(),
        s.url
    );
}

#[tokio::test]
async fn an_invalid_delivery_id_is_refused_without_a_request() {
    let s = setup().await;
    for id in ["", "has.dot", "has space"] {
        let err = s.send(id).await.unwrap_err();
        assert!(
            matches!(err, SendError::Permanent { .. }),
            "{id:?}: {err:?}"
        );
    }
    assert!(s.receiver.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_takes_thousands_of_concurrent_deliveries_quickly() {
    const N: usize = 2_000;
    let s = setup().await;
    let started = Instant::now();
    let results: Vec<Result<Sent, SendError>> = futures_util::stream::iter(0..N)
        .map(|i| {
            let s = &s;
            async move { s.send(&format!("dlv_{i}")).await }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let elapsed = started.elapsed();
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    let deliveries = s.receiver.wait_for(N, Duration::from_secs(10)).await;
    assert_eq!(deliveries.len(), N);
    assert!(deliveries.iter().all(|d| d.verified && d.status == 204));
    let mut ids: Vec<&str> = deliveries.iter().map(|d| d.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), N, "every id once");
    // Generous for a loaded 2-core machine; typically well under a second.
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
}
