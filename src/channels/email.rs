//! Email over SMTP: builds one message for one recipient and hands it to the operator's relay
//! over a pool of SMTP sessions.
//!
//! Owns the SMTP URL contract (`HERALD_SMTP_URL`), the MIME shape of what Herald sends, the
//! Message-ID (our idempotency key for SMTP), the limits of its pool of connections with the
//! relay and the classification of SMTP failures into [`SendError`] kinds. Must not touch:
//! storage, templates, who receives what, the SMTP conversation itself ([`super::smtp`]) or
//! which connection carries which message ([`super::pool`]).
//!
//! ```text
//! OutgoingEmail ──build──▶ lettre Message ──pooled SMTP session──▶ relay
//!   │             (From, To, Subject, Message-ID, extra headers;         │
//!   │              text/plain, or multipart/alternative with html)      ▼
//!   └─ with its publication's MimeFrame: completed with          Sent { provider_id:
//!      this member's values (super::mime), same bytes              Message-ID } / SendError
//!
//! pool: ≤ 64 connection tasks, one queue ──▶ smtp::Dial::open (TCP_NODELAY, TLS, EHLO, AUTH)
//!        a session is dropped if broken, closed by the relay, idle ≥ 5 s and not answering
//!        NOOP, or its task has had no message for 60 s
//! ```
//!
//! Why not lettre's transport: its connection waits for each reply before the next command
//! (no PIPELINING) and writes a message and its closing `.` in two writes without
//! TCP_NODELAY, and its pool cannot be given our sockets (its executor trait is sealed).
//! lettre still builds every message (once per publication for a [`MimeFrame`]) and DKIM-signs
//! it, and [`super::smtp`] speaks with lettre's commands and reply parser.
//!
//! Invariants:
//! - Nothing this module returns or logs contains the recipient address or an SMTP
//!   credential: failure reasons keep only the reply code and the enhanced status code, never
//!   the server's text (servers echo addresses in it), and configuration errors never repeat
//!   the URL.
//! - The Message-ID is derived from the caller's idempotency key, so a retried delivery
//!   carries the same Message-ID and receiving systems can tell it is the same message.
//! - Extra headers cannot replace the ones this module sets, and their values are RFC 2047
//!   encoded by lettre when not plain ASCII, so a CR/LF in a value cannot inject a header.
//! - A session carries another message only from between transactions: one whose send
//!   failed mid-way or ran out of time is closed, never handed to the next message.

use std::sync::Arc;
use std::time::Duration;

use lettre::Address;
use lettre::Message;
use lettre::address::Envelope;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::{self, ContentTransferEncoding, HeaderName, HeaderValue, Headers};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use secrecy::{ExposeSecret, SecretString};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use url::Url;

use super::mime::{MimeFrame, Values};
use super::pool::{self, Pool};
use super::smtp::{Dial, Failure, Tls};
use super::{SendError, Sent};
use crate::settings::{DkimSettings, ProviderSettings};

/// Time one whole send may take: waiting for a pooled connection, opening one (connect, TLS,
/// EHLO, AUTH) and the transaction. 30 s: RFC 5321 allows servers minutes per reply, but a
/// relay that takes longer than this is better retried later than waited on, and the
/// dispatcher's lease (120 s by default) must outlast one whole send.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections open at once (keeping only 10 cost 10–20% of the email rate in the benchmark).
/// The dispatcher keeps more messages than this in flight (`HERALD_DELIVERY_CONCURRENCY`):
/// at any moment some of them are being looked up or recorded, not sent. Sends beyond this
/// wait for a free connection, within [`SMTP_TIMEOUT`].
const POOL_MAX_SIZE: usize = 64;

/// A connection unused for this long is asked NOOP before it carries a message. 5 s: a busy
/// dispatcher reuses connections within milliseconds and never pays the round trip, while a
/// NAT or load balancer that silently dropped an idle connection (which the socket cannot
/// show) is found before a delivery depends on it.
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(5);

/// How long that NOOP may take before the connection is closed instead: a relay that is
/// alive answers in milliseconds, and a new connection costs less than a stalled send.
const NOOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection with no message for this long closes: after a burst, the connections it
/// opened go, and the few a light load keeps busy stay warm.
const RETIRE_AFTER: Duration = Duration::from_secs(60);

/// The pool every sender gets: one write or reply may take the whole send's time.
const POOL: pool::Settings = pool::Settings {
    max: POOL_MAX_SIZE,
    idle_check: IDLE_CHECK_AFTER,
    noop_timeout: NOOP_TIMEOUT,
    io_timeout: SMTP_TIMEOUT,
    retire_after: RETIRE_AFTER,
};

/// How a refusal names this adapter.
const SET_BY: &str = "the email adapter";

/// Headers this module sets itself (and Resend builds from its request); an extra header may
/// not replace them.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "sender",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// One email to one recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// The recipient's address (`user@example.com`, or `Name <user@example.com>`).
    pub to: String,
    pub subject: String,
    /// The text/plain body, always sent: it is what every client can show.
    pub text: String,
    /// With an html body the message is multipart/alternative (text first, html preferred).
    pub html: Option<String>,
    /// Extra headers sent as given, one per name (`List-Unsubscribe`,
    /// `List-Unsubscribe-Post`, `Precedence`, `Feedback-Id`…).
    pub headers: Vec<(String, String)>,
    /// Becomes the Message-ID's left part, so a retry of the same delivery sends the same
    /// Message-ID; a fresh one is made when absent.
    pub idempotency_key: Option<String>,
}

/// An email's bodies already in quoted-printable with CRLF lines: `text` for the text/plain
/// part, `html` for the text/html one (see [`super::qp`]), and the frame the whole message
/// can be completed from, when the publication has one (see [`super::mime`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QpBodies {
    pub text: Vec<u8>,
    pub html: Option<Vec<u8>>,
    pub mime: Option<Arc<MimeFrame>>,
}

/// Why the email channel could not be configured. Texts never repeat the SMTP URL, which may
/// carry a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailConfigError {
    #[error("invalid HERALD_SMTP_URL: {0}")]
    InvalidUrl(String),
    #[error("invalid HERALD_EMAIL_FROM {from:?}: {reason}")]
    InvalidFrom { from: String, reason: &'static str },
    /// DKIM is partly configured, or its key cannot be read or parsed. The key is never
    /// quoted.
    #[error("DKIM: {0}")]
    Dkim(String),
}

/// How the connection to the relay is secured, as the URL asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    /// `smtp://` — no TLS (a local relay, or tests).
    Plain,
    /// `smtp://…?tls=required` — STARTTLS, refusing to go on without it.
    StartTls,
    /// `smtp://…?tls=opportunistic` — STARTTLS when offered.
    Opportunistic,
    /// `smtps://` — TLS from the first byte.
    Implicit,
}

/// What the URL says, minus the credentials: safe to print.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    host: String,
    port: u16,
    security: Security,
    authenticated: bool,
}

/// Everything the URL says. Not `Debug`: it holds the credentials.
struct SmtpUrl {
    endpoint: Endpoint,
    credentials: Option<Credentials>,
    /// The EHLO name when the URL has a path (`smtp://relay/herald.example`), as lettre's own
    /// URL reading had it; else the local host name.
    hello_name: Option<String>,
    /// Pipeline when the relay offers PIPELINING (`?pipelining=off` for a relay that offers
    /// it but mishandles it).
    pipelining: bool,
}

/// Sends email through one SMTP relay over a pool of connections. Cheap to clone: clones
/// share the pool.
///
/// Connections belong to the Tokio runtime that opened them (the first sends): share a sender
/// within one runtime.
#[derive(Clone)]
pub struct EmailSender {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// Where the relay is, for `Debug`.
    endpoint: Endpoint,
    from: Mailbox,
    /// The From header's value as lettre encodes it, for messages completed from a frame.
    from_encoded: String,
    /// The Date header's value for the current second, as lettre encodes it (second 0, never
    /// now, until the first send).
    date: std::sync::Mutex<(u64, Arc<str>)>,
    /// The right part of every Message-ID: the from address's domain.
    message_id_domain: String,
    /// Signs every message when DKIM is configured.
    dkim: Option<DkimConfig>,
}

impl std::fmt::Debug for EmailSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSender")
            .field("endpoint", &self.inner.endpoint)
            .field("from", &self.inner.from.email.to_string())
            .finish_non_exhaustive()
    }
}

impl EmailSender {
    /// A sender for the relay at `smtp_url`, sending as `from` (`noreply@example.com` or
    /// `Herald <noreply@example.com>`).
    ///
    /// URL forms: `smtp://host:port` (plain), `smtp://host:port?tls=required` (STARTTLS),
    /// `smtp://host:port?tls=opportunistic`, `smtps://host:port` (implicit TLS), with
    /// `user:password@` for SMTP AUTH (percent-encoded). Default ports are 25, 587 and 465.
    /// Any other query parameter is refused: a misspelt `tls` must not silently mean
    /// plain text.
    pub fn new(smtp_url: &SecretString, from: &str) -> Result<Self, EmailConfigError> {
        let url = check_url(smtp_url.expose_secret())?;
        let from_mailbox: Mailbox = from.parse().map_err(|_| EmailConfigError::InvalidFrom {
            from: from.to_string(),
            reason: "not an email address",
        })?;
        Self::over(Relay::new(url)?, from_mailbox)
    }

    fn over(relay: Relay, from: Mailbox) -> Result<Self, EmailConfigError> {
        Self::over_with(relay, from, POOL)
    }

    fn over_with(
        relay: Relay,
        from: Mailbox,
        settings: pool::Settings,
    ) -> Result<Self, EmailConfigError> {
        let message_id_domain = from.email.domain().to_string();
        let mut from_header = Headers::new();
        from_header.set(header::From::from(lettre::message::Mailboxes::from(
            from.clone(),
        )));
        Ok(Self {
            inner: Arc::new(Inner {
                pool: Pool::new(relay.dial, settings),
                endpoint: relay.endpoint,
                from_encoded: header_value(&from_header),
                from,
                message_id_domain,
                date: std::sync::Mutex::new((0, Arc::from(""))),
                dkim: None,
            }),
        })
    }

    /// Sign every message with DKIM (RFC 6376) as `selector._domainkey.domain`. The key file
    /// holds an RSA key in PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`) or an Ed25519 seed in base64
    /// (RFC 8463). The signature covers the List-Unsubscribe headers too, as RFC 8058 §4
    /// requires for one-click unsubscribe to be honoured.
    pub fn with_dkim(
        self,
        selector: &str,
        domain: &str,
        key: &str,
    ) -> Result<Self, EmailConfigError> {
        let algorithm = if key.contains("-----BEGIN") {
            DkimSigningAlgorithm::Rsa
        } else {
            DkimSigningAlgorithm::Ed25519
        };
        let key = DkimSigningKey::new(key.trim(), algorithm).map_err(|_| {
            EmailConfigError::Dkim(format!(
                "the key is not a valid {algorithm} key (RSA: PKCS#1 PEM; Ed25519: base64 seed)"
            ))
        })?;
        let headers = DKIM_HEADERS
            .iter()
            .map(|name| HeaderName::new_from_ascii_str(name))
            .collect();
        let config = DkimConfig::new(
            selector.to_string(),
            domain.to_string(),
            key,
            headers,
            DkimCanonicalization {
                header: DkimCanonicalizationType::Relaxed,
                body: DkimCanonicalizationType::Relaxed,
            },
        );
        let inner = Arc::try_unwrap(self.inner).map_err(|_| {
            EmailConfigError::Dkim("DKIM must be set before the sender is shared".into())
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                dkim: Some(config),
                ..inner
            }),
        })
    }

    /// Whether messages are DKIM-signed.
    pub fn signs_dkim(&self) -> bool {
        self.inner.dkim.is_some()
    }

    /// The email channel as configured: `None` when `HERALD_SMTP_URL` is unset (the channel
    /// is then reported unavailable).
    pub fn from_settings(settings: &ProviderSettings) -> Result<Option<Self>, EmailConfigError> {
        let Some(url) = settings.smtp_url.as_ref() else {
            return Ok(None);
        };
        let sender = Self::new(url, &settings.email_from)?;
        match dkim_settings(&settings.dkim)? {
            Some((selector, domain, key)) => sender.with_dkim(&selector, &domain, &key).map(Some),
            None => Ok(Some(sender)),
        }
    }

    /// The sender's bare address (without a display name), as in the envelope's MAIL FROM.
    pub fn from_address(&self) -> &str {
        self.inner.from.email.as_ref()
    }

    /// The Message-ID a send with this idempotency key carries (also the `provider_id` it
    /// returns). Keys that are not valid in a Message-ID are hex-encoded, which keeps them
    /// distinct and stable.
    pub fn message_id(&self, idempotency_key: Option<&str>) -> String {
        let left = match idempotency_key {
            Some(key) if is_dot_atom(key) => key.to_string(),
            Some(key) => key.bytes().map(|b| format!("{b:02x}")).collect(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        format!("<{left}@{}>", self.inner.message_id_domain)
    }

    /// Sends one email. On success `provider_id` is the Message-ID, the same on every retry
    /// with the same idempotency key.
    pub async fn send(&self, email: &OutgoingEmail) -> Result<Sent, SendError> {
        self.send_encoded(email, None).await
    }

    /// [`EmailSender::send`], with the bodies already in quoted-printable when `encoded` is
    /// given (the same text as `email.text` and `email.html`, see [`super::qp`]).
    pub async fn send_encoded(
        &self,
        email: &OutgoingEmail,
        encoded: Option<&QpBodies>,
    ) -> Result<Sent, SendError> {
        let message_id = self.message_id(email.idempotency_key.as_deref());
        let (envelope, raw) = match encoded.and_then(|e| self.complete(email, e, &message_id)) {
            Some(completed) => completed,
            None => {
                let message = self.build(email, encoded, &message_id)?;
                let raw = message.formatted();
                (message.envelope().clone(), raw)
            }
        };
        let outcome = tokio::time::timeout(SMTP_TIMEOUT, self.inner.pool.send(envelope, raw))
            .await
            .unwrap_or(Err(Failure::TimedOut));
        match outcome {
            Ok(()) => {
                tracing::debug!(%message_id, "smtp relay accepted the message");
                Ok(Sent {
                    provider_id: Some(message_id),
                })
            }
            Err(failure) => {
                let error = classify(&failure);
                tracing::debug!(%message_id, %error, "smtp send failed");
                Err(error)
            }
        }
    }

    /// The message completed from its publication's frame, with its envelope; `None` when it
    /// has to be built whole: no frame, a DKIM signature to make, or a value lettre would
    /// not write as it is (a recipient with a display name or outside dot-atoms, say).
    fn complete(
        &self,
        email: &OutgoingEmail,
        encoded: &QpBodies,
        message_id: &str,
    ) -> Option<(Envelope, Vec<u8>)> {
        let frame = encoded.mime.as_deref()?;
        let html = encoded.html.as_deref()?;
        if self.inner.dkim.is_some() || email.html.is_none() || frame.subject() != email.subject {
            return None;
        }
        let (local, domain) = email.to.rsplit_once('@')?;
        if !is_dot_atom(local) || !is_dot_atom(domain) {
            return None;
        }
        // Headers the builder would refuse go to it, which says why.
        check_headers(&email.headers, SET_BY).ok()?;
        if !email
            .headers
            .iter()
            .map(|(name, _)| name.as_str())
            .eq(frame.header_names())
        {
            return None;
        }
        let to: Address = email.to.parse().ok()?;
        let headers: Vec<&str> = email.headers.iter().map(|(_, v)| v.as_str()).collect();
        let date = self.date();
        let raw = frame.fill(&Values {
            from: &self.inner.from_encoded,
            to: &email.to,
            message_id,
            date: &date,
            headers: &headers,
            text: &encoded.text,
            html,
        })?;
        let envelope = Envelope::new(Some(self.inner.from.email.clone()), vec![to]).ok()?;
        Some((envelope, raw))
    }

    /// The Date header's value for now, as lettre writes it; made once a second.
    fn date(&self) -> Arc<str> {
        let now = std::time::SystemTime::now();
        let second = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut cached = self
            .inner
            .date
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cached.0 != second {
            let mut date = Headers::new();
            date.set(header::Date::new(now));
            *cached = (second, Arc::from(header_value(&date)));
        }
        cached.1.clone()
    }

    fn build(
        &self,
        email: &OutgoingEmail,
        encoded: Option<&QpBodies>,
        message_id: &str,
    ) -> Result<Message, SendError> {
        check_headers(&email.headers, SET_BY)?;
        let to: Mailbox = email
            .to
            .parse()
            .map_err(|_| SendError::permanent("invalid recipient address"))?;
        let mut builder = Message::builder()
            .from(self.inner.from.clone())
            .to(to)
            .subject(email.subject.as_str())
            .message_id(Some(message_id.to_string()));
        for (name, value) in &email.headers {
            let name = HeaderName::new_from_ascii(name.clone())
                .map_err(|_| SendError::permanent("invalid extra header name"))?;
            builder = builder.raw_header(HeaderValue::new(name, value.clone()));
        }
        // A part goes out pre-encoded when its quoted-printable form was given, else lettre
        // encodes the text.
        let body = |plain: &String, encoded: Option<&Vec<u8>>| match encoded {
            Some(qp) => {
                Body::dangerous_pre_encoded(qp.clone(), ContentTransferEncoding::QuotedPrintable)
            }
            None => Body::new(plain.clone()),
        };
        let text = body(&email.text, encoded.map(|e| &e.text));
        let built = match &email.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                text,
                body(html, encoded.and_then(|e| e.html.as_ref())),
            )),
            None => builder.singlepart(SinglePart::plain(text)),
        };
        // Only the fact is kept: lettre's error text is not ours to vouch for (addresses).
        let mut message = built.map_err(|_| SendError::permanent("message could not be built"))?;
        if let Some(dkim) = &self.inner.dkim {
            message.sign(dkim);
        }
        Ok(message)
    }
}

/// Where the relay is and how to open a session with it. Not `Debug`: it holds the
/// credentials.
struct Relay {
    endpoint: Endpoint,
    dial: Dial,
}

impl Relay {
    fn new(url: SmtpUrl) -> Result<Self, EmailConfigError> {
        let connector = || {
            tls_config()
                .map(TlsConnector::from)
                .map_err(|_| EmailConfigError::InvalidUrl("TLS could not be set up".into()))
        };
        let tls = match url.endpoint.security {
            Security::Plain => Tls::None,
            Security::StartTls | Security::Opportunistic => Tls::Starttls {
                required: url.endpoint.security == Security::StartTls,
                connector: connector()?,
            },
            Security::Implicit => Tls::Implicit(connector()?),
        };
        Ok(Self {
            dial: Dial {
                host: url.endpoint.host.clone(),
                port: url.endpoint.port,
                hello: url.hello_name.map(ClientId::Domain).unwrap_or_default(),
                tls,
                credentials: url.credentials,
                pipelining: url.pipelining,
            },
            endpoint: url.endpoint,
        })
    }
}

/// The TLS client for STARTTLS and smtps://: the webpki roots, with the process default
/// crypto provider, else ring.
fn tls_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Headers a DKIM signature covers (when the message has them).
const DKIM_HEADERS: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// `(selector, domain, key)` when DKIM is configured; all three settings or none.
fn dkim_settings(
    dkim: &DkimSettings,
) -> Result<Option<(String, String, String)>, EmailConfigError> {
    match (&dkim.selector, &dkim.domain, &dkim.private_key_file) {
        (None, None, None) => Ok(None),
        (Some(selector), Some(domain), Some(path)) => {
            let key = std::fs::read_to_string(path).map_err(|e| {
                EmailConfigError::Dkim(format!("cannot read HERALD_DKIM_PRIVATE_KEY_FILE: {}", e.kind()))
            })?;
            Ok(Some((selector.clone(), domain.clone(), key)))
        }
        _ => Err(EmailConfigError::Dkim(
            "set all of HERALD_DKIM_SELECTOR, HERALD_DKIM_DOMAIN and HERALD_DKIM_PRIVATE_KEY_FILE, or none".into(),
        )),
    }
}

/// Checks the URL against the contract and reads it. Reasons never quote the URL.
fn check_url(raw: &str) -> Result<SmtpUrl, EmailConfigError> {
    let invalid = |reason: String| EmailConfigError::InvalidUrl(reason);
    let url = Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
    let mut tls = None;
    let mut pipelining = None;
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "tls" if tls.is_none() => tls = Some(value.into_owned()),
            "tls" => return Err(invalid("tls is given twice".into())),
            "pipelining" if pipelining.is_some() => {
                return Err(invalid("pipelining is given twice".into()));
            }
            "pipelining" => match value.as_ref() {
                "on" => pipelining = Some(true),
                "off" => pipelining = Some(false),
                _ => {
                    return Err(invalid(
                        "unknown pipelining value (expected on or off)".into(),
                    ));
                }
            },
            // Neither the parameter nor its value is quoted: a password pasted in the
            // wrong place would otherwise end up in the log.
            _ => {
                return Err(invalid(
                    "unknown query parameter (only tls=required|opportunistic and \
                     pipelining=on|off)"
                        .into(),
                ));
            }
        }
    }
    let (security, default_port) = match (url.scheme(), tls.as_deref()) {
        ("smtp", None) => (Security::Plain, 25),
        ("smtp", Some("required")) => (Security::StartTls, 587),
        ("smtp", Some("opportunistic")) => (Security::Opportunistic, 587),
        ("smtp", Some(_)) => {
            return Err(invalid(
                "unknown tls value (expected tls=required or tls=opportunistic)".into(),
            ));
        }
        ("smtps", None) => (Security::Implicit, 465),
        ("smtps", Some(_)) => {
            return Err(invalid(
                "tls= applies to smtp:// only; smtps:// is always TLS".into(),
            ));
        }
        _ => {
            return Err(invalid(
                "unsupported scheme (expected smtp:// or smtps://)".into(),
            ));
        }
    };
    let host = match url.host_str() {
        Some(host) if !host.is_empty() => host.to_string(),
        _ => return Err(invalid("no host".into())),
    };
    let credentials = match (url.username(), url.password()) {
        ("", None) => None,
        ("", Some(_)) => return Err(invalid("a password without a user name".into())),
        (_, None) => return Err(invalid("a user name without a password".into())),
        (user, Some(password)) => {
            match (percent_decode_utf8(user), percent_decode_utf8(password)) {
                (Some(user), Some(password)) => Some(Credentials::new(user, password)),
                _ => {
                    return Err(invalid(
                        "credentials are not valid percent-encoded UTF-8".into(),
                    ));
                }
            }
        }
    };
    let path = url.path();
    let hello_name = (path.len() > 1).then(|| path.trim_matches('/').to_string());
    Ok(SmtpUrl {
        endpoint: Endpoint {
            host,
            port: url.port().unwrap_or(default_port),
            security,
            authenticated: credentials.is_some(),
        },
        credentials,
        hello_name,
        pipelining: pipelining.unwrap_or(true),
    })
}

/// Percent-decodes `s`, `None` when the result is not UTF-8 (lettre refuses those).
fn percent_decode_utf8(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// RFC 5322 dot-atom-text: what may stand left of the `@` in a Message-ID unquoted.
fn is_dot_atom(s: &str) -> bool {
    const SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";
    !s.is_empty()
        && s.len() <= 200
        && s.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || SPECIALS.contains(c))
        })
}

/// Extra headers may not replace the ones an email is built with, nor repeat: the same rule
/// for every email adapter (`set_by` names the one refusing), so all refuse the same emails.
pub(super) fn check_headers(headers: &[(String, String)], set_by: &str) -> Result<(), SendError> {
    let mut seen: Vec<String> = Vec::with_capacity(headers.len());
    for (name, _) in headers {
        let lower = name.to_ascii_lowercase();
        if !is_field_name(name) {
            return Err(SendError::permanent("invalid extra header name"));
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(SendError::permanent(format!(
                "extra header {name} is set by {set_by}"
            )));
        }
        if seen.contains(&lower) {
            return Err(SendError::permanent(format!(
                "extra header {name} given twice"
            )));
        }
        seen.push(lower);
    }
    Ok(())
}

/// The value of the one header in `headers`, as lettre writes it.
fn header_value(headers: &Headers) -> String {
    let line = headers.to_string();
    let value = line.split_once(": ").map_or("", |(_, value)| value);
    value.trim_end_matches("\r\n").to_string()
}

/// RFC 5322 field-name: printable ASCII except `:` (lettre also refuses spaces).
fn is_field_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 76 && s.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// A few words for the common reply codes, so a log line reads without an RFC at hand.
fn reply_meaning(code: u16) -> Option<&'static str> {
    Some(match code {
        421 => "service not available",
        450 => "mailbox unavailable",
        451 => "local error in processing",
        452 => "insufficient storage",
        454 => "temporary authentication failure",
        530 => "authentication required",
        535 => "authentication failed",
        550 => "mailbox unavailable",
        551 => "user not local",
        552 => "exceeded storage allocation",
        553 => "mailbox name not allowed",
        554 => "transaction failed",
        _ => return None,
    })
}

/// Which [`SendError`] a failure is: 4xx replies and anything about the connection may pass
/// with time; 5xx replies and client-side refusals will not.
/// An enhanced status code (RFC 3463) that says the mailbox will never accept mail: a bad
/// destination address, mailbox or system (5.1.x; 5.1.10 is a null MX) or a disabled
/// mailbox (5.2.1). Herald treats these as a hard bounce at send time and suppresses the
/// address, as it does for a provider's hard-bounce report. A full mailbox (5.2.2) or a
/// policy refusal (5.7.x) is not one: the message fails, the address stays.
fn is_hard_bounce(enhanced: &str) -> bool {
    enhanced.starts_with("5.1.") || enhanced == "5.2.1"
}

fn classify(failure: &Failure) -> SendError {
    match failure {
        Failure::Reply { code, enhanced } => {
            let mut reason = format!("smtp {code}");
            if let Some(enhanced) = enhanced {
                reason.push(' ');
                reason.push_str(enhanced);
            }
            if let Some(meaning) = reply_meaning(*code) {
                reason.push_str(" (");
                reason.push_str(meaning);
                reason.push(')');
            }
            if (400..500).contains(code) {
                SendError::transient(reason)
            } else if enhanced.as_deref().is_some_and(is_hard_bounce) {
                SendError::Gone { reason }
            } else {
                SendError::permanent(reason)
            }
        }
        Failure::TimedOut => SendError::transient("smtp timed out"),
        Failure::Connection(Some(kind)) => {
            SendError::transient(format!("smtp connection failed: {kind}"))
        }
        Failure::Connection(None) => SendError::transient("smtp connection failed"),
        // A certificate the relay will renew, or a handshake that failed mid-way: the
        // message itself is fine.
        Failure::Tls { certificate: true } => {
            SendError::transient("smtp tls failed: the server's certificate was not accepted")
        }
        Failure::Tls { certificate: false } => SendError::transient("smtp tls failed"),
        Failure::Garbled => SendError::transient("smtp server sent an unparseable reply"),
        Failure::Shutdown => SendError::transient("smtp transport is shutting down"),
        Failure::Refused(why) => SendError::permanent(format!("smtp: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use tokio::io::{AsyncRead, AsyncWrite};

    use super::*;

    fn sender(url: &str) -> Result<EmailSender, EmailConfigError> {
        EmailSender::new(&SecretString::from(url), "Herald <noreply@herald.example>")
    }

    fn endpoint(url: &str) -> Endpoint {
        sender(url).expect("valid url").inner.endpoint.clone()
    }

    const LIST: [&str; 2] = ["List-Unsubscribe", "List-Unsubscribe-Post"];

    /// A delivery email to `to` whose bodies come with the frame for its subject.
    fn framed(to: &str, subject: &str, unsubscribe: &str) -> (OutgoingEmail, QpBodies) {
        let email = OutgoingEmail {
            to: to.into(),
            subject: subject.into(),
            text: "Vote: https://h.example/v\n".into(),
            html: Some("<p>Vote</p>\n".into()),
            headers: vec![
                (LIST[0].into(), format!("<{unsubscribe}>")),
                (LIST[1].into(), "List-Unsubscribe=One-Click".into()),
            ],
            idempotency_key: Some("019300aa-delivery".into()),
        };
        let encoded = QpBodies {
            text: b"Vote: https://h.example/v=\r\n\r\n".to_vec(),
            html: Some(b"<p>Vote</p>\r\n".to_vec()),
            mime: MimeFrame::new(subject, &LIST).map(Arc::new),
        };
        (email, encoded)
    }

    /// `raw` with its multipart boundary and its Date header's value replaced by fixed
    /// words: the two things lettre makes anew for each message.
    fn normalized(raw: &[u8]) -> String {
        let raw = String::from_utf8(raw.to_vec()).expect("ASCII");
        let boundary = raw
            .split("boundary=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a multipart boundary")
            .to_string();
        raw.replace(&boundary, "BOUNDARY")
            .split("\r\n")
            .map(|line| match line.strip_prefix("Date: ") {
                Some(_) => "Date: DATE",
                None => line,
            })
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    #[test]
    fn a_message_completed_from_its_frame_is_the_one_lettre_builds() {
        let long_subject = "The neighbourhood association's annual general meeting: \
                            agenda, proposals to vote on, and the budget for next year";
        let long_link = format!(
            "https://herald.example/unsubscribe?t={}",
            "Zq9_-".repeat(60)
        );
        let froms = [
            "noreply@herald.example",
            "Herald <noreply@herald.example>",
            "Héraut du quartier <noreply@herald.example>",
        ];
        let subjects = [
            "Vote on the park",
            "Réunion du comité : ordre du jour",
            long_subject,
            "集会のお知らせ",
        ];
        let links = ["https://herald.example/u?t=abc&x=%3D", long_link.as_str()];
        let recipients = ["member@example.org", "a.b+herald@mail.example.co.uk"];
        for from in froms {
            let sender =
                EmailSender::over(plain_relay(25), from.parse().expect("from")).expect("pool");
            for subject in subjects {
                for link in links {
                    for to in recipients {
                        let (email, encoded) = framed(to, subject, link);
                        let id = sender.message_id(email.idempotency_key.as_deref());
                        let (envelope, raw) = sender
                            .complete(&email, &encoded, &id)
                            .unwrap_or_else(|| panic!("{from} / {subject} / {to}: no frame"));
                        let built = sender.build(&email, Some(&encoded), &id).expect("built");
                        assert_eq!(
                            normalized(&raw),
                            normalized(&built.formatted()),
                            "{from} / {subject} / {link} / {to}"
                        );
                        assert_eq!(&envelope, built.envelope());
                    }
                }
            }
        }
    }

    #[test]
    fn a_message_the_frame_cannot_complete_exactly_is_built_whole() {
        let plain = sender_over(plain_relay(25));
        let link = "https://herald.example/u?t=abc";
        let id = plain.message_id(Some("d1"));
        let whole = |email: &OutgoingEmail, encoded: &QpBodies| {
            plain.complete(email, encoded, &id).is_none()
        };
        let (email, encoded) = framed("member@example.org", "Hello", link);
        assert!(!whole(&email, &encoded), "the plain case completes");

        // A recipient with a display name, or outside dot-atoms: lettre formats those.
        for to in ["Ada <ada@example.org>", "\"ada lovelace\"@example.org"] {
            let (email, encoded) = framed(to, "Hello", link);
            assert!(whole(&email, &encoded), "{to}");
        }
        // A header value lettre might fold or encode.
        let (email, encoded) = framed("member@example.org", "Hello", "https://h/u?t=a b");
        assert!(whole(&email, &encoded));
        let (mut email, encoded) = framed("member@example.org", "Hello", link);
        email.headers[1].1 = "Lïst".into();
        assert!(whole(&email, &encoded));
        // Not the frame's subject, or not its headers.
        let (mut email, encoded) = framed("member@example.org", "Hello", link);
        email.subject = "Another".into();
        assert!(whole(&email, &encoded));
        let (mut email, encoded) = framed("member@example.org", "Hello", link);
        email.headers.reverse();
        assert!(whole(&email, &encoded));
        // No HTML body, or no frame.
        let (email, mut encoded) = framed("member@example.org", "Hello", link);
        encoded.html = None;
        assert!(whole(&email, &encoded));
        let (email, mut encoded) = framed("member@example.org", "Hello", link);
        encoded.mime = None;
        assert!(whole(&email, &encoded));
        // A DKIM signature is made over the built message.
        use base64::Engine;
        let seed = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let signer = sender("smtp://mail.example")
            .unwrap()
            .with_dkim("s2026", "herald.example", &seed)
            .expect("a DKIM key");
        let (email, encoded) = framed("member@example.org", "Hello", link);
        assert!(signer.complete(&email, &encoded, &id).is_none());
    }

    #[test]
    fn dkim_signs_the_unsubscribe_headers_and_is_all_or_nothing() {
        use base64::Engine;
        let seed = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let signer = sender("smtp://mail.example")
            .unwrap()
            .with_dkim("s2026", "herald.example", &seed)
            .expect("an Ed25519 seed is a DKIM key");
        assert!(signer.signs_dkim());
        let email = OutgoingEmail {
            to: "ada@example.org".into(),
            subject: "Hello".into(),
            text: "Body".into(),
            headers: vec![
                (
                    "List-Unsubscribe".into(),
                    "<https://h/unsubscribe?token=t>".into(),
                ),
                (
                    "List-Unsubscribe-Post".into(),
                    "List-Unsubscribe=One-Click".into(),
                ),
            ],
            ..Default::default()
        };
        let message = signer.build(&email, None, "<d1@herald.example>").unwrap();
        let raw = String::from_utf8(message.formatted()).unwrap();
        let signature = raw
            .split("\r\n")
            .skip_while(|l| !l.starts_with("DKIM-Signature:"))
            .take_while(|l| l.starts_with("DKIM-Signature:") || l.starts_with([' ', '\t']))
            .collect::<String>();
        assert!(signature.contains("a=ed25519-sha256"), "{signature}");
        assert!(signature.contains("d=herald.example"), "{signature}");
        assert!(signature.contains("s=s2026"), "{signature}");
        let signed = signature.to_ascii_lowercase().replace([' ', '\t'], "");
        assert!(
            signed.contains("list-unsubscribe:list-unsubscribe-post"),
            "{signature}"
        );
        assert!(!sender("smtp://mail.example").unwrap().signs_dkim());

        let bad = sender("smtp://mail.example")
            .unwrap()
            .with_dkim("s", "herald.example", "not a key")
            .unwrap_err();
        assert!(
            !bad.to_string().contains("not a key"),
            "the key is never quoted"
        );
        let partial = DkimSettings {
            domain: Some("herald.example".into()),
            ..Default::default()
        };
        assert!(matches!(
            dkim_settings(&partial),
            Err(EmailConfigError::Dkim(_))
        ));
        assert_eq!(dkim_settings(&DkimSettings::default()), Ok(None));
    }

    #[test]
    fn plain_smtp_urls_default_to_port_25() {
        let e = endpoint("smtp://mail.example");
        assert_eq!(
            e,
            Endpoint {
                host: "mail.example".into(),
                port: 25,
                security: Security::Plain,
                authenticated: false
            }
        );
        assert_eq!(endpoint("smtp://127.0.0.1:2525").port, 2525);
    }

    #[test]
    fn tls_required_means_starttls_on_the_submission_port() {
        let e = endpoint("smtp://mail.example?tls=required");
        assert_eq!((e.security, e.port), (Security::StartTls, 587));
        let e = endpoint("smtp://mail.example:2587?tls=opportunistic");
        assert_eq!((e.security, e.port), (Security::Opportunistic, 2587));
    }

    #[test]
    fn smtps_means_implicit_tls_on_port_465() {
        let e = endpoint("smtps://mail.example");
        assert_eq!((e.security, e.port), (Security::Implicit, 465));
    }

    #[test]
    fn credentials_in_the_url_turn_on_auth() {
        assert!(endpoint("smtp://user:pa%24%24@mail.example:587?tls=required").authenticated);
        assert!(!endpoint("smtp://mail.example").authenticated);
    }

    #[test]
    fn urls_outside_the_contract_are_refused() {
        for url in [
            "http://mail.example",
            "smtp://mail.example?tsl=required",
            "smtp://mail.example?tls=yes",
            "smtp://mail.example?tls=required&tls=required",
            "smtp://mail.example?pipelining=no",
            "smtp://mail.example?pipelining=off&pipelining=on",
            "smtps://mail.example?tls=required",
            "smtp://user@mail.example",
            "smtp://:secret@mail.example",
            "smtp://user:%FF@mail.example",
            "smtp://",
            "not a url",
        ] {
            assert!(
                matches!(sender(url), Err(EmailConfigError::InvalidUrl(_))),
                "{url} should be refused"
            );
        }
    }

    #[test]
    fn configuration_errors_never_repeat_the_password() {
        for url in [
            "http://user:hunter2secret@mail.example",
            "smtp://user:hunter2secret@mail.example?bogus=1",
            "smtp://user:hunter2secret@mail.example:99999",
            "smtp://user:hunter2secret@mail.example?tls=hunter2secret",
            "smtp://mail.example?hunter2secret",
            "hunter2secret://mail.example",
        ] {
            let err = sender(url).expect_err(url);
            assert!(!err.to_string().contains("hunter2secret"), "{err}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let s = sender("smtp://user:hunter2secret@mail.example").expect("valid");
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2secret"), "{debug}");
        assert!(debug.contains("mail.example"), "{debug}");
    }

    #[test]
    fn a_from_address_that_does_not_parse_is_refused() {
        let err = EmailSender::new(&SecretString::from("smtp://mail.example"), "not-an-address")
            .expect_err("invalid from");
        assert!(matches!(err, EmailConfigError::InvalidFrom { .. }));
    }

    #[test]
    fn from_settings_is_none_without_an_smtp_url() {
        let mut settings = ProviderSettings {
            email_from: "noreply@herald.example".into(),
            ..Default::default()
        };
        assert!(EmailSender::from_settings(&settings).expect("ok").is_none());
        settings.smtp_url = Some(SecretString::from("smtp://mail.example"));
        let s = EmailSender::from_settings(&settings)
            .expect("ok")
            .expect("configured");
        assert_eq!(s.from_address(), "noreply@herald.example");
    }

    #[test]
    fn message_ids_come_from_the_idempotency_key_and_the_from_domain() {
        let s = sender("smtp://mail.example").expect("valid");
        assert_eq!(
            s.message_id(Some("01J9Z3.delivery-7")),
            "<01J9Z3.delivery-7@herald.example>"
        );
        assert_eq!(s.message_id(Some("a b")), "<612062@herald.example>");
        assert_eq!(s.message_id(Some("a..b")), "<612e2e62@herald.example>");
        let fresh = s.message_id(None);
        assert!(fresh.starts_with('<') && fresh.ends_with("@herald.example>"));
        assert_ne!(fresh, s.message_id(None));
    }

    #[test]
    fn extra_headers_may_not_replace_ours_or_repeat() {
        let s = sender("smtp://mail.example").expect("valid");
        let email = |headers: Vec<(&str, &str)>| OutgoingEmail {
            to: "member@example.org".into(),
            subject: "s".into(),
            text: "t".into(),
            headers: headers
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        for headers in [
            vec![("Message-ID", "<x@y>")],
            vec![("bcc", "other@example.org")],
            vec![("Bad Name", "v")],
            vec![("Bad:Name", "v")],
            vec![("Precedence", "bulk"), ("precedence", "list")],
        ] {
            let err = s
                .build(&email(headers.clone()), None, "<a@b>")
                .expect_err("refused");
            assert!(matches!(err, SendError::Permanent { .. }), "{headers:?}");
        }
        let ok = s
            .build(&email(vec![("Precedence", "bulk")]), None, "<a@b>")
            .expect("built");
        let raw = String::from_utf8(ok.formatted()).expect("utf-8");
        assert!(raw.contains("\r\nPrecedence: bulk\r\n"), "{raw}");
    }

    #[test]
    fn a_header_value_with_a_line_break_cannot_inject_a_header() {
        let s = sender("smtp://mail.example").expect("valid");
        let email = OutgoingEmail {
            to: "member@example.org".into(),
            subject: "hello\r\nBcc: victim@example.org".into(),
            text: "t".into(),
            headers: vec![("Feedback-Id".into(), "x\r\nBcc: victim@example.org".into())],
            ..Default::default()
        };
        let raw = String::from_utf8(s.build(&email, None, "<a@b>").expect("built").formatted())
            .expect("utf-8");
        assert!(!raw.contains("\r\nBcc:"), "{raw}");
    }

    #[test]
    fn an_invalid_recipient_is_permanent_and_not_echoed() {
        let s = sender("smtp://mail.example").expect("valid");
        let email = OutgoingEmail {
            to: "not an address@@example.org".into(),
            ..Default::default()
        };
        let err = s.build(&email, None, "<a@b>").expect_err("refused");
        assert!(matches!(err, SendError::Permanent { .. }));
        assert!(!err.to_string().contains("example.org"), "{err}");
    }

    #[test]
    fn four_hundreds_are_transient_and_five_hundreds_permanent() {
        let reply = |code, enhanced: Option<&str>| Failure::Reply {
            code,
            enhanced: enhanced.map(str::to_string),
        };
        assert_eq!(
            classify(&reply(451, Some("4.3.0"))),
            SendError::transient("smtp 451 4.3.0 (local error in processing)")
        );
        assert_eq!(
            classify(&reply(550, Some("5.1.1"))),
            SendError::Gone {
                reason: "smtp 550 5.1.1 (mailbox unavailable)".into()
            },
            "a hard bounce at send time"
        );
        assert_eq!(
            classify(&reply(552, Some("5.2.2"))),
            SendError::permanent("smtp 552 5.2.2 (exceeded storage allocation)")
        );
        assert!(matches!(
            classify(&reply(550, Some("5.7.1"))),
            SendError::Permanent { .. }
        ));
        assert_eq!(
            classify(&reply(535, None)),
            SendError::permanent("smtp 535 (authentication failed)")
        );
        assert!(classify(&reply(499, None)).is_transient());
    }

    #[test]
    fn connection_trouble_is_transient_and_client_refusals_permanent() {
        assert!(classify(&Failure::TimedOut).is_transient());
        assert!(
            classify(&Failure::Connection(Some(
                std::io::ErrorKind::ConnectionRefused
            )))
            .is_transient()
        );
        assert!(classify(&Failure::Connection(None)).is_transient());
        assert!(classify(&Failure::Tls { certificate: true }).is_transient());
        assert!(classify(&Failure::Tls { certificate: false }).is_transient());
        assert!(classify(&Failure::Garbled).is_transient());
        assert!(classify(&Failure::Shutdown).is_transient());
        assert!(matches!(
            classify(&Failure::Refused(
                "the server does not accept 8-bit content (no 8BITMIME)"
            )),
            SendError::Permanent { .. }
        ));
    }

    /// What a [`relay`] saw.
    #[derive(Default)]
    struct Seen {
        connections: std::sync::atomic::AtomicUsize,
        messages: std::sync::atomic::AtomicUsize,
        /// Every command's verb, in order, across connections.
        verbs: std::sync::Mutex<Vec<String>>,
        /// MAIL commands that arrived with more commands already behind them.
        pipelined: std::sync::atomic::AtomicUsize,
        /// Messages whose final `.` arrived with the next commands behind it.
        chained: std::sync::atomic::AtomicUsize,
    }

    impl Seen {
        fn connections(&self) -> usize {
            self.connections.load(std::sync::atomic::Ordering::SeqCst)
        }
        fn messages(&self) -> usize {
            self.messages.load(std::sync::atomic::Ordering::SeqCst)
        }
        fn verbs(&self) -> Vec<String> {
            self.verbs.lock().expect("verbs").clone()
        }
        fn pipelined(&self) -> usize {
            self.pipelined.load(std::sync::atomic::Ordering::SeqCst)
        }
        fn chained(&self) -> usize {
            self.chained.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    /// How a [`relay`] behaves beyond accepting mail.
    #[derive(Clone, Copy, Default)]
    struct Script {
        /// Answer NOOP 421 without closing, as a relay that is shutting down might.
        refuse_noop: bool,
        /// Offer PIPELINING.
        pipelining: bool,
        /// Hold back the replies to MAIL and RCPT until DATA has arrived: a client that
        /// waits for each reply before the next command stalls.
        hold_until_data: bool,
        /// Answer DATA 354 even when every recipient was refused (RFC 2920 §3.1 allows it).
        data_after_refusal: bool,
        /// Answer RSET 500, as a relay that does not know it might.
        refuse_rset: bool,
        /// Offer STARTTLS, and answer it with a second reply smuggled in behind the 220, as
        /// a man in the middle would to have it read as if it came over TLS.
        starttls_injection: bool,
        /// Never answer the end of the n-th message (counted from 1 across connections).
        silent_message: Option<usize>,
        /// Close the connection right after answering the end of the n-th message.
        close_after_message: Option<usize>,
    }

    /// A minimal SMTP server on 127.0.0.1 that accepts every message except to recipients
    /// whose address starts with `bounce` (550 5.1.1, with the address in the text as real
    /// servers have it), over TLS when given an acceptor.
    async fn relay(tls: Option<tokio_rustls::TlsAcceptor>, refuse_noop: bool) -> (u16, Arc<Seen>) {
        let script = Script {
            refuse_noop,
            ..Script::default()
        };
        scripted_relay(tls, script).await
    }

    async fn scripted_relay(
        tls: Option<tokio_rustls::TlsAcceptor>,
        script: Script,
    ) -> (u16, Arc<Seen>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Seen::default());
        let counts = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counts
                    .connections
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (tls, counts) = (tls.clone(), counts.clone());
                tokio::spawn(async move {
                    let _ = match tls {
                        Some(acceptor) => match acceptor.accept(tcp).await {
                            Ok(stream) => speak_smtp(stream, &counts, script).await,
                            Err(e) => Err(e),
                        },
                        None => speak_smtp(tcp, &counts, script).await,
                    };
                });
            }
        });
        (port, seen)
    }

    async fn speak_smtp<S: AsyncRead + AsyncWrite + Unpin>(
        stream: S,
        seen: &Seen,
        script: Script,
    ) -> io::Result<()> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let (read, mut write) = tokio::io::split(stream);
        let mut reader = tokio::io::BufReader::new(read);
        let mut buffer = String::new();
        write.write_all(b"220 test ESMTP\r\n").await?;
        let mut in_data = false;
        let mut data_lines = 0;
        let mut recipients = 0;
        // Replies held back until DATA, when pipelining.
        let mut held: Vec<u8> = Vec::new();
        loop {
            buffer.clear();
            if reader.read_line(&mut buffer).await? == 0 {
                break;
            }
            let line = buffer.trim_end_matches(['\r', '\n']);
            let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
            if !in_data {
                seen.verbs.lock().expect("verbs").push(verb.clone());
                if verb == "MAIL" && !reader.buffer().is_empty() {
                    seen.pipelined
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            let reply: &[u8] = match (in_data, verb.as_str()) {
                (true, _) if line == "." => {
                    in_data = false;
                    recipients = 0;
                    if !reader.buffer().is_empty() {
                        seen.chained
                            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    // A lone dot ends a DATA the client did not mean to send.
                    if std::mem::take(&mut data_lines) > 0 {
                        let n = 1 + seen
                            .messages
                            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if script.silent_message == Some(n) {
                            continue;
                        }
                        if script.close_after_message == Some(n) {
                            write.write_all(b"250 2.0.0 queued\r\n").await?;
                            return Ok(());
                        }
                    }
                    b"250 2.0.0 queued\r\n"
                }
                (true, _) => {
                    data_lines += 1;
                    continue;
                }
                (false, "EHLO") if script.pipelining => {
                    b"250-test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
                }
                (false, "EHLO") if script.starttls_injection => {
                    b"250-test\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
                }
                (false, "EHLO") => b"250-test\r\n250 8BITMIME\r\n",
                (false, "STAR") if script.starttls_injection => {
                    b"220 2.0.0 Ready to start TLS\r\n250 2.1.0 smuggled\r\n"
                }
                (false, "RCPT") if line.to_ascii_lowercase().contains("<bounce") => {
                    b"550 5.1.1 <bounce@example.org>: Recipient address rejected\r\n"
                }
                (false, "RCPT") => {
                    recipients += 1;
                    b"250 OK\r\n"
                }
                (false, "DATA") if recipients == 0 && !script.data_after_refusal => {
                    b"554 5.5.1 Error: no valid recipients\r\n"
                }
                (false, "DATA") => {
                    in_data = true;
                    b"354 go ahead\r\n"
                }
                (false, "RSET") if script.refuse_rset => b"500 5.5.1 unknown command\r\n",
                (false, "RSET") => {
                    recipients = 0;
                    b"250 OK\r\n"
                }
                (false, "NOOP") if script.refuse_noop => b"421 4.3.2 shutting down\r\n",
                (false, "QUIT") => b"221 bye\r\n",
                _ => b"250 OK\r\n",
            };
            held.extend_from_slice(reply);
            if script.hold_until_data && matches!(verb.as_str(), "MAIL" | "RCPT") {
                continue;
            }
            write.write_all(&held).await?;
            held.clear();
        }
        Ok(())
    }

    fn sender_over(relay: Relay) -> EmailSender {
        EmailSender::over(relay, "noreply@herald.example".parse().expect("from")).expect("pool")
    }

    fn plain_relay(port: u16) -> Relay {
        let url = check_url(&format!("smtp://127.0.0.1:{port}")).expect("valid");
        Relay::new(url).expect("relay")
    }

    /// A message to a recipient the scripted relay refuses with 550 5.1.1.
    fn bounce() -> OutgoingEmail {
        OutgoingEmail {
            to: "bounce@example.org".into(),
            ..note()
        }
    }

    /// Over a fresh scripted relay: a message it refuses, then one it must take. Gives the
    /// refusal and what the relay saw.
    async fn refused_then_sent(script: Script) -> (SendError, Arc<Seen>) {
        let (port, seen) = scripted_relay(None, script).await;
        let sender = sender_over(plain_relay(port));
        let err = sender.send(&bounce()).await.expect_err("refused");
        sender.send(&note()).await.expect("the next message goes");
        (err, seen)
    }

    /// How that refusal is classified: a hard bounce.
    fn hard_bounce() -> SendError {
        SendError::Gone {
            reason: "smtp 550 5.1.1 (mailbox unavailable)".into(),
        }
    }

    fn note() -> OutgoingEmail {
        OutgoingEmail {
            to: "member@example.org".into(),
            subject: "s".into(),
            text: "t".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn with_pipelining_the_envelope_goes_out_in_one_write() {
        let script = Script {
            pipelining: true,
            hold_until_data: true,
            ..Script::default()
        };
        let (port, seen) = scripted_relay(None, script).await;
        let sender = sender_over(plain_relay(port));

        // The relay answers MAIL and RCPT only once DATA has arrived: a client waiting for
        // each reply would stall here.
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(5), sender.send(&note()))
                .await
                .expect("no stall: the commands were pipelined")
                .expect("sent");
        }

        assert_eq!((seen.connections(), seen.messages()), (1, 3));
        assert_eq!(seen.pipelined(), 3);
    }

    #[tokio::test]
    async fn a_refusal_stays_the_outcome_when_the_reset_after_it_fails() {
        for pipelining in [false, true] {
            let script = Script {
                pipelining,
                refuse_rset: true,
                ..Script::default()
            };
            let (err, seen) = refused_then_sent(script).await;
            assert_eq!(
                err,
                hard_bounce(),
                "the recipient's refusal, not the RSET's (pipelining {pipelining})"
            );
            assert_eq!(
                (seen.connections(), seen.messages()),
                (2, 1),
                "a session that could not reset is not reused"
            );
        }
    }

    #[tokio::test]
    async fn a_reply_smuggled_in_behind_the_starttls_answer_breaks_the_session() {
        let script = Script {
            starttls_injection: true,
            ..Script::default()
        };
        let (port, seen) = scripted_relay(None, script).await;
        let url = check_url(&format!("smtp://127.0.0.1:{port}?tls=required")).expect("valid");
        let sender = sender_over(Relay::new(url).expect("relay"));

        let err = sender.send(&note()).await.expect_err("refused before TLS");

        assert_eq!(
            err,
            SendError::transient("smtp server sent an unparseable reply")
        );
        assert_eq!(seen.verbs(), ["EHLO", "STAR"], "nothing after STARTTLS");
        assert_eq!(seen.messages(), 0);
    }

    #[tokio::test]
    async fn pipelining_is_used_only_when_offered_and_not_turned_off() {
        for (offered, url_says, pipelined) in [
            (true, "", 2),
            (true, "?pipelining=off", 0),
            (false, "", 0),
            (false, "?pipelining=on", 0),
        ] {
            let script = Script {
                pipelining: offered,
                ..Script::default()
            };
            let (port, seen) = scripted_relay(None, script).await;
            let url = check_url(&format!("smtp://127.0.0.1:{port}{url_says}")).expect("valid");
            let sender = sender_over(Relay::new(url).expect("relay"));

            sender.send(&note()).await.expect("first");
            sender.send(&note()).await.expect("second");

            assert_eq!(seen.messages(), 2);
            assert_eq!(
                seen.pipelined(),
                pipelined,
                "offered {offered}, url {url_says:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_refused_recipient_leaves_the_session_in_step_for_the_next_message() {
        for (pipelining, data_after_refusal) in [(false, false), (true, false), (true, true)] {
            let script = Script {
                pipelining,
                hold_until_data: pipelining,
                data_after_refusal,
                ..Script::default()
            };
            let (err, seen) = refused_then_sent(script).await;
            assert_eq!(
                err,
                hard_bounce(),
                "pipelining {pipelining}, data after refusal {data_after_refusal}"
            );

            assert_eq!(
                (seen.connections(), seen.messages()),
                (1, 1),
                "one session, and only the real message counted"
            );
            assert!(
                seen.verbs().contains(&"RSET".to_string()),
                "{:?}",
                seen.verbs()
            );
        }
    }

    #[tokio::test]
    async fn sockets_from_the_connection_factory_have_nodelay_set() {
        let (port, seen) = relay(None, false).await;

        let session = plain_relay(port).dial.open().await.expect("smtp session");
        assert!(session.nodelay());
        assert!(session.is_quiet(), "the relay has said all it had to");
        assert_eq!(seen.connections(), 1);
    }

    #[tokio::test]
    async fn smtps_carries_mail_over_a_socket_with_nodelay() {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(TEST_LEAF.as_bytes()).expect("leaf")],
                PrivateKeyDer::from_pem_slice(TEST_LEAF_KEY.as_bytes()).expect("key"),
            )
            .expect("server config");
        let (port, seen) = relay(
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(server))),
            false,
        )
        .await;
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(TEST_CA.as_bytes()).expect("ca"))
            .expect("root");
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let url = check_url(&format!("smtps://127.0.0.1:{port}")).expect("valid");
        let mut relay = Relay::new(url).expect("relay");
        // The real roots would refuse the test CA; everything else is as configured.
        relay.dial.tls = Tls::Implicit(TlsConnector::from(Arc::new(client)));
        let sender = sender_over(relay);

        sender.send(&note()).await.expect("sent over smtps");
        sender.send(&note()).await.expect("sent again");

        assert_eq!((seen.connections(), seen.messages()), (1, 2));
        let session = sender.inner.pool.dial().open().await.expect("smtps");
        assert!(session.nodelay());
    }

    /// A sender over a relay on `port` with these pool settings.
    fn pooled(port: u16, settings: pool::Settings) -> EmailSender {
        let from = "noreply@herald.example".parse().expect("from");
        EmailSender::over_with(plain_relay(port), from, settings).expect("pool")
    }

    /// A relay playing `script`, and a sender over it with these pool settings.
    async fn pooled_over(script: Script, settings: pool::Settings) -> (EmailSender, Arc<Seen>) {
        let (port, seen) = scripted_relay(None, script).await;
        (pooled(port, settings), seen)
    }

    #[tokio::test]
    async fn a_connection_idle_past_the_check_is_reused_only_if_it_answers_noop() {
        for (refuse_noop, connections) in [(false, 1), (true, 2)] {
            let (port, seen) = relay(None, refuse_noop).await;
            // Every connection counts as idle past the check once it has carried a message.
            let sender = pooled(
                port,
                pool::Settings {
                    idle_check: Duration::ZERO,
                    ..POOL
                },
            );
            sender.send(&note()).await.expect("first");
            sender.send(&note()).await.expect("second");

            assert_eq!(seen.messages(), 2);
            assert_eq!(
                seen.connections(),
                connections,
                "refuse_noop: {refuse_noop}"
            );
            assert_eq!(
                seen.verbs().iter().filter(|v| *v == "NOOP").count(),
                1,
                "asked once, before the second message"
            );
        }
    }

    #[tokio::test]
    async fn a_relay_that_stops_answering_costs_its_connection_not_the_next_message() {
        let script = Script {
            silent_message: Some(2),
            ..Script::default()
        };
        let (sender, seen) = pooled_over(
            script,
            pool::Settings {
                io_timeout: Duration::from_millis(300),
                ..POOL
            },
        )
        .await;
        sender.send(&note()).await.expect("first");

        let err = sender.send(&note()).await.expect_err("never answered");
        assert!(matches!(err, SendError::Transient { .. }), "{err:?}");

        sender.send(&note()).await.expect("on a new connection");
        assert_eq!((seen.connections(), seen.messages()), (2, 3));
    }

    #[tokio::test]
    async fn a_send_given_up_on_before_a_connection_took_it_is_never_sent() {
        let script = Script {
            silent_message: Some(1),
            ..Script::default()
        };
        let (sender, seen) = pooled_over(
            script,
            pool::Settings {
                max: 1,
                io_timeout: Duration::from_millis(300),
                ..POOL
            },
        )
        .await;
        let (one, two) = (note(), note());
        let mut first = Box::pin(sender.send(&one));
        assert!(futures_util::poll!(first.as_mut()).is_pending());
        // Queued behind the first message, on the only connection, then dropped, as a
        // delivery that ran out of time is.
        let mut given_up = Box::pin(sender.send(&two));
        assert!(futures_util::poll!(given_up.as_mut()).is_pending());
        drop(given_up);
        first.await.expect_err("the first is never answered");

        sender.send(&note()).await.expect("the third goes");
        assert_eq!(
            seen.messages(),
            2,
            "the first and the third; never the second"
        );
    }

    #[tokio::test]
    async fn a_connection_with_nothing_to_send_closes_after_a_while() {
        let (port, seen) = relay(None, false).await;
        let retire_after = Duration::from_millis(200);
        let sender = pooled(
            port,
            pool::Settings {
                retire_after,
                ..POOL
            },
        );
        sender.send(&note()).await.expect("first");
        assert_eq!(sender.inner.pool.connections(), 1);
        tokio::time::sleep(retire_after * 3).await;
        assert_eq!(sender.inner.pool.connections(), 0, "retired");

        sender.send(&note()).await.expect("on a new connection");
        assert_eq!((seen.connections(), seen.messages()), (2, 2));
    }

    /// Notes to `n` members, sent at once over `sender`: their outcomes, in order.
    async fn at_once(sender: &EmailSender, recipients: &[&str]) -> Vec<Result<Sent, SendError>> {
        let emails: Vec<OutgoingEmail> = recipients
            .iter()
            .map(|to| OutgoingEmail {
                to: to.to_string(),
                ..note()
            })
            .collect();
        futures_util::future::join_all(emails.iter().map(|e| sender.send(e))).await
    }

    #[tokio::test]
    async fn a_message_s_end_carries_the_next_envelope_on_a_busy_connection() {
        let script = Script {
            pipelining: true,
            ..Script::default()
        };
        let (sender, seen) = pooled_over(script, pool::Settings { max: 1, ..POOL }).await;
        let mut recipients = vec!["member@example.org"; 20];
        recipients[7] = "bounce@example.org";

        let outcomes = at_once(&sender, &recipients).await;

        for (i, outcome) in outcomes.iter().enumerate() {
            if i == 7 {
                assert_eq!(outcome.as_ref().expect_err("refused"), &hard_bounce());
            } else {
                assert!(outcome.is_ok(), "{i}: {outcome:?}");
            }
        }
        assert_eq!((seen.connections(), seen.messages()), (1, 19));
        // Every message but the last went out with the next envelope behind its end, except
        // where the refused one broke the chain (its envelope is answered before a body).
        assert!(seen.chained() >= 17, "{} chained", seen.chained());
    }

    #[tokio::test]
    async fn an_envelope_sent_on_a_connection_that_then_closes_goes_on_the_next() {
        let script = Script {
            pipelining: true,
            close_after_message: Some(3),
            ..Script::default()
        };
        let (sender, seen) = pooled_over(script, pool::Settings { max: 1, ..POOL }).await;

        let outcomes = at_once(&sender, &["member@example.org"; 6]).await;

        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        // The fourth envelope went out behind the third message's end, then the relay
        // closed: it was sent again, once, on a second connection.
        assert_eq!((seen.connections(), seen.messages()), (2, 6));
    }

    // A test CA and a leaf it signed for localhost / 127.0.0.1 (P-256, valid until 2126),
    // made with `openssl` for these tests only; the keys protect nothing.
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBmTCCAT+gAwIBAgIUMSHZO22r9E476O4Am358CfqAjO8wCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOSGVyYWxkIHRlc3QgQ0EwIBcNMjYxMTIxMjEwOTE0WhgPMjEy
NjEwMjgyMTA5MTRaMBkxFzAVBgNVBAMMDkhlcmFsZCB0ZXN0IENBMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEXrO6bIBkc+cDIvmn/mDzUIGE28k0taN5C75iWd/Y
fB+xJKIFsy0rbb+accP3hVjdJuLYIiU+oPhvvAKgymc1DqNjMGEwHQYDVR0OBBYE
FF7B1ICSk4fkRrHFRGixpUMe+zPzMB8GA1UdIwQYMBaAFF7B1ICSk4fkRrHFRGix
pUMe+zPzMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgIEMAoGCCqGSM49
BAMCA0gAMEUCIQCL+Lu6Q45bBH/0PhzVu2gpY/9Kz5yfiWUHOO9M7GNvWAIgQuqj
UmPNN5AdS1WgAN52Vl+xEPYyRVVjI9nFnlv7Dvw=
-----END CERTIFICATE-----
";

    const TEST_LEAF: &str = "-----BEGIN CERTIFICATE-----
MIIBxDCCAWqgAwIBAgIUDO36cw9Rsjmj6ThoRSU+2MEIQJIwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOSGVyYWxkIHRlc3QgQ0EwIBcNMjYxMTIxMjEwOTE0WhgPMjEy
NjEwMjgyMTA5MTRaMBQxEjAQBgNVBAMMCWxvY2FsaG9zdDBZMBMGByqGSM49AgEG
CCqGSM49AwEHA0IABOdDEy0IBRuAe4RNV4I0sE5G0RdqnuIm9WJ15ZpRF7sKtUGb
gdnRvqCnYEQ8hp1kygdpZoZi/uXWx1W9f1g6gvyjgZIwgY8wDAYDVR0TAQH/BAIw
ADAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwEwYDVR0lBAwwCgYIKwYBBQUH
AwEwDgYDVR0PAQH/BAQDAgeAMB0GA1UdDgQWBBT4maPpkpvs6q0SbuLyfAmF2NVm
9DAfBgNVHSMEGDAWgBRewdSAkpOH5EaxxURosaVDHvsz8zAKBggqhkjOPQQDAgNI
ADBFAiEA8ZD18KD/n085CtFgQkLHeE+ER3yWClTYOP6VuZ/Zii8CIDhDVo1ZmshE
bnpKPGXoMr92YER8TSfGUu3R4nD/b83K
-----END CERTIFICATE-----
";

    const TEST_LEAF_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQghETnOrSkqbcFcvcU
f+YEaMdrdI35lkJ3FppzaJ31e5OhRANCAATnQxMtCAUbgHuETVeCNLBORtEXap7i
JvVideWaURe7CrVBm4HZ0b6gp2BEPIadZMoHaWaGYv7l1sdVvX9YOoL8
-----END PRIVATE KEY-----
";
}
