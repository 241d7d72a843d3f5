//! One SMTP session with a relay, over a socket this module opens: greeting, EHLO, STARTTLS,
//! AUTH, then one transaction after another — pipelined (RFC 2920) when the relay offers
//! PIPELINING.
//!
//! Owns the conversation: the order of commands, reading replies (bounded), dot-stuffing,
//! and whether a session may carry another message. lettre supplies the vocabulary (its
//! commands, reply parser, EHLO keywords and AUTH responses), but its connection waits for
//! every reply before it writes the next command, which cost two round trips and half the
//! client's CPU per message (measured against postfix's smtp-sink: 28 µs of CPU per message
//! pipelined, 60–67 µs one command at a time). Must not touch: what a message says (the email
//! adapter builds it), the pool, retry policy.
//!
//! ```text
//! open:        TCP (TCP_NODELAY) ─▶ [TLS] ─▶ 220 ─▶ EHLO ─▶ [STARTTLS ─▶ TLS ─▶ EHLO] ─▶ [AUTH]
//! PIPELINING:  MAIL FROM, RCPT TO…, DATA ─one write─▶    ◀─ 250, 250…, 354
//!              message, "." ──────────────one write─▶    ◀─ 250
//! otherwise:   each command waits for its reply
//! ```
//!
//! # Invariants
//! - Every reply to a pipelined group is read before anything else is written, refusals
//!   included, so no reply is ever taken for a later command's.
//! - A session carries another message only from between transactions: after a refused
//!   command it sends RSET; a failed read, write or parse, or a reply that cannot be read,
//!   marks it broken and its owner closes it.
//! - Failures keep reply codes and enhanced status codes, never the server's text (servers
//!   echo addresses in it).
//! - Nothing the relay sent before the TLS handshake is read as if it came over TLS (a reply
//!   smuggled in behind the STARTTLS answer breaks the session instead).

use std::fmt::Display;
use std::io::{self, Write as _};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::commands::{self, Auth, Data, Ehlo, Mail, Noop, Rcpt, Rset};
use lettre::transport::smtp::extension::{
    ClientId, Extension, MailBodyParameter, MailParameter, ServerInfo,
};
use lettre::transport::smtp::response::Response;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_util::either::Either;

/// Longest reply line accepted, CRLF included (RFC 5321 allows 512; postfix reads 2048).
const MAX_LINE: usize = 2048;
/// Longest whole reply accepted (an EHLO reply is the longest a relay sends).
const MAX_REPLY: usize = 64 * 1024;
/// Time one of the relay's addresses may take to accept a connection before the next is
/// tried (the whole send has its own, longer limit).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one write, or one reply, may take unless the session's owner says otherwise:
/// RFC 5321 §4.5.3.2 allows a relay minutes per reply, but one that stalls this long is
/// better left for another session.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// AUTH challenges answered at most before the relay is taken to be stuck.
const MAX_CHALLENGES: usize = 10;

/// Why a `tls=required` session refuses a relay that does not offer STARTTLS.
pub(super) const NO_STARTTLS: &str = "the server does not offer STARTTLS";

type Stream = Either<TcpStream, TlsStream<TcpStream>>;

/// An SMTP failure reduced to what may be logged: no server text, no address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Failure {
    /// A negative reply: the code and, when the server gave one, the enhanced status code.
    Reply {
        code: u16,
        enhanced: Option<String>,
    },
    TimedOut,
    /// Could not connect, or the connection broke; the IO error kind when there was one.
    Connection(Option<io::ErrorKind>),
    /// TLS failed; `certificate` when it was the server's certificate that was refused.
    Tls {
        certificate: bool,
    },
    /// The server's reply could not be read as one.
    Garbled,
    /// The client refused to go on (a capability the message or the URL needs is missing).
    Refused(&'static str),
    Shutdown,
}

impl Failure {
    fn of_reply(reply: &Response) -> Self {
        Failure::Reply {
            code: reply.code().into(),
            enhanced: reply.message().next().and_then(enhanced_status),
        }
    }

    /// An IO error on the way to the relay or on the session.
    pub(super) fn of_io(io: &io::Error) -> Self {
        // tokio-rustls reports a failed handshake as an InvalidData IO error on the stream,
        // not as a TLS error of its own.
        if io.kind() == io::ErrorKind::InvalidData {
            let text = io.get_ref().map(|e| e.to_string()).unwrap_or_default();
            return Failure::Tls {
                certificate: text.contains("certificate"),
            };
        }
        Failure::Connection(Some(io.kind()))
    }
}

/// The RFC 3463 enhanced status code at the start of a reply's text (`5.1.1`), if any.
pub(super) fn enhanced_status(text: &str) -> Option<String> {
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

/// The TLS a session gets.
pub(super) enum Tls {
    None,
    /// STARTTLS after the first EHLO; `required` refuses a relay that does not offer it.
    Starttls {
        required: bool,
        connector: TlsConnector,
    },
    /// smtps://: TLS from the first byte.
    Implicit(TlsConnector),
}

/// Everything needed to open a session with one relay. Not `Debug`: it holds credentials.
pub(super) struct Dial {
    pub host: String,
    pub port: u16,
    pub hello: ClientId,
    pub tls: Tls,
    pub credentials: Option<Credentials>,
    /// Whether to pipeline when the relay offers PIPELINING.
    pub pipelining: bool,
}

impl Dial {
    /// A new session, ready for its first transaction.
    pub(super) async fn open(&self) -> Result<Session, Failure> {
        let host = bare_host(&self.host);
        let tcp = open_tcp(host, self.port).await?;
        let probe = Probe::of(&tcp).map_err(|e| Failure::of_io(&e))?;
        let stream = match &self.tls {
            Tls::Implicit(connector) => Either::Right(handshake(connector, host, tcp).await?),
            Tls::None | Tls::Starttls { .. } => Either::Left(tcp),
        };
        let mut session = Session::new(stream, probe);
        let greeting = session.reply().await?;
        if !has_code(&greeting, 220) {
            return Err(Failure::of_reply(&greeting));
        }
        session.ehlo(&self.hello).await?;
        if let Tls::Starttls {
            required,
            connector,
        } = &self.tls
        {
            if session.server.supports_feature(Extension::StartTls) {
                session.command(commands::Starttls).await?;
                session = session.upgrade(connector, host).await?;
                session.ehlo(&self.hello).await?;
            } else if *required {
                return Err(Failure::Refused(NO_STARTTLS));
            }
        }
        if let Some(credentials) = &self.credentials {
            session.auth(credentials).await?;
        }
        session.pipelining &= self.pipelining;
        Ok(session)
    }
}

/// A message [`Session::send_chain`] sends, and the one to tell its outcome.
pub(super) trait Transaction {
    fn envelope(&self) -> &Envelope;
    /// CRLF lines, as lettre formats them.
    fn message(&self) -> &[u8];
    fn finish(self, outcome: Result<(), Failure>);
}

/// One SMTP session, between transactions whenever its owner holds it.
pub(super) struct Session {
    io: BufReader<Stream>,
    probe: Probe,
    server: ServerInfo,
    pipelining: bool,
    /// What the next write sends, kept to reuse its allocation.
    out: Vec<u8>,
    /// The reply being read, likewise.
    reply: Vec<u8>,
    broken: bool,
    last_reply: Instant,
    io_timeout: Duration,
}

impl Session {
    fn new(stream: Stream, probe: Probe) -> Self {
        Self {
            io: BufReader::new(stream),
            probe,
            server: ServerInfo::default(),
            pipelining: false,
            out: Vec::with_capacity(4096),
            reply: Vec::with_capacity(256),
            broken: false,
            last_reply: Instant::now(),
            io_timeout: IO_TIMEOUT,
        }
    }

    /// Whether the session can no longer be trusted to be between transactions.
    pub(super) fn is_broken(&self) -> bool {
        self.broken
    }

    /// When the relay last answered.
    pub(super) fn last_reply(&self) -> Instant {
        self.last_reply
    }

    /// Whether the relay was silent while the session sat idle: a relay speaks only when
    /// asked, except to say it is closing (a 421, or the end of the stream).
    pub(super) fn is_quiet(&self) -> bool {
        self.io.buffer().is_empty() && self.probe.is_quiet()
    }

    /// Whether the relay answers NOOP.
    pub(super) async fn noop(&mut self) -> bool {
        self.command(Noop).await.is_ok()
    }

    /// Transactions one after the other, starting with `first`: while the relay pipelines,
    /// each message's end goes out in one write with the next one's envelope (RFC 2920 §3.1
    /// lets the commands after DATA's end follow it unanswered), taken from `next` when it
    /// has one ready. Each message is told its outcome as soon as its last reply is read.
    ///
    /// Gives back the message whose envelope was written when the session broke before its
    /// DATA was answered: its transaction never started, so it can go on another session.
    pub(super) async fn send_chain<T: Transaction>(
        &mut self,
        first: T,
        mut next: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        if let Err(failure) = self.start(first.envelope(), first.message()).await {
            first.finish(Err(failure));
            return None;
        }
        let mut current = first;
        loop {
            self.out.clear();
            dot_stuff(current.message(), &mut self.out);
            let mut following = None;
            if self.pipelining {
                while let Some(candidate) = next() {
                    match self.queue_envelope(candidate.envelope(), candidate.message()) {
                        Ok(replies) => {
                            following = Some((candidate, replies));
                            break;
                        }
                        // Refused before a byte went out; the next candidate may do.
                        Err(refused) => candidate.finish(Err(refused)),
                    }
                }
            }
            if let Err(failure) = self.write_out(0..self.out.len()).await {
                current.finish(Err(failure));
                return following.map(|(message, _)| message);
            }
            let ended = self.end().await;
            let broken = self.broken;
            current.finish(ended);
            let (message, replies) = following?;
            if broken {
                return Some(message);
            }
            match self.envelope_replies(replies).await {
                Ok(None) => current = message,
                Ok(Some(refusal)) => {
                    message.finish(Err(refusal));
                    return None;
                }
                Err(_) => return Some(message),
            }
        }
    }

    /// Starts a transaction: the envelope's commands and their replies, up to DATA's 354. A
    /// refusal leaves the session between transactions.
    async fn start(&mut self, envelope: &Envelope, message: &[u8]) -> Result<(), Failure> {
        self.out.clear();
        let replies = self.queue_envelope(envelope, message)?;
        if self.pipelining {
            self.write_out(0..self.out.len()).await?;
            return match self.envelope_replies(replies).await? {
                None => Ok(()),
                Some(refusal) => Err(refusal),
            };
        }
        // One command at a time: each line, then its reply.
        let commands = std::mem::take(&mut self.out);
        let mut rest = commands.as_slice();
        while let Some(end) = memchr::memchr(b'\n', rest) {
            self.out.clear();
            self.out.extend_from_slice(&rest[..=end]);
            rest = &rest[end + 1..];
            self.write_out(0..self.out.len()).await?;
            let reply = self.reply().await?;
            if !reply.is_positive() {
                let refusal = Failure::of_reply(&reply);
                if self.reset(false).await.is_err() {
                    self.broken = true;
                }
                return Err(refusal);
            }
        }
        Ok(())
    }

    /// Appends the envelope's MAIL FROM, RCPT TO… and DATA to `out`, after checking the relay
    /// takes what the message needs; gives the number of replies they will get.
    fn queue_envelope(&mut self, envelope: &Envelope, message: &[u8]) -> Result<usize, Failure> {
        let mut parameters = Vec::new();
        let mut addresses = envelope.from().into_iter().chain(envelope.to());
        if addresses.any(|a| !AsRef::<str>::as_ref(a).is_ascii()) {
            if !self.server.supports_feature(Extension::SmtpUtfEight) {
                return Err(Failure::Refused(
                    "the server does not accept non-ASCII addresses (no SMTPUTF8)",
                ));
            }
            parameters.push(MailParameter::SmtpUtfEight);
        }
        if !message.is_ascii() {
            if !self.server.supports_feature(Extension::EightBitMime) {
                return Err(Failure::Refused(
                    "the server does not accept 8-bit content (no 8BITMIME)",
                ));
            }
            parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let _ = write!(
            self.out,
            "{}",
            Mail::new(envelope.from().cloned(), parameters)
        );
        for to in envelope.to() {
            let _ = write!(self.out, "{}", Rcpt::new(to.clone(), Vec::new()));
        }
        let _ = write!(self.out, "{Data}");
        Ok(envelope.to().len() + 2)
    }

    /// Reads every reply to a pipelined envelope: `None` when DATA was answered 354, else
    /// the first refusal, after getting the session back between transactions.
    async fn envelope_replies(&mut self, replies: usize) -> Result<Option<Failure>, Failure> {
        let mut refusal = None;
        let mut data_accepted = false;
        for _ in 0..replies {
            let reply = self.reply().await?;
            if !reply.is_positive() && refusal.is_none() {
                refusal = Some(Failure::of_reply(&reply));
            }
            data_accepted = has_code(&reply, 354);
        }
        if refusal.is_some() {
            // The refusal is the outcome. Failing to get back between transactions only
            // costs the session.
            if self.reset(data_accepted).await.is_err() {
                self.broken = true;
            }
        }
        Ok(refusal)
    }

    /// The reply to a message's end: the transaction is over either way, and the session
    /// between transactions.
    async fn end(&mut self) -> Result<(), Failure> {
        let reply = self.reply().await?;
        if reply.is_positive() {
            Ok(())
        } else {
            Err(Failure::of_reply(&reply))
        }
    }

    /// Back between transactions after a refused command: RSET, after ending with a lone
    /// dot a DATA the relay accepted although a command before it failed (RFC 2920 §3.1).
    async fn reset(&mut self, end_data: bool) -> Result<(), Failure> {
        if end_data {
            self.out.clear();
            self.out.extend_from_slice(b".\r\n");
            self.write_out(0..3).await?;
            self.reply().await?;
        }
        self.command(Rset).await.map(drop)
    }

    async fn ehlo(&mut self, hello: &ClientId) -> Result<(), Failure> {
        let reply = self.command(Ehlo::new(hello.clone())).await?;
        self.server =
            ServerInfo::from_response(&reply).map_err(|_| self.broke(Failure::Garbled))?;
        // lettre's ServerInfo does not keep PIPELINING; the keyword is the line's first word.
        self.pipelining = reply.message().skip(1).any(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING"))
        });
        Ok(())
    }

    async fn auth(&mut self, credentials: &Credentials) -> Result<(), Failure> {
        const NONE_IN_COMMON: &str = "no authentication mechanism in common with the server";
        let mechanism = self
            .server
            .get_auth_mechanism(&[Mechanism::Plain, Mechanism::Login])
            .ok_or(Failure::Refused(NONE_IN_COMMON))?;
        let first = Auth::new(mechanism, credentials.clone(), None)
            .map_err(|_| Failure::Refused(NONE_IN_COMMON))?;
        let mut reply = self.command(first).await?;
        for _ in 0..MAX_CHALLENGES {
            if !has_code(&reply, 334) {
                return Ok(());
            }
            let answer = Auth::new_from_response(mechanism, credentials.clone(), &reply)
                .map_err(|_| self.broke(Failure::Refused("unexpected AUTH challenge")))?;
            reply = self.command(answer).await?;
        }
        Err(self.broke(Failure::Garbled))
    }

    /// The session over TLS, after the relay agreed to STARTTLS.
    async fn upgrade(self, connector: &TlsConnector, host: &str) -> Result<Session, Failure> {
        if !self.io.buffer().is_empty() {
            // Sent before the handshake yet would be read as if it came over TLS.
            return Err(Failure::Garbled);
        }
        let Either::Left(tcp) = self.io.into_inner() else {
            return Err(Failure::Refused("STARTTLS on a session already encrypted"));
        };
        let tls = handshake(connector, host, tcp).await?;
        Ok(Session::new(Either::Right(tls), self.probe))
    }

    /// Writes `command` and reads its reply, which must be positive.
    async fn command(&mut self, command: impl Display) -> Result<Response, Failure> {
        self.out.clear();
        let _ = write!(self.out, "{command}");
        self.write_out(0..self.out.len()).await?;
        let reply = self.reply().await?;
        if reply.is_positive() {
            Ok(reply)
        } else {
            Err(Failure::of_reply(&reply))
        }
    }

    /// How long one write, or one reply, may take from now on (a session that runs out of
    /// it is broken).
    pub(super) fn set_io_timeout(&mut self, limit: Duration) {
        self.io_timeout = limit;
    }

    async fn write_out(&mut self, range: std::ops::Range<usize>) -> Result<(), Failure> {
        let stream = self.io.get_mut();
        let write = async {
            stream.write_all(&self.out[range]).await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.io_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.broke(Failure::of_io(&e))),
            Err(_) => Err(self.broke(Failure::TimedOut)),
        }
    }

    /// Reads one reply, all its lines, within the session's time for one.
    async fn reply(&mut self) -> Result<Response, Failure> {
        match tokio::time::timeout(self.io_timeout, self.read_reply()).await {
            Ok(read) => read,
            Err(_) => Err(self.broke(Failure::TimedOut)),
        }
    }

    async fn read_reply(&mut self) -> Result<Response, Failure> {
        self.reply.clear();
        loop {
            let start = self.reply.len();
            let read = (&mut self.io)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut self.reply)
                .await;
            let line = &self.reply[start..];
            match read {
                Ok(0) => {
                    return Err(self.broke(Failure::Connection(Some(io::ErrorKind::UnexpectedEof))));
                }
                Ok(_) if !line.ends_with(b"\n") || self.reply.len() > MAX_REPLY => {
                    return Err(self.broke(Failure::Garbled));
                }
                Ok(_) => {}
                Err(e) => return Err(self.broke(Failure::of_io(&e))),
            }
            // Every line but the last has a hyphen after the code.
            if line.get(3) != Some(&b'-') {
                break;
            }
        }
        let parsed = std::str::from_utf8(&self.reply)
            .ok()
            .and_then(|text| text.parse::<Response>().ok());
        match parsed {
            Some(reply) => {
                self.last_reply = Instant::now();
                Ok(reply)
            }
            None => Err(self.broke(Failure::Garbled)),
        }
    }

    fn broke(&mut self, failure: Failure) -> Failure {
        self.broken = true;
        failure
    }

    #[cfg(test)]
    pub(super) fn nodelay(&self) -> bool {
        self.probe.0.nodelay().unwrap_or(false)
    }
}

/// Whether `reply` carries `code`. lettre's `Response::has_code` compares the two as
/// formatted strings, two allocations for every reply of every message.
fn has_code(reply: &Response, code: u16) -> bool {
    u16::from(reply.code()) == code
}

/// `message` as DATA carries it (RFC 5321 §4.5.2): a line that starts with a dot gets
/// another, and the end is CRLF "." CRLF.
fn dot_stuff(message: &[u8], out: &mut Vec<u8>) {
    out.reserve(message.len() + 5);
    if message.first() == Some(&b'.') {
        out.push(b'.');
    }
    // Copied a run at a time between line-starting dots (most messages have none).
    let mut start = 0;
    for at in memchr::memmem::find_iter(message, b"\r\n.") {
        out.extend_from_slice(&message[start..at + 2]);
        out.push(b'.');
        start = at + 2;
    }
    out.extend_from_slice(&message[start..]);
    if !message.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

async fn handshake(
    connector: &TlsConnector,
    host: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, Failure> {
    let name = ServerName::try_from(host.to_string()).map_err(|_| Failure::Connection(None))?;
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| Failure::of_io(&e))
}

/// Connects to the first of the host's addresses that answers, with TCP_NODELAY: a reply
/// held back by Nagle's algorithm waits for the relay's delayed ACK (~40 ms).
async fn open_tcp(host: &str, port: u16) -> Result<TcpStream, Failure> {
    let addresses = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Failure::of_io(&e))?;
    let mut last = None;
    for address in addresses {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                stream.set_nodelay(true).map_err(|e| Failure::of_io(&e))?;
                return Ok(stream);
            }
            Ok(Err(e)) => last = Some(Failure::of_io(&e)),
            Err(_) => last = Some(Failure::Connection(Some(io::ErrorKind::TimedOut))),
        }
    }
    Err(last.unwrap_or(Failure::Connection(None)))
}

/// The host as DNS and TLS want it: an IPv6 literal without its URL brackets.
pub(super) fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// A second handle on a session's socket, to see without a round trip whether the relay
/// closed the connection (or said something out of turn) while it sat in the pool.
struct Probe(std::net::TcpStream);

impl Probe {
    fn of(tcp: &TcpStream) -> io::Result<Self> {
        let socket = std::net::TcpStream::from(tcp.as_fd().try_clone_to_owned()?);
        // Already so (the flag belongs to the socket both handles share, and Tokio set it),
        // but said here because a blocking peek would stall the runtime.
        socket.set_nonblocking(true)?;
        Ok(Self(socket))
    }

    /// True while nothing waits to be read; anything waiting, or an error, means the
    /// session is not fit to carry a message.
    fn is_quiet(&self) -> bool {
        matches!(self.0.peek(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuffed(message: &str) -> String {
        let mut out = Vec::new();
        dot_stuff(message.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_that_start_with_a_dot_get_another() {
        assert_eq!(stuffed("a\r\n.b\r\n"), "a\r\n..b\r\n.\r\n");
        assert_eq!(stuffed(".\r\n"), "..\r\n.\r\n");
        assert_eq!(stuffed("a.b\r\n"), "a.b\r\n.\r\n");
        // A dot after a bare LF is not at the start of an SMTP line.
        assert_eq!(stuffed("a\n.b\r\n"), "a\n.b\r\n.\r\n");
        assert_eq!(
            stuffed("..\r\n.\r\n\r\n.x.\r\n"),
            "...\r\n..\r\n\r\n..x.\r\n.\r\n"
        );
    }

    #[test]
    fn a_reply_has_exactly_its_own_code() {
        let reply = |text: &str| text.parse::<Response>().expect("a reply");
        assert!(has_code(&reply("354 go ahead\r\n"), 354));
        assert!(!has_code(&reply("354 go ahead\r\n"), 250));
        assert!(has_code(&reply("220-first\r\n220 second\r\n"), 220));
        assert!(has_code(&reply("334 VXNlcm5hbWU6\r\n"), 334));
        assert!(!has_code(&reply("535 5.7.8 rejected\r\n"), 334));
        assert!(has_code(&reply("421 closing\r\n"), 421));
    }

    #[test]
    fn the_end_of_data_follows_a_line_break() {
        assert_eq!(stuffed("body"), "body\r\n.\r\n");
        assert_eq!(stuffed("body\r\n"), "body\r\n.\r\n");
        assert_eq!(stuffed(""), "\r\n.\r\n");
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
}
