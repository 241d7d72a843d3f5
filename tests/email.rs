//! The email adapter against a real SMTP server (aiosmtpd, started by
//! `herald::sandbox::smtp::SmtpServer`; install it with `scripts/test-deps`): what the server
//! received, how its refusals are classified, and how the adapter's connections are pooled
//! (counted by a TCP relay in front of the server).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use herald::channels::SendError;
use herald::channels::email::{EmailSender, OutgoingEmail};
use herald::sandbox::smtp::{SmtpServer, SmtpServerOptions};
use secrecy::SecretString;

/// Generous for a loopback server; a passing test takes milliseconds.
const WAIT: Duration = Duration::from_secs(5);
const FROM: &str = "Herald <noreply@herald.test>";

async fn server() -> SmtpServer {
    SmtpServer::start()
        .await
        .expect("start the SMTP test server")
}

fn sender_for(url: &str) -> EmailSender {
    EmailSender::new(&SecretString::from(url), FROM).expect("valid SMTP settings")
}

fn email(to: &str) -> OutgoingEmail {
    OutgoingEmail {
        to: to.into(),
        subject: "New in Rust Paris: meetup on Thursday".into(),
        text: "The next meetup is on Thursday.\nSee you there!".into(),
        ..Default::default()
    }
}

/// Line ends as written by the sender, whatever the transfer encoding did to them.
fn lf(s: &str) -> String {
    s.replace("\r\n", "\n").trim_end().to_string()
}

fn reason(err: &SendError) -> &str {
    match err {
        SendError::Transient { reason, .. }
        | SendError::Permanent { reason }
        | SendError::Gone { reason } => reason,
        SendError::Unavailable(_) => "",
    }
}

#[tokio::test]
async fn a_plain_text_email_arrives_with_its_headers() {
    let smtp = server().await;
    let sender = sender_for(&smtp.url());

    let sent = sender
        .send(&email("member@example.org"))
        .await
        .expect("sent");

    let got = smtp.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.mail_from, "noreply@herald.test");
    assert_eq!(m.rcpt_tos, vec!["member@example.org".to_string()]);
    assert_eq!(m.header("From").as_deref(), Some(FROM));
    assert_eq!(m.header("To").as_deref(), Some("member@example.org"));
    assert_eq!(
        m.subject().as_deref(),
        Some("New in Rust Paris: meetup on Thursday")
    );
    let message_id = m.header("Message-ID").expect("a Message-ID");
    assert_eq!(sent.provider_id.as_deref(), Some(message_id.as_str()));
    assert!(message_id.ends_with("@herald.test>"), "{message_id}");
    assert_eq!(
        m.header("Content-Type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(m.header("MIME-Version").as_deref(), Some("1.0"));
    assert!(m.header("Date").is_some());
    assert_eq!(
        lf(&m.text_body()),
        "The next meetup is on Thursday.\nSee you there!"
    );
    assert_eq!(m.html_body(), None);
}

#[tokio::test]
async fn an_email_with_html_is_multipart_alternative() {
    let smtp = server().await;
    let sender = sender_for(&smtp.url());
    let html = "<p>The next meetup is on <b>Thursday</b>.</p>";

    sender
        .send(&OutgoingEmail {
            html: Some(html.into()),
            ..email("member@example.org")
        })
        .await
        .expect("sent");

    let m = &smtp.wait_for(1, WAIT).await[0];
    let content_type = m.header("Content-Type").expect("a Content-Type");
    assert!(
        content_type.starts_with("multipart/alternative"),
        "{content_type}"
    );
    assert_eq!(
        lf(&m.text_body()),
        "The next meetup is on Thursday.\nSee you there!"
    );
    assert_eq!(m.html_body().as_deref().map(lf).as_deref(), Some(html));
}

#[tokio::test]
async fn extra_headers_arrive_verbatim() {
    let smtp = server().await;
    let sender = sender_for(&smtp.url());
    let unsubscribe =
        "<https://herald.test/u/abc123>, <mailto:unsubscribe@herald.test?subject=abc123>";

    sender
        .send(&OutgoingEmail {
            headers: vec![
                ("List-Unsubscribe".into(), unsubscribe.into()),
                (
                    "List-Unsubscribe-Post".into(),
                    "List-Unsubscribe=One-Click".into(),
                ),
                ("Precedence".into(), "bulk".into()),
                ("Feedback-Id".into(), "pipe:community:herald".into()),
            ],
            ..email("member@example.org")
        })
        .await
        .expect("sent");

    let m = &smtp.wait_for(1, WAIT).await[0];
    assert_eq!(m.header("List-Unsubscribe").as_deref(), Some(unsubscribe));
    assert!(
        m.raw
            .contains("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"),
        "{}",
        m.raw
    );
    assert_eq!(m.header("Precedence").as_deref(), Some("bulk"));
    assert_eq!(
        m.header("Feedback-Id").as_deref(),
        Some("pipe:community:herald")
    );
}

#[tokio::test]
async fn a_non_ascii_subject_and_body_round_trip() {
    let smtp = server().await;
    let sender = sender_for(&smtp.url());
    let subject = "Réunion du club — 日本語の件名 ✓";
    let text = "Grüße aus Köln, 你好 👋\nZweite Zeile: ça marche.";
    let html = "<p>Grüße — 你好 👋</p>";

    sender
        .send(&OutgoingEmail {
            subject: subject.into(),
            text: text.into(),
            ..email("member@example.org")
        })
        .await
        .expect("plain sent");
    sender
        .send(&OutgoingEmail {
            subject: subject.into(),
            text: text.into(),
            html: Some(html.into()),
            ..email("member@example.org")
        })
        .await
        .expect("multipart sent");

    let got = smtp.wait_for(2, WAIT).await;
    for m in &got {
        assert!(m.raw.is_ascii(), "headers and bodies are transfer-encoded");
        assert_eq!(m.subject().as_deref(), Some(subject));
        assert_eq!(lf(&m.text_body()), text);
    }
    assert_eq!(got[1].html_body().as_deref().map(lf).as_deref(), Some(html));
}

#[tokio::test]
async fn a_retried_delivery_carries_the_same_message_id() {
    let smtp = server().await;
    let sender = sender_for(&smtp.url());
    let delivery = OutgoingEmail {
        idempotency_key: Some("01JD8X4Q7ZK3M9N2P5R6S7T8V9".into()),
        ..email("member@example.org")
    };

    let first = sender.send(&delivery).await.expect("first");
    let second = sender.send(&delivery).await.expect("retry");

    let got = smtp.wait_for(2, WAIT).await;
    let expected = "<01JD8X4Q7ZK3M9N2P5R6S7T8V9@herald.test>";
    assert_eq!(first.provider_id.as_deref(), Some(expected));
    assert_eq!(second.provider_id.as_deref(), Some(expected));
    assert_eq!(got[0].header("Message-ID").as_deref(), Some(expected));
    assert_eq!(got[1].header("Message-ID").as_deref(), Some(expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_sends_over_the_pool_arrive_exactly_once() {
    let smtp = server().await;
    let sender = sender_for(&smtp.url());

    let sends = (0..50).map(|i| {
        let sender = sender.clone();
        tokio::spawn(async move {
            sender
                .send(&OutgoingEmail {
                    idempotency_key: Some(format!("delivery-{i}")),
                    ..email(&format!("member{i}@example.org"))
                })
                .await
        })
    });
    for result in futures_util::future::join_all(sends).await {
        result.expect("task").expect("sent");
    }
    // The server prints messages in the order it accepts them, so once this marker is in,
    // any duplicate of the fifty would be in too.
    sender
        .send(&email("marker@example.org"))
        .await
        .expect("marker");

    let got = smtp.wait_for(51, WAIT).await;
    assert_eq!(got.len(), 51);
    let ids: HashSet<String> = got[..50]
        .iter()
        .map(|m| m.header("Message-ID").expect("a Message-ID"))
        .collect();
    let expected: HashSet<String> = (0..50)
        .map(|i| format!("<delivery-{i}@herald.test>"))
        .collect();
    assert_eq!(ids, expected);
    for m in &got[..50] {
        let id = m.header("Message-ID").expect("a Message-ID");
        let i = id
            .trim_start_matches("<delivery-")
            .trim_end_matches("@herald.test>");
        assert_eq!(m.rcpt_tos, vec![format!("member{i}@example.org")]);
    }
    assert_eq!(got[50].rcpt_tos, vec!["marker@example.org".to_string()]);
}

#[tokio::test]
async fn a_4xx_reply_is_transient_and_its_reason_does_not_name_the_address() {
    let smtp = server().await;
    let sender = sender_for(&smtp.url());

    let err = sender
        .send(&email("fail4xx.member@example.org"))
        .await
        .expect_err("refused");

    assert!(
        matches!(err, SendError::Transient { .. }),
        "{err:?} should be transient"
    );
    assert!(reason(&err).contains("451 4.3.0"), "{err}");
    assert!(!err.to_string().contains("fail4xx"), "{err}");
    assert!(!err.to_string().contains("example.org"), "{err}");
}

#[tokio::test]
async fn a_bad_mailbox_reply_is_a_hard_bounce_and_its_reason_does_not_name_the_address() {
    let smtp = server().await;
    let sender = sender_for(&smtp.url());

    let err = sender
        .send(&email("fail5xx.member@example.org"))
        .await
        .expect_err("refused");

    assert!(
        matches!(err, SendError::Gone { .. }),
        "{err:?}: 5.1.1 means the mailbox does not exist, a hard bounce"
    );
    assert!(reason(&err).contains("550 5.1.1"), "{err}");
    assert!(!err.to_string().contains("fail5xx"), "{err}");
    assert!(!err.to_string().contains("example.org"), "{err}");
}

#[tokio::test]
async fn a_refused_recipient_does_not_spoil_the_pooled_connection() {
    let smtp = server().await;
    let sender = sender_for(&smtp.url());

    for _ in 0..3 {
        sender
            .send(&email("fail5xx@example.org"))
            .await
            .expect_err("refused");
        sender
            .send(&email("member@example.org"))
            .await
            .expect("delivered after a refusal");
    }

    let got = smtp.wait_for(3, WAIT).await;
    assert!(
        got.iter()
            .all(|m| m.rcpt_tos == vec!["member@example.org".to_string()])
    );
}

#[tokio::test]
async fn an_invalid_recipient_address_is_permanent() {
    let smtp = server().await;
    let sender = sender_for(&smtp.url());

    let err = sender
        .send(&email("no-at-sign.example.org"))
        .await
        .expect_err("refused");

    assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
    assert!(!err.to_string().contains("no-at-sign"), "{err}");
    assert!(smtp.messages().is_empty());
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    // A port that was free a moment ago: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let sender = sender_for(&format!("smtp://127.0.0.1:{port}"));

    let err = sender
        .send(&email("member@example.org"))
        .await
        .expect_err("nothing listening");

    assert!(err.is_transient(), "{err:?}");
    assert!(!err.to_string().contains("member"), "{err}");
}

#[tokio::test]
async fn credentials_in_the_url_authenticate_and_a_wrong_password_is_permanent() {
    let smtp = SmtpServer::start_with(SmtpServerOptions {
        auth: Some(("herald".into(), "s3cret-pässword".into())),
        ..Default::default()
    })
    .await
    .expect("start the SMTP test server");
    let port = smtp.port();

    let good = sender_for(&format!(
        "smtp://herald:s3cret-p%C3%A4ssword@127.0.0.1:{port}"
    ));
    good.send(&email("member@example.org"))
        .await
        .expect("authenticated send");
    assert_eq!(smtp.wait_for(1, WAIT).await.len(), 1);

    let bad = sender_for(&format!("smtp://herald:wrong-password@127.0.0.1:{port}"));
    let err = bad
        .send(&email("member@example.org"))
        .await
        .expect_err("bad credentials");
    assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
    assert!(reason(&err).contains("535"), "{err}");
    assert!(!err.to_string().contains("wrong-password"), "{err}");
    assert!(!format!("{bad:?}").contains("wrong-password"));
}

#[tokio::test]
async fn tls_required_refuses_a_server_without_starttls() {
    let smtp = server().await;
    let sender = sender_for(&format!("{}?tls=required", smtp.url()));

    let err = sender
        .send(&email("member@example.org"))
        .await
        .expect_err("no STARTTLS offered");

    assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
    assert!(reason(&err).contains("STARTTLS"), "{err}");
    assert!(smtp.messages().is_empty(), "nothing went out in plain text");
}

#[tokio::test]
async fn tls_required_upgrades_with_starttls_and_checks_the_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, UNTRUSTED_CERT).expect("write cert");
    std::fs::write(&key, UNTRUSTED_KEY).expect("write key");
    let smtp = SmtpServer::start_with(SmtpServerOptions {
        starttls: Some((cert, key)),
        ..Default::default()
    })
    .await
    .expect("start the SMTP test server");

    // The server offers STARTTLS with a self-signed certificate: the client must upgrade and
    // then refuse the certificate, never carry on in plain text.
    let err = sender_for(&format!("{}?tls=required", smtp.url()))
        .send(&email("member@example.org"))
        .await
        .expect_err("untrusted certificate");
    assert!(err.is_transient(), "{err:?}");
    assert!(
        reason(&err).contains("certificate was not accepted"),
        "{err}"
    );
    assert!(smtp.messages().is_empty());

    // Plain smtp:// does not upgrade, so the same server takes the message.
    sender_for(&smtp.url())
        .send(&email("member@example.org"))
        .await
        .expect("plain send");
    assert_eq!(smtp.wait_for(1, WAIT).await.len(), 1);
}

#[tokio::test]
async fn many_sends_over_one_sender_reuse_its_connections() {
    let smtp = server().await;
    let proxy = Proxy::start(smtp.port()).await;
    let sender = sender_for(&proxy.url());

    for i in 0..10 {
        sender
            .send(&email(&format!("member{i}@example.org")))
            .await
            .expect("sent");
    }
    assert_eq!(proxy.accepted(), 1, "one after another, one connection");

    for _wave in 0..3 {
        let sends = (0..8).map(|i| {
            let sender = sender.clone();
            tokio::spawn(async move { sender.send(&email(&format!("m{i}@example.org"))).await })
        });
        for result in futures_util::future::join_all(sends).await {
            result.expect("task").expect("sent");
        }
    }
    assert_eq!(smtp.wait_for(34, WAIT).await.len(), 34);
    assert!(
        proxy.accepted() <= 8,
        "{} connections for at most 8 sends at once",
        proxy.accepted()
    );
}

#[tokio::test]
async fn a_pooled_connection_the_server_closed_while_idle_does_not_fail_the_next_send() {
    let smtp = server().await;
    let proxy = Proxy::start(smtp.port()).await;
    let sender = sender_for(&proxy.url());
    sender
        .send(&email("first@example.org"))
        .await
        .expect("sent");

    // Closed without a word, as a crashed relay or a NAT that forgot the flow would; then
    // with the 421 a relay sends when its idle timeout ends the session.
    proxy.close_all(None).await;
    sender
        .send(&email("second@example.org"))
        .await
        .expect("sent on a new connection");
    proxy
        .close_all(Some("421 4.4.2 mail.test Error: timeout exceeded\r\n"))
        .await;
    sender
        .send(&email("third@example.org"))
        .await
        .expect("sent on a new connection");

    let got = smtp.wait_for(3, WAIT).await;
    assert_eq!(got.len(), 3);
    assert_eq!(proxy.accepted(), 3);
}

#[tokio::test]
async fn implicit_tls_refuses_an_untrusted_certificate() {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(UNTRUSTED_CERT.as_bytes()).expect("cert")],
        PrivateKeyDer::from_pem_slice(UNTRUSTED_KEY.as_bytes()).expect("key"),
    )
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let completed = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if acceptor.accept(tcp).await.is_ok() {
                completed.fetch_add(1, Ordering::SeqCst);
            }
        }
    });

    let err = sender_for(&format!("smtps://127.0.0.1:{port}"))
        .send(&email("member@example.org"))
        .await
        .expect_err("untrusted certificate");

    assert!(err.is_transient(), "{err:?}");
    assert_eq!(
        reason(&err),
        "smtp tls failed: the server's certificate was not accepted"
    );
    assert_eq!(handshakes.load(Ordering::SeqCst), 0);
}

/// A TCP relay in front of the SMTP test server: counts the connections made through it and
/// closes them all on demand, as a server ending idle sessions would.
struct Proxy {
    port: u16,
    accepted: Arc<AtomicUsize>,
    /// Set to close every open connection, after writing the text in it to the client.
    close: tokio::sync::watch::Sender<Option<&'static str>>,
    /// Connections open now.
    open: tokio::sync::watch::Receiver<usize>,
}

impl Proxy {
    async fn start(upstream: u16) -> Self {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (close, _) = tokio::sync::watch::channel::<Option<&'static str>>(None);
        let (open_tx, open) = tokio::sync::watch::channel(0usize);
        let (count, closer) = (accepted.clone(), close.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                open_tx.send_modify(|n| *n += 1);
                let mut upstream = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
                    .await
                    .expect("upstream");
                let mut closing = closer.subscribe();
                let open_tx = open_tx.clone();
                tokio::spawn(async move {
                    let farewell = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => None,
                        _ = closing.changed() => *closing.borrow(),
                    };
                    if let Some(text) = farewell {
                        let _ = client.write_all(text.as_bytes()).await;
                    }
                    drop((client, upstream));
                    open_tx.send_modify(|n| *n -= 1);
                });
            }
        });
        Self {
            port,
            accepted,
            close,
            open,
        }
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes every open connection and returns once they are closed.
    async fn close_all(&self, farewell: Option<&'static str>) {
        self.close.send_replace(farewell);
        let mut open = self.open.clone();
        tokio::time::timeout(WAIT, open.wait_for(|&n| n == 0))
            .await
            .expect("connections closed in time")
            .expect("proxy running");
    }
}

// A self-signed P-256 certificate for CN=localhost / 127.0.0.1, valid until 2126, made with
// `openssl req -x509` for this test only. Its key protects nothing: it exists so the server
// can offer STARTTLS with a certificate no client trusts.
const UNTRUSTED_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBmzCCAUGgAwIBAgIUZI6q2L4h5NNWb1a60NCMa6/jnaAwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyMTE4NTA0NloYDzIxMjYxMDI4
MTg1MDQ2WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAS2rXKIBsC93OOQ9WRupozqK25vod4Memydo9JZm9CLcogMPLYSp6c7
A8gIxIYilBPrNUeA3m1BzTjYOCok3dsho28wbTAdBgNVHQ4EFgQUbJ7R3rz0HZ05
nhd8qF8iGiHEJAAwHwYDVR0jBBgwFoAUbJ7R3rz0HZ05nhd8qF8iGiHEJAAwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZI
zj0EAwIDSAAwRQIgWz812OeMRQ1qnrBMFpQOCOqbNpAMuV4JeRPmDlF6eo8CIQCb
TASaWNXOxCiNn9JFAkRQ3eT6Xk7afYZNDKpqCo/s6g==
-----END CERTIFICATE-----
";

const UNTRUSTED_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgTzR3NW0zKLbldJzh
7l/HMIdBGNT2VXH8VkrqYMKWRIKhRANCAAS2rXKIBsC93OOQ9WRupozqK25vod4M
emydo9JZm9CLcogMPLYSp6c7A8gIxIYilBPrNUeA3m1BzTjYOCok3dsh
-----END PRIVATE KEY-----
";

async fn pipelining_server() -> SmtpServer {
    SmtpServer::start_with(SmtpServerOptions {
        pipelining: true,
        ..Default::default()
    })
    .await
    .expect("start the SMTP test server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_pipelining_many_sends_arrive_whole_and_in_step() {
    let smtp = pipelining_server().await;
    let sender = sender_for(&smtp.url());

    let sends = (0..40).map(|i| {
        let sender = sender.clone();
        tokio::spawn(async move {
            // A line that starts with a dot must arrive as written (dot-stuffing).
            let text = format!("Item {i}\n.leading dot\nend");
            sender
                .send(&OutgoingEmail {
                    idempotency_key: Some(format!("pipelined-{i}")),
                    text,
                    ..email(&format!("member{i}@example.org"))
                })
                .await
        })
    });
    for result in futures_util::future::join_all(sends).await {
        result.expect("task").expect("sent");
    }

    let got = smtp.wait_for(40, WAIT).await;
    assert_eq!(got.len(), 40);
    for m in &got {
        let id = m.header("Message-ID").expect("a Message-ID");
        let i = id
            .trim_start_matches("<pipelined-")
            .trim_end_matches("@herald.test>");
        assert_eq!(m.rcpt_tos, vec![format!("member{i}@example.org")]);
        assert_eq!(
            lf(&m.text_body()),
            format!("Item {i}\n.leading dot\nend"),
            "{}",
            m.raw
        );
    }
}

#[tokio::test]
async fn with_pipelining_a_refused_recipient_does_not_spoil_the_pooled_connection() {
    let smtp = pipelining_server().await;
    let sender = sender_for(&smtp.url());

    for round in 0..3 {
        let err = sender
            .send(&email("fail5xx@example.org"))
            .await
            .expect_err("refused");
        assert_eq!(
            err,
            SendError::Gone {
                reason: "smtp 550 5.1.1 (mailbox unavailable)".into()
            },
            "round {round}"
        );
        let err = sender
            .send(&email("fail4xx@example.org"))
            .await
            .expect_err("deferred");
        assert!(err.is_transient(), "{err:?}");
        sender
            .send(&email("member@example.org"))
            .await
            .expect("delivered after refusals");
    }

    let got = smtp.wait_for(3, WAIT).await;
    assert_eq!(got.len(), 3);
    assert!(
        got.iter()
            .all(|m| m.rcpt_tos == vec!["member@example.org".to_string()])
    );
}
