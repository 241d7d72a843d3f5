//! Quoted-printable bodies encoded once and completed per message.
//!
//! One publication's email differs from member to member only by the member's links, yet
//! encoding a body (CRLF line endings, choosing a transfer encoding, quoted-printable) cost
//! more than a sixth of the dispatcher's CPU when done for every member. A [`QpTemplate`]
//! encodes the fixed text once; [`QpTemplate::fill`] encodes only the values and sets each
//! between two soft line breaks (`=` CRLF, RFC 2045 §6.7 rule 5), which decoders drop: the
//! filled body decodes to the text with the values in place, and no encoded line is longer
//! than 76 characters.
//!
//! Owns the encoding only; what the text says belongs to `deliver::render`, and the MIME
//! message around it to [`super::email`].

/// One piece of a body: text, or the place of the `n`-th value given to [`QpTemplate::fill`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    Value(usize),
}

/// A body in quoted-printable with places for values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QpTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Encoded(Vec<u8>),
    Value(usize),
}

/// Encoded lines stop one short of RFC 2045's 76 characters so that the soft line break put
/// after a piece still fits on its last line.
const LINE: usize = 75;

impl QpTemplate {
    /// The template of a body made of `pieces`; `None` where quoted-printable is not how the
    /// text should travel: where more than a third of its bytes would need escaping (text
    /// mostly in a non-Latin script), base64 is shorter, and lettre chooses it.
    pub fn new(pieces: &[Piece<'_>]) -> Option<Self> {
        let (mut bytes, mut escaped) = (0, 0);
        for piece in pieces {
            if let Piece::Text(text) = piece {
                bytes += text.len();
                escaped += text
                    .bytes()
                    .filter(|b| !matches!(b, b'\t' | b'\r' | b'\n' | b' '..=b'~'))
                    .count();
            }
        }
        if escaped * 3 > bytes {
            return None;
        }
        // Text pieces in a row are encoded as one, so their lines wrap as one text.
        let mut parts = Vec::new();
        let mut text = String::new();
        for piece in pieces {
            match piece {
                Piece::Text(t) => text.push_str(t),
                Piece::Value(n) => {
                    parts.push(Part::Encoded(encode(&std::mem::take(&mut text))));
                    parts.push(Part::Value(*n));
                }
            }
        }
        parts.push(Part::Encoded(encode(&text)));
        Some(Self { parts })
    }

    /// The encoded body with `values` in their places (a place with no value stays empty).
    pub fn fill(&self, values: &[&str]) -> Vec<u8> {
        let encoded: Vec<Vec<u8>> = values.iter().map(|v| encode(v)).collect();
        let size: usize = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Encoded(bytes) => bytes.len(),
                Part::Value(n) => encoded.get(*n).map_or(0, Vec::len) + 6,
            })
            .sum();
        let mut out = Vec::with_capacity(size);
        // A value starts and ends its own lines (soft breaks on both sides), so neither its
        // length nor the text around it can make a line too long. The break after a value
        // waits for what follows: a body ends as its text does, never on a soft break.
        let mut after_value = false;
        for part in &self.parts {
            let (bytes, is_value) = match part {
                Part::Encoded(bytes) => (bytes.as_slice(), false),
                Part::Value(n) => (encoded.get(*n).map_or(&[][..], Vec::as_slice), true),
            };
            if !bytes.is_empty() {
                if (after_value || is_value) && !out.is_empty() {
                    out.extend_from_slice(b"=\r\n");
                }
                out.extend_from_slice(bytes);
            }
            // An empty value still parts the text around it: each side's last line was sized
            // to end where it does.
            after_value = is_value || (after_value && bytes.is_empty());
        }
        out
    }
}

/// `text` with CRLF line endings, as lettre sends a body, in quoted-printable.
fn encode(text: &str) -> Vec<u8> {
    let options = quoted_printable::Options::default().line_length_limit(LINE);
    // A value (a member's link) has no line break: nothing to convert, no copy to make.
    if !text.contains('\n') {
        return quoted_printable::encode_with_options(text, options).into_bytes();
    }
    let mut crlf = String::with_capacity(text.len() + text.len() / 32);
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        crlf.push_str(line);
        if lines.peek().is_some() {
            if !line.ends_with('\r') {
                crlf.push('\r');
            }
            crlf.push('\n');
        }
    }
    quoted_printable::encode_with_options(crlf, options).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quoted_printable::{ParseMode, decode};

    /// What the filled body must decode to: the pieces and values in order, CRLF lines.
    fn plain(pieces: &[Piece<'_>], values: &[&str]) -> Vec<u8> {
        let mut text = String::new();
        for piece in pieces {
            match piece {
                Piece::Text(t) => text.push_str(t),
                Piece::Value(n) => text.push_str(values[*n]),
            }
        }
        text.replace("\r\n", "\n")
            .replace('\n', "\r\n")
            .into_bytes()
    }

    fn check(pieces: &[Piece<'_>], values: &[&str]) {
        let template = QpTemplate::new(pieces).expect("mostly ASCII");
        let filled = template.fill(values);
        // Strict decoding also refuses any line over 76 characters.
        let decoded = decode(&filled, ParseMode::Strict)
            .unwrap_or_else(|e| panic!("{e:?} in {:?}", String::from_utf8_lossy(&filled)));
        assert_eq!(
            String::from_utf8_lossy(&decoded),
            String::from_utf8_lossy(&plain(pieces, values))
        );
        assert!(filled.is_ascii());
        for line in filled.split(|b| *b == b'\n') {
            assert!(line.len() <= 77, "{} bytes with its CR", line.len());
        }
    }

    #[test]
    fn a_filled_body_decodes_to_the_text_with_its_values() {
        let link = "https://herald.example/manage?t=abc%3D%3D&x=1&lang=de";
        let long = format!("https://herald.example/unsubscribe?t={}", "Zq9=".repeat(40));
        let footer = "—\nVous recevez ceci car vous êtes abonné·e à la communauté.\n";
        let wide = "x ".repeat(100);
        let cases: Vec<Vec<Piece<'_>>> = vec![
            vec![Piece::Text("Manage: "), Piece::Value(0), Piece::Text("\n")],
            vec![
                Piece::Text(footer),
                Piece::Text("Gérer : "),
                Piece::Value(0),
                Piece::Text(" · "),
                Piece::Value(1),
                Piece::Text("\n"),
            ],
            // A value first and last, text with trailing spaces before a line break, a line
            // far longer than 76 characters, and a line that starts with a dot.
            vec![
                Piece::Value(1),
                Piece::Text(" trailing   \n"),
                Piece::Text(&wide),
                Piece::Text("\n.dot\n"),
                Piece::Value(0),
            ],
            vec![
                Piece::Text("<a href=\""),
                Piece::Value(0),
                Piece::Text("\">=</a>\r\n"),
            ],
        ];
        for pieces in &cases {
            check(pieces, &[link, &long]);
            check(pieces, &["", ""]);
        }
    }

    #[test]
    fn text_mostly_in_another_script_is_left_to_base64() {
        assert!(
            QpTemplate::new(&[Piece::Text("Вы получили это письмо"), Piece::Value(0)]).is_none()
        );
        assert!(
            QpTemplate::new(&[Piece::Text("Ünïcödé, mostly ASCII"), Piece::Value(0)]).is_some()
        );
    }
}
