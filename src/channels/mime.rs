//! A message's MIME form built by lettre once and completed per recipient.
//!
//! Building a message with lettre's builder cost about an eighth of the dispatcher's CPU per
//! email: it parses the From and To headers back into mailboxes (to check the originator and
//! make the envelope), picks a boundary, and formats every header and part again, for content
//! that is the same for every member of a publication but for a few values. A [`MimeFrame`]
//! is what lettre formats for that content with markers in place of those values, cut at the
//! markers; `MimeFrame::fill` puts one recipient's values back. A value is put in only where
//! lettre would have written it as it is (see `verbatim`); anything else is left to the
//! builder, so the filled message is byte for byte what lettre builds (boundary and Date
//! aside).
//!
//! Owns the splice only. What the bodies say belongs to `deliver::render`, their encoding to
//! [`super::qp`], and the headers' rules (reserved names, DKIM) to [`super::email`].

use lettre::Message;
use lettre::message::header::{ContentTransferEncoding, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart};

/// What one recipient's message puts in a frame's places.
pub(super) struct Values<'a> {
    /// The From header's value, as lettre encodes it.
    pub from: &'a str,
    pub to: &'a str,
    pub message_id: &'a str,
    /// The Date header's value, as lettre encodes it.
    pub date: &'a str,
    /// The extra headers' values, in the frame's order.
    pub headers: &'a [&'a str],
    /// The bodies, already in quoted-printable.
    pub text: &'a [u8],
    pub html: &'a [u8],
}

/// A multipart/alternative message (text, then HTML, both quoted-printable) with places for
/// what differs from one recipient to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MimeFrame {
    subject: String,
    segments: Vec<Segment>,
    /// The extra headers' names, in order; their values are given per message.
    header_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Fixed(Vec<u8>),
    Slot(Slot),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    From,
    To,
    MessageId,
    Date,
    Header(usize),
    Text,
    Html,
}

/// The domain of the marker addresses (RFC 2606 keeps `.invalid` from ever resolving).
const MARK_DOMAIN: &str = "@herald.invalid";

/// Extra headers a frame has places for at most (each marker tag is two characters).
const MAX_HEADERS: usize = 10;

impl MimeFrame {
    /// The frame of a message with this subject and these extra headers (names only: their
    /// values are given per message). `None` when lettre would not build it (a header name it
    /// refuses), or when the header names are not ones the caller may set; the caller then
    /// builds each message whole.
    pub fn new(subject: &str, header_names: &[&str]) -> Option<Self> {
        if header_names.len() > MAX_HEADERS {
            return None;
        }
        let prefix = format!("herald{:032x}", rand::random::<u128>());
        let mark = |tag: &str| format!("{prefix}{tag}");
        let mailbox =
            |tag: &str| -> Option<Mailbox> { format!("{}{MARK_DOMAIN}", mark(tag)).parse().ok() };
        let mut builder = Message::builder()
            .from(mailbox("fr")?)
            .to(mailbox("to")?)
            .subject(subject)
            .message_id(Some(mark("id")));
        for (i, name) in header_names.iter().enumerate() {
            let name = HeaderName::new_from_ascii(name.to_string()).ok()?;
            builder = builder.raw_header(HeaderValue::new(name, mark(&format!("h{i}"))));
        }
        let body = |tag: &str| {
            Body::dangerous_pre_encoded(
                mark(tag).into_bytes(),
                ContentTransferEncoding::QuotedPrintable,
            )
        };
        let message = builder
            .multipart(MultiPart::alternative_plain_html(body("tx"), body("ht")))
            .ok()?;
        let formatted = mark_date(message.formatted(), &mark("dt"))?;
        let segments = split(&formatted, prefix.as_bytes())?;
        let frame = Self {
            subject: subject.to_string(),
            segments,
            header_names: header_names.iter().map(|n| n.to_string()).collect(),
        };
        // Every place once, or the frame is not what this module expects lettre to write.
        let slots = |s: Slot| {
            frame
                .segments
                .iter()
                .filter(|seg| **seg == Segment::Slot(s))
                .count()
        };
        let fixed = [
            Slot::From,
            Slot::To,
            Slot::MessageId,
            Slot::Date,
            Slot::Text,
            Slot::Html,
        ];
        let all_once = fixed.into_iter().all(|s| slots(s) == 1)
            && (0..header_names.len()).all(|i| slots(Slot::Header(i)) == 1);
        all_once.then_some(frame)
    }

    /// The subject every message of this frame has.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The extra headers' names this frame has places for, in order.
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.header_names.iter().map(String::as_str)
    }

    /// The message with `values` in place; `None` when a value is not one lettre would have
    /// written as it is (the caller then builds the message whole).
    pub(super) fn fill(&self, values: &Values<'_>) -> Option<Vec<u8>> {
        if values.headers.len() != self.header_names.len() {
            return None;
        }
        // From and Date come encoded by lettre already; the rest must be what it would write.
        let mut written_as_given = [values.to, values.message_id]
            .into_iter()
            .chain(values.headers.iter().copied());
        if !written_as_given.all(verbatim) {
            return None;
        }
        let value = |slot: Slot| -> &[u8] {
            match slot {
                Slot::From => values.from.as_bytes(),
                Slot::To => values.to.as_bytes(),
                Slot::MessageId => values.message_id.as_bytes(),
                Slot::Date => values.date.as_bytes(),
                Slot::Header(i) => values.headers[i].as_bytes(),
                Slot::Text => values.text,
                Slot::Html => values.html,
            }
        };
        let size = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Fixed(bytes) => bytes.len(),
                Segment::Slot(slot) => value(*slot).len(),
            })
            .sum();
        let mut out = Vec::with_capacity(size);
        for segment in &self.segments {
            out.extend_from_slice(match segment {
                Segment::Fixed(bytes) => bytes,
                Segment::Slot(slot) => value(*slot),
            });
        }
        Some(out)
    }
}

/// Whether lettre writes `value` as it is in a header: one word of printable ASCII. Its
/// encoder folds only at spaces and RFC 2047-encodes only words with other bytes, so such a
/// value passes through untouched (and cannot carry a line break into the header block).
fn verbatim(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic())
}

/// `formatted` with its Date header's value replaced by `marker` (lettre sets the Date when
/// it builds the message; each send needs its own).
fn mark_date(formatted: Vec<u8>, marker: &str) -> Option<Vec<u8>> {
    let head_end = memchr::memmem::find(&formatted, b"\r\n\r\n")?;
    let start = if formatted.starts_with(b"Date: ") {
        0
    } else {
        memchr::memmem::find(&formatted[..head_end], b"\r\nDate: ")? + 2
    };
    let value = start + "Date: ".len();
    let end = value + memchr::memmem::find(&formatted[value..], b"\r\n")?;
    let mut out = Vec::with_capacity(formatted.len());
    out.extend_from_slice(&formatted[..value]);
    out.extend_from_slice(marker.as_bytes());
    out.extend_from_slice(&formatted[end..]);
    Some(out)
}

/// `formatted` cut at each `prefix`: the two characters after it name the place, and a
/// marker address's domain goes with it.
fn split(formatted: &[u8], prefix: &[u8]) -> Option<Vec<Segment>> {
    let mut segments = Vec::new();
    let mut rest = formatted;
    while let Some(at) = memchr::memmem::find(rest, prefix) {
        if at > 0 {
            segments.push(Segment::Fixed(rest[..at].to_vec()));
        }
        let after = &rest[at + prefix.len()..];
        let tag = after.get(..2)?;
        let slot = match tag {
            b"fr" => Slot::From,
            b"to" => Slot::To,
            b"id" => Slot::MessageId,
            b"dt" => Slot::Date,
            b"tx" => Slot::Text,
            b"ht" => Slot::Html,
            [b'h', d] if d.is_ascii_digit() => Slot::Header(usize::from(d - b'0')),
            _ => return None,
        };
        let mut after = &after[2..];
        if matches!(slot, Slot::From | Slot::To) {
            after = after.strip_prefix(MARK_DOMAIN.as_bytes())?;
        }
        segments.push(Segment::Slot(slot));
        rest = after;
    }
    if !rest.is_empty() {
        segments.push(Segment::Fixed(rest.to_vec()));
    }
    Some(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<'a>(headers: &'a [&'a str]) -> Values<'a> {
        Values {
            from: "Herald <noreply@herald.example>",
            to: "member@example.org",
            message_id: "<d1@herald.example>",
            date: "Sun, 06 Dec 2026 03:00:00 +0000",
            headers,
            text: b"text=\r\n",
            html: b"<p>html</p>",
        }
    }

    #[test]
    fn a_frame_has_each_place_once_and_fills_them_in_order() {
        let frame = MimeFrame::new("Hello", &["List-Unsubscribe"]).expect("a frame");
        assert_eq!(frame.subject(), "Hello");
        assert_eq!(
            frame.header_names().collect::<Vec<_>>(),
            ["List-Unsubscribe"]
        );
        let filled = frame.fill(&values(&["<https://h/u>"])).expect("filled");
        let filled = String::from_utf8(filled).expect("ASCII");
        let head = filled.split("\r\n\r\n").next().expect("a header block");
        for line in [
            "From: Herald <noreply@herald.example>",
            "To: member@example.org",
            "Subject: Hello",
            "Message-ID: <d1@herald.example>",
            "List-Unsubscribe: <https://h/u>",
            "Date: Sun, 06 Dec 2026 03:00:00 +0000",
        ] {
            assert!(head.split("\r\n").any(|l| l == line), "{line} in {head}");
        }
        let text = filled.find("\r\n\r\ntext=\r\n\r\n").expect("the text body");
        let html = filled
            .find("\r\n\r\n<p>html</p>\r\n")
            .expect("the HTML body");
        assert!(text < html, "text first, then HTML");
        assert!(!filled.contains("herald.invalid"), "no marker is left");
    }

    #[test]
    fn values_lettre_would_rewrite_are_refused() {
        let frame = MimeFrame::new("Hello", &["List-Unsubscribe"]).expect("a frame");
        for header in ["<https://h/u?a b>", "Lïst", "a\r\nBcc: x@y", ""] {
            assert!(frame.fill(&values(&[header])).is_none(), "{header:?}");
        }
        assert!(frame.fill(&values(&[])).is_none(), "one value per header");
        let to = Values {
            to: "Ada <ada@example.org>",
            ..values(&["<https://h/u>"])
        };
        assert!(frame.fill(&to).is_none());
    }

    #[test]
    fn a_header_name_lettre_refuses_makes_no_frame() {
        assert!(MimeFrame::new("Hello", &["Bad Name"]).is_none());
        let many = ["X-A"; MAX_HEADERS + 1];
        assert!(MimeFrame::new("Hello", &many).is_none());
    }
}
