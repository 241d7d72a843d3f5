//! Email over SMTP: builds one message for one recipient and hands it to the operator's relay.
//!
//! Owns the SMTP URL contract (`HERALD_SMTP_URL`), the MIME shape of what Herald sends, the
//! Message-ID (our idempotency key for SMTP) and the classification of SMTP failures into
//! [`SendError`] kinds. Must not touch: storage, templates, who receives what.
//!
//! ```text
//! OutgoingEmail ──build──▶ lettre Message ──pooled SMTP connection──▶ relay
//!                 (From, To, Subject, Message-ID, extra headers;         │
//!                  text/plain, or multipart/alternative with html)      ▼
//!                                          Sent { provider_id: Message-ID } / SendError
//! ```
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

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::{AsyncSmtpTransportBuilder, PoolConfig};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::{SendError, Sent};
use crate::settings::{DkimSettings, ProviderSettings};

/// Per-command timeout (connect, each SMTP reply). 30 s: RFC 5321 allows servers minutes, but
/// a relay that takes longer than this is better retried later than waited on, and the
/// dispatcher's lease must outlast one whole send.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle pooled connections kept open: as many as the dispatcher sends at once by default
/// (`HERALD_DELIVERY_CONCURRENCY`), so a busy dispatcher does not close and reopen a
/// connection per message (10 cost 10–20% of the email rate in the benchmark).
const POOL_MAX_IDLE: u32 = 64;

/// Headers this module sets itself; an extra header may not replace them.
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

/// Sends email through one SMTP relay over a pool of connections. Cheap to clone: clones
/// share the pool.
///
/// The pool is created on the first send, inside the Tokio runtime that makes it, and
/// belongs to that runtime: share a sender within one runtime.
#[derive(Clone)]
pub struct EmailSender {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    /// Holds the credentials; never printed.
    builder: AsyncSmtpTransportBuilder,
    transport: OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
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
        let url = smtp_url.expose_secret();
        let endpoint = check_url(url)?;
        let from_mailbox: Mailbox = from.parse().map_err(|_| EmailConfigError::InvalidFrom {
            from: from.to_string(),
            reason: "not an email address",
        })?;
        let message_id_domain = from_mailbox.email.domain().to_string();
        // lettre's own URL parser reads the same forms `check_url` accepted; its error texts
        // are not shown in case a future version quotes the URL.
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|_| {
                EmailConfigError::InvalidUrl("the SMTP client could not use this URL".into())
            })?
            .timeout(Some(SMTP_TIMEOUT))
            .pool_config(PoolConfig::new().max_size(POOL_MAX_IDLE));
        Ok(Self {
            inner: Arc::new(Inner {
                endpoint,
                builder,
                transport: OnceLock::new(),
                from: from_mailbox,
                message_id_domain,
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
        let message_id = self.message_id(email.idempotency_key.as_deref());
        let message = self.build(email, &message_id)?;
        let transport = self
            .inner
            .transport
            .get_or_init(|| self.inner.builder.clone().build());
        match transport.send(message).await {
            Ok(_) => {
                tracing::debug!(%message_id, "smtp relay accepted the message");
                Ok(Sent {
                    provider_id: Some(message_id),
                })
            }
            Err(err) => {
                let error = classify(&Failure::of(&err));
                tracing::debug!(%message_id, %error, "smtp send failed");
                Err(error)
            }
        }
    }

    fn build(&self, email: &OutgoingEmail, message_id: &str) -> Result<Message, SendError> {
        let to: Mailbox = email
            .to
            .parse()
            .map_err(|_| SendError::permanent("invalid recipient address"))?;
        let mut builder = Message::builder()
            .from(self.inner.from.clone())
            .to(to)
            .subject(email.subject.as_str())
            .message_id(Some(message_id.to_string()));
        let mut seen: Vec<String> = Vec::with_capacity(email.headers.len());
        for (name, value) in &email.headers {
            let lower = name.to_ascii_lowercase();
            if !is_field_name(name) {
                return Err(SendError::permanent("invalid extra header name"));
            }
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(SendError::permanent(format!(
                    "extra header {name} is set by the email adapter"
                )));
            }
            if seen.contains(&lower) {
                return Err(SendError::permanent(format!(
                    "extra header {name} given twice"
                )));
            }
            seen.push(lower);
            let name = HeaderName::new_from_ascii(name.clone())
                .map_err(|_| SendError::permanent("invalid extra header name"))?;
            builder = builder.raw_header(HeaderValue::new(name, value.clone()));
        }
        let built = match &email.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                html.clone(),
            )),
            None => builder.singlepart(SinglePart::plain(email.text.clone())),
        };
        // Only the fact is kept: lettre's error text is not ours to vouch for (addresses).
        let mut message = built.map_err(|_| SendError::permanent("message could not be built"))?;
        if let Some(dkim) = &self.inner.dkim {
            message.sign(dkim);
        }
        Ok(message)
    }
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

/// Checks the URL against the contract and summarises it. Reasons never quote the URL.
fn check_url(raw: &str) -> Result<Endpoint, EmailConfigError> {
    let invalid = |reason: String| EmailConfigError::InvalidUrl(reason);
    let url = Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
    let mut tls = None;
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "tls" if tls.is_none() => tls = Some(value.into_owned()),
            "tls" => return Err(invalid("tls is given twice".into())),
            // Neither the parameter nor its value is quoted: a password pasted in the
            // wrong place would otherwise end up in the log.
            _ => {
                return Err(invalid(
                    "unknown query parameter (only tls=required or tls=opportunistic)".into(),
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
    let authenticated = match (url.username(), url.password()) {
        ("", None) => false,
        ("", Some(_)) => return Err(invalid("a password without a user name".into())),
        (_, None) => return Err(invalid("a user name without a password".into())),
        (user, Some(password)) => {
            for part in [user, password] {
                if percent_decode_utf8(part).is_none() {
                    return Err(invalid(
                        "credentials are not valid percent-encoded UTF-8".into(),
                    ));
                }
            }
            true
        }
    };
    Ok(Endpoint {
        host,
        port: url.port().unwrap_or(default_port),
        security,
        authenticated,
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

/// RFC 5322 field-name: printable ASCII except `:` (lettre also refuses spaces).
fn is_field_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 76 && s.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// An SMTP failure reduced to what may be logged: no server text, no address.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// A negative reply: the code and, when the server gave one, the enhanced status code.
    Reply {
        code: u16,
        enhanced: Option<String>,
    },
    TimedOut,
    /// Could not connect, or the connection broke; the IO error kind when there was one.
    Connection(Option<std::io::ErrorKind>),
    /// TLS failed; `certificate` when it was the server's certificate that was refused.
    Tls {
        certificate: bool,
    },
    /// The server's reply could not be parsed.
    Garbled,
    /// The client refused to go on (a capability the message or the URL needs is missing).
    Refused(&'static str),
    Shutdown,
}

impl Failure {
    fn of(err: &lettre::transport::smtp::Error) -> Self {
        use std::error::Error as _;
        if let Some(code) = err.status() {
            let text = err.source().map(|s| s.to_string()).unwrap_or_default();
            return Failure::Reply {
                code: code.into(),
                enhanced: enhanced_status(&text),
            };
        }
        if err.is_timeout() {
            return Failure::TimedOut;
        }
        if err.is_tls() {
            return Failure::Tls { certificate: false };
        }
        if err.is_transport_shutdown() {
            return Failure::Shutdown;
        }
        if err.is_response() {
            return Failure::Garbled;
        }
        if err.is_client() {
            let text = err.source().map(|s| s.to_string()).unwrap_or_default();
            return Failure::Refused(client_refusal(&text));
        }
        // lettre's remaining kinds are connection and network errors.
        let mut source = err.source();
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                // tokio-rustls reports a failed handshake as an InvalidData IO error on the
                // stream, not as lettre's TLS kind.
                if io.kind() == std::io::ErrorKind::InvalidData {
                    let text = io.get_ref().map(|e| e.to_string()).unwrap_or_default();
                    return Failure::Tls {
                        certificate: text.contains("certificate"),
                    };
                }
                return Failure::Connection(Some(io.kind()));
            }
            source = e.source();
        }
        Failure::Connection(None)
    }
}

/// lettre's client-side refusals, mapped to fixed texts so nothing dynamic is passed on.
fn client_refusal(text: &str) -> &'static str {
    if text.contains("SMTPUTF8") {
        "the server does not accept non-ASCII addresses (no SMTPUTF8)"
    } else if text.contains("8BITMIME") {
        "the server does not accept 8-bit content (no 8BITMIME)"
    } else if text.contains("authentication mechanism") {
        "no authentication mechanism in common with the server"
    } else if text.contains("STARTTLS") {
        "the server does not offer STARTTLS"
    } else if text.contains("not encrypted") {
        "the connection is not encrypted"
    } else {
        "the SMTP client refused to send"
    }
}

/// The RFC 3463 enhanced status code at the start of a reply's text (`5.1.1`), if any.
fn enhanced_status(text: &str) -> Option<String> {
    let token = text.split_whitespace().next()?;
    let mut parts = token.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    (parts.next().is_none()
        && matches!(class, "2" | "4" | "5")
        && digits(subject, 3)
        && digits(detail, 3))
    .then(|| token.to_string())
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
    use super::*;

    fn sender(url: &str) -> Result<EmailSender, EmailConfigError> {
        EmailSender::new(&SecretString::from(url), "Herald <noreply@herald.example>")
    }

    fn endpoint(url: &str) -> Endpoint {
        sender(url).expect("valid url").inner.endpoint.clone()
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
        let message = signer.build(&email, "<d1@herald.example>").unwrap();
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
                .build(&email(headers.clone()), "<a@b>")
                .expect_err("refused");
            assert!(matches!(err, SendError::Permanent { .. }), "{headers:?}");
        }
        let ok = s
            .build(&email(vec![("Precedence", "bulk")]), "<a@b>")
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
        let raw =
            String::from_utf8(s.build(&email, "<a@b>").expect("built").formatted()).expect("utf-8");
        assert!(!raw.contains("\r\nBcc:"), "{raw}");
    }

    #[test]
    fn an_invalid_recipient_is_permanent_and_not_echoed() {
        let s = sender("smtp://mail.example").expect("valid");
        let email = OutgoingEmail {
            to: "not an address@@example.org".into(),
            ..Default::default()
        };
        let err = s.build(&email, "<a@b>").expect_err("refused");
        assert!(matches!(err, SendError::Permanent { .. }));
        assert!(!err.to_string().contains("example.org"), "{err}");
    }

    #[test]
    fn enhanced_status_codes_are_read_from_the_reply_text() {
        assert_eq!(
            enhanced_status("5.1.1 <member@example.org>: No such user").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(
            enhanced_status("4.3.0 Try again later").as_deref(),
            Some("4.3.0")
        );
        assert_eq!(enhanced_status("No such user member@example.org"), None);
        assert_eq!(enhanced_status("5.1 short"), None);
        assert_eq!(enhanced_status("7.1.1 bad class"), None);
        assert_eq!(enhanced_status(""), None);
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
            SendError::permanent("smtp 550 5.1.1 (mailbox unavailable)")
        );
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
            classify(&Failure::Refused(client_refusal(
                "Message contains non-ascii chars but server does not support 8BITMIME"
            ))),
            SendError::Permanent { .. }
        ));
    }

    #[test]
    fn client_refusals_map_to_fixed_texts() {
        assert_eq!(
            client_refusal("No compatible authentication mechanism was found"),
            "no authentication mechanism in common with the server"
        );
        assert_eq!(
            client_refusal("something about member@example.org"),
            "the SMTP client refused to send"
        );
    }
}
