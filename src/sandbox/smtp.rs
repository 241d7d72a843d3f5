//! A real SMTP server for tests and the demo: drives aiosmtpd, a third-party Python SMTP
//! server (not one we wrote), through `scripts/smtp-sink.py`, so the email adapter is tested
//! against an independent implementation of the protocol rather than against our own
//! reading of it.
//!
//! Owns starting and stopping that process and decoding what it received. Must not be used by
//! the serving path.
//!
//! ```text
//! SmtpServer::start ──spawn──▶ .venv/bin/python scripts/smtp-sink.py   (127.0.0.1, port 0)
//!        ▲                        │ stdout, one line each:
//!        │                        │   <port>
//!        └──reader task◀──────────┘   {"mail_from", "rcpt_tos", "data"} per message
//! ```
//!
//! The interpreter is `HERALD_TEST_PYTHON` when set, else the repository's `.venv` made by
//! `scripts/test-deps`. The process is killed when the [`SmtpServer`] is dropped, and exits
//! by itself when its stdin closes, so a test that dies never leaves it running.
//!
//! Fault injection, by recipient local part: `fail4xx…` is answered `451 4.3.0`,
//! `fail5xx…` is answered `550 5.1.1`.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::watch;

/// How long the script may take to print its port: a cold Python start plus aiosmtpd's
/// import is well under a second; this leaves room for a loaded CI machine.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Options for [`SmtpServer::start_with`].
#[derive(Debug, Clone, Default)]
pub struct SmtpServerOptions {
    /// Require SMTP AUTH (PLAIN or LOGIN, allowed without TLS) with this user and password.
    pub auth: Option<(String, String)>,
    /// Offer STARTTLS with this certificate and key (PEM files).
    pub starttls: Option<(PathBuf, PathBuf)>,
    /// Advertise PIPELINING (RFC 2920), so clients send the envelope in one write.
    pub pipelining: bool,
}

/// One message as the server received it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ReceivedEmail {
    /// The envelope's MAIL FROM.
    pub mail_from: String,
    /// The envelope's accepted RCPT TOs.
    pub rcpt_tos: Vec<String>,
    /// The message as sent after DATA (headers and body, CRLF line ends).
    #[serde(rename = "data")]
    pub raw: String,
}

/// A running aiosmtpd, listening on 127.0.0.1.
pub struct SmtpServer {
    port: u16,
    received: Arc<Mutex<Vec<ReceivedEmail>>>,
    /// Number of messages received so far; `wait_for` waits on it.
    count: watch::Receiver<usize>,
    // Held so the process lives exactly as long as this value: `kill_on_drop` ends it, and
    // closing stdin makes it exit on its own should the kill be missed.
    _child: Child,
    _stdin: ChildStdin,
}

impl std::fmt::Debug for SmtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpServer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl SmtpServer {
    /// Starts a plain SMTP server accepting any message.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(SmtpServerOptions::default()).await
    }

    pub async fn start_with(options: SmtpServerOptions) -> std::io::Result<Self> {
        let python = python()?;
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/smtp-sink.py");
        let mut command = Command::new(&python);
        command.arg(&script);
        if let Some((user, password)) = &options.auth {
            command.arg("--auth").arg(format!("{user}:{password}"));
        }
        if let Some((cert, key)) = &options.starttls {
            command.arg("--starttls").arg(cert).arg(key);
        }
        if options.pipelining {
            command.arg("--pipelining");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // A traceback belongs in the test's output.
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "could not start the SMTP test server with {}: {e}",
                        python.display()
                    ),
                )
            })?;
        let stdin = child.stdin.take().ok_or_else(|| other("no stdin pipe"))?;
        let stdout = child.stdout.take().ok_or_else(|| other("no stdout pipe"))?;
        let mut lines = BufReader::new(stdout).lines();

        let first = tokio::time::timeout(START_TIMEOUT, lines.next_line())
            .await
            .map_err(|_| other("the SMTP test server did not report its port in time"))??;
        let port: u16 = match first {
            Some(line) => line.trim().parse().map_err(|_| {
                other(format!(
                    "the SMTP test server printed {line:?} instead of its port"
                ))
            })?,
            None => {
                let status = child.wait().await?;
                return Err(other(format!(
                    "the SMTP test server exited ({status}) before listening; \
                     its error is above (is aiosmtpd installed? run scripts/test-deps)"
                )));
            }
        };

        let received: Arc<Mutex<Vec<ReceivedEmail>>> = Arc::default();
        let (count_tx, count) = watch::channel(0);
        let sink = received.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<ReceivedEmail>(&line) {
                    Ok(email) => {
                        let n = {
                            let mut all = sink.lock().unwrap_or_else(|e| e.into_inner());
                            all.push(email);
                            all.len()
                        };
                        count_tx.send_replace(n);
                    }
                    Err(e) => tracing::warn!(error = %e, "smtp test server printed a bad line"),
                }
            }
        });

        Ok(Self {
            port,
            received,
            count,
            _child: child,
            _stdin: stdin,
        })
    }

    /// `smtp://127.0.0.1:PORT`, as `HERALD_SMTP_URL` expects it.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message received so far, in arrival order.
    pub fn messages(&self) -> Vec<ReceivedEmail> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until at least `n` messages have arrived and returns all of them.
    ///
    /// # Panics
    /// When fewer than `n` arrive within `timeout` (this is a test helper: the panic message
    /// says how many did).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedEmail> {
        let mut count = self.count.clone();
        let reached = tokio::time::timeout(timeout, count.wait_for(|&c| c >= n)).await;
        if !matches!(reached, Ok(Ok(_))) {
            panic!(
                "expected {n} email(s) at the SMTP test server within {timeout:?}, got {}",
                self.messages().len()
            );
        }
        self.messages()
    }
}

impl ReceivedEmail {
    fn parsed(&self) -> Option<mailparse::ParsedMail<'_>> {
        mailparse::parse_mail(self.raw.as_bytes()).ok()
    }

    /// The first header of that name (case-insensitive), unfolded and RFC 2047-decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        use mailparse::MailHeaderMap;
        self.parsed()?.headers.get_first_value(name)
    }

    /// The decoded Subject.
    pub fn subject(&self) -> Option<String> {
        self.header("Subject")
    }

    /// The text/plain part (the whole body for a single-part message), transfer-decoded.
    /// Empty when there is none.
    pub fn text_body(&self) -> String {
        self.parsed()
            .and_then(|mail| part_of(&mail, "text/plain"))
            .unwrap_or_default()
    }

    /// The text/html part, transfer-decoded.
    pub fn html_body(&self) -> Option<String> {
        part_of(&self.parsed()?, "text/html")
    }
}

/// The first part with this MIME type, depth first.
fn part_of(mail: &mailparse::ParsedMail<'_>, mimetype: &str) -> Option<String> {
    if mail.subparts.is_empty() {
        return (mail.ctype.mimetype.eq_ignore_ascii_case(mimetype))
            .then(|| mail.get_body().ok())
            .flatten();
    }
    mail.subparts
        .iter()
        .find_map(|part| part_of(part, mimetype))
}

/// The interpreter that has aiosmtpd.
fn python() -> std::io::Result<PathBuf> {
    if let Some(path) = std::env::var_os("HERALD_TEST_PYTHON") {
        return Ok(PathBuf::from(path));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        Ok(venv)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "{} not found: run scripts/test-deps to install the SMTP test server \
                 (aiosmtpd), or set HERALD_TEST_PYTHON to a python that has it",
                venv.display()
            ),
        ))
    }
}

fn other(message: impl Into<String>) -> std::io::Error {
    std::io::Error::other(message.into())
}
