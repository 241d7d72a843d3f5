//! Rendering one publication for one channel, in the member's language where Herald has it.
//!
//! Templates live in `templates/delivery/` (minijinja, embedded at build time): one template
//! per channel shared by every language, and the words that differ per language in
//! `strings.toml`. HTML is auto-escaped (the template name ends in `.html`), text is not.
//! Everything here is pure: no storage, no network.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::{Environment, context};
use serde::Serialize;

use crate::channels::email::QpBodies;
use crate::channels::mime::MimeFrame;
use crate::channels::qp::{Piece, QpTemplate};
use crate::channels::webpush::MAX_PAYLOAD;
use crate::storage::PublicationContext;

/// The language used when a member set none, or one Herald has no words for.
pub const DEFAULT_LANGUAGE: &str = "en";

/// An SMS longer than this is cut: three GSM-7 segments, a bound on what one item may cost.
pub const MAX_SMS_CHARS: usize = 459;
/// Telegram's limit for one message's text.
pub const MAX_TELEGRAM_CHARS: usize = 4096;

const TEMPLATES: &[(&str, &str)] = &[
    (
        "subject.txt",
        include_str!("../../templates/delivery/subject.txt"),
    ),
    (
        "email.txt",
        include_str!("../../templates/delivery/email.txt"),
    ),
    (
        "email.html",
        include_str!("../../templates/delivery/email.html"),
    ),
    ("sms.txt", include_str!("../../templates/delivery/sms.txt")),
    (
        "digest_subject.txt",
        include_str!("../../templates/delivery/digest_subject.txt"),
    ),
    (
        "digest_email.txt",
        include_str!("../../templates/delivery/digest_email.txt"),
    ),
    (
        "digest_email.html",
        include_str!("../../templates/delivery/digest_email.html"),
    ),
    (
        "digest_sms.txt",
        include_str!("../../templates/delivery/digest_sms.txt"),
    ),
    (
        "digest_telegram.txt",
        include_str!("../../templates/delivery/digest_telegram.txt"),
    ),
    (
        "telegram.txt",
        include_str!("../../templates/delivery/telegram.txt"),
    ),
];
const STRINGS: &str = include_str!("../../templates/delivery/strings.toml");

/// A rendered email: subject, text and HTML bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// One publication's email in one language with the member's two links left out, so that
/// rendering (three templates) happens once per publication and language instead of once per
/// member; [`EmailFrame::complete`] puts a member's links in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailFrame {
    subject: String,
    text: Vec<Part>,
    html: Vec<Part>,
    /// Both bodies in quoted-printable, encoded once too (`None` for text SMTP should carry
    /// in base64): see [`EmailFrame::encoded`].
    encoded: Option<(QpTemplate, QpTemplate)>,
    /// The whole message's MIME form around those bodies, made once too.
    mime: Option<Arc<MimeFrame>>,
}

/// The headers a delivery email carries besides the ones the email adapter sets: RFC 8058
/// one-click unsubscribe.
const LIST_HEADERS: [&str; 2] = ["List-Unsubscribe", "List-Unsubscribe-Post"];

/// [`LIST_HEADERS`] with their values for a member whose one-click link is `unsubscribe_url`.
pub fn list_headers(unsubscribe_url: &str) -> Vec<(String, String)> {
    let [unsubscribe, post] = LIST_HEADERS;
    vec![
        (unsubscribe.into(), format!("<{unsubscribe_url}>")),
        (post.into(), "List-Unsubscribe=One-Click".into()),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Fixed(String),
    Manage,
    Unsubscribe,
}

impl EmailFrame {
    fn new(subject: String, text: Vec<Part>, html: Vec<Part>) -> Self {
        let template = |parts: &[Part]| {
            let pieces: Vec<Piece<'_>> = parts
                .iter()
                .map(|p| match p {
                    Part::Fixed(s) => Piece::Text(s),
                    Part::Manage => Piece::Value(0),
                    Part::Unsubscribe => Piece::Value(1),
                })
                .collect();
            QpTemplate::new(&pieces)
        };
        let encoded = template(&text).zip(template(&html));
        let mime = encoded
            .as_ref()
            .and_then(|_| MimeFrame::new(&subject, &LIST_HEADERS))
            .map(Arc::new);
        Self {
            subject,
            text,
            html,
            encoded,
            mime,
        }
    }

    /// The email as [`Renderer::email`] renders it for these links. The dispatcher uses
    /// [`EmailFrame::for_member`]; this and [`EmailFrame::encoded`] are what tests hold it to.
    #[cfg(test)]
    pub fn complete(&self, manage_url: &str, unsubscribe_url: &str) -> RenderedEmail {
        self.complete_with(&Links::new(manage_url, unsubscribe_url))
    }

    /// [`EmailFrame::complete`]'s bodies in quoted-printable, as SMTP carries them, without
    /// encoding the whole text again for each member.
    #[cfg(test)]
    pub fn encoded(&self, manage_url: &str, unsubscribe_url: &str) -> Option<QpBodies> {
        self.encoded_with(&Links::new(manage_url, unsubscribe_url))
    }

    /// Both of the above for one member, the links HTML-escaped once for the two (escaping
    /// them was a twentieth of the dispatcher's allocations).
    pub fn for_member(
        &self,
        manage_url: &str,
        unsubscribe_url: &str,
    ) -> (RenderedEmail, Option<QpBodies>) {
        let links = Links::new(manage_url, unsubscribe_url);
        (self.complete_with(&links), self.encoded_with(&links))
    }

    fn complete_with(&self, links: &Links<'_>) -> RenderedEmail {
        RenderedEmail {
            subject: self.subject.clone(),
            text: fill(&self.text, links.manage, links.unsubscribe),
            html: fill(&self.html, &links.manage_html, &links.unsubscribe_html),
        }
    }

    fn encoded_with(&self, links: &Links<'_>) -> Option<QpBodies> {
        let (text, html) = self.encoded.as_ref()?;
        Some(QpBodies {
            text: text.fill(&[links.manage, links.unsubscribe]),
            html: Some(html.fill(&[&links.manage_html, &links.unsubscribe_html])),
            mime: self.mime.clone(),
        })
    }
}

/// A member's two links, as they are and HTML-escaped.
struct Links<'a> {
    manage: &'a str,
    unsubscribe: &'a str,
    manage_html: String,
    unsubscribe_html: String,
}

impl<'a> Links<'a> {
    fn new(manage: &'a str, unsubscribe: &'a str) -> Self {
        Self {
            manage,
            unsubscribe,
            manage_html: escaped(manage),
            unsubscribe_html: escaped(unsubscribe),
        }
    }
}

/// A link in HTML, escaped the way the template engine escapes any value.
fn escaped(url: &str) -> String {
    minijinja::HtmlEscape(url).to_string()
}

fn fill(parts: &[Part], manage: &str, unsubscribe: &str) -> String {
    let mut out = String::with_capacity(
        parts
            .iter()
            .map(|p| match p {
                Part::Fixed(s) => s.len(),
                Part::Manage => manage.len(),
                Part::Unsubscribe => unsubscribe.len(),
            })
            .sum(),
    );
    for part in parts {
        out.push_str(match part {
            Part::Fixed(s) => s,
            Part::Manage => manage,
            Part::Unsubscribe => unsubscribe,
        });
    }
    out
}

/// Where the two links go, told apart from anything a publication's text could hold by a
/// random value chosen per renderer: a title cannot forge a place for the member's links.
#[derive(Debug, Clone)]
struct Markers {
    /// What both markers start with; `manage` or `unsubscribe` follows it.
    prefix: String,
}

impl Markers {
    fn new() -> Self {
        // Letters and digits only, which HTML escaping leaves as they are.
        let nonce: u128 = rand::random();
        Self {
            prefix: format!("herald{nonce:032x}"),
        }
    }

    fn manage(&self) -> String {
        format!("{}manage", self.prefix)
    }

    fn unsubscribe(&self) -> String {
        format!("{}unsubscribe", self.prefix)
    }

    fn split(&self, rendered: &str) -> Vec<Part> {
        let mut pieces = rendered.split(self.prefix.as_str());
        let mut parts: Vec<Part> = pieces
            .next()
            .map(|s| Part::Fixed(s.into()))
            .into_iter()
            .collect();
        for piece in pieces {
            if let Some(rest) = piece.strip_prefix("manage") {
                parts.extend([Part::Manage, Part::Fixed(rest.into())]);
            } else if let Some(rest) = piece.strip_prefix("unsubscribe") {
                parts.extend([Part::Unsubscribe, Part::Fixed(rest.into())]);
            } else {
                parts.push(Part::Fixed(format!("{}{piece}", self.prefix)));
            }
        }
        parts
    }
}

/// Several items in one message: the first `listed` are shown, `more` are only counted, and
/// `inbox_url` is where all of them can be read.
#[derive(Debug, Clone, Copy)]
pub struct Digest<'a> {
    pub items: &'a [&'a PublicationContext],
    pub max_listed: usize,
    pub inbox_url: &'a str,
}

impl Digest<'_> {
    fn context(&self) -> minijinja::Value {
        let listed: Vec<Item<'_>> = self
            .items
            .iter()
            .take(self.max_listed.max(1))
            .map(|p| Item::of(p))
            .collect();
        let more = self.items.len() - listed.len();
        context! {
            items => listed,
            more,
            total => self.items.len(),
            inbox_url => self.inbox_url,
        }
    }
}

/// What templates see of a publication.
#[derive(Debug, Clone, Serialize)]
struct Item<'a> {
    community: &'a str,
    title: &'a str,
    text: Option<&'a str>,
    url: Option<&'a str>,
    pipe: &'a str,
}

impl<'a> Item<'a> {
    fn of(p: &'a PublicationContext) -> Self {
        Self {
            community: p.community_name.as_deref().unwrap_or(&p.community),
            title: &p.title,
            text: p.text.as_deref(),
            url: p.url.as_deref(),
            pipe: &p.pipe,
        }
    }
}

pub struct Renderer {
    env: Environment<'static>,
    strings: BTreeMap<String, BTreeMap<String, String>>,
    markers: Markers,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl Renderer {
    pub fn new() -> Self {
        let mut env = Environment::new();
        // Undefined variables are a bug in a template, not something to print as empty.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("delivery template {name} does not parse: {e}"));
        }
        let strings: BTreeMap<String, BTreeMap<String, String>> =
            toml::from_str(STRINGS).expect("templates/delivery/strings.toml parses");
        let english = &strings[DEFAULT_LANGUAGE];
        for (lang, words) in &strings {
            assert!(
                words.keys().eq(english.keys()),
                "strings.toml: [{lang}] must have the same keys as [en]"
            );
        }
        Self {
            env,
            strings,
            markers: Markers::new(),
        }
    }

    /// The language Herald renders in for a member's BCP 47 tag: the tag's primary subtag
    /// when Herald has words for it, else English.
    pub fn language(&self, tag: Option<&str>) -> &str {
        let primary = tag
            .and_then(|t| t.split(['-', '_']).next())
            .map(str::to_ascii_lowercase);
        match primary.and_then(|p| self.strings.get_key_value(p.as_str())) {
            Some((key, _)) => key,
            None => DEFAULT_LANGUAGE,
        }
    }

    /// Languages Herald has words for.
    pub fn languages(&self) -> impl Iterator<Item = &str> {
        self.strings.keys().map(String::as_str)
    }

    fn render(&self, name: &str, lang: &str, ctx: minijinja::Value) -> String {
        let lang = self.language(Some(lang));
        let ctx = context! { lang, s => &self.strings[lang], ..ctx };
        // Templates are fixed at build time and every one is rendered by the tests below.
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .unwrap_or_else(|e| panic!("delivery template {name} failed: {e}"))
    }

    pub fn email(
        &self,
        lang: &str,
        publication: &PublicationContext,
        manage_url: &str,
        unsubscribe_url: &str,
    ) -> RenderedEmail {
        let ctx = context! { item => Item::of(publication), manage_url, unsubscribe_url };
        let subject = self.render("subject.txt", lang, ctx.clone());
        RenderedEmail {
            // A subject is one line whatever the title holds.
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            text: self.render("email.txt", lang, ctx.clone()),
            html: self.render("email.html", lang, ctx),
        }
    }

    /// [`Renderer::email`] for every member at once: see [`EmailFrame`].
    pub fn email_frame(&self, lang: &str, publication: &PublicationContext) -> EmailFrame {
        let m = &self.markers;
        let rendered = self.email(lang, publication, &m.manage(), &m.unsubscribe());
        EmailFrame::new(
            rendered.subject,
            m.split(&rendered.text),
            m.split(&rendered.html),
        )
    }

    /// One email listing several items (a digest, or what a daily cap held back).
    pub fn email_digest(
        &self,
        lang: &str,
        digest: Digest<'_>,
        manage_url: &str,
        unsubscribe_url: &str,
    ) -> RenderedEmail {
        let ctx = context! { manage_url, unsubscribe_url, ..digest.context() };
        let subject = self.render("digest_subject.txt", lang, ctx.clone());
        RenderedEmail {
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            text: self.render("digest_email.txt", lang, ctx.clone()),
            html: self.render("digest_email.html", lang, ctx),
        }
    }

    /// One SMS listing several items' titles. Listing fewer keeps it inside the size bound
    /// with the opt-out line intact: titles are dropped (and counted in "and N more") before
    /// anything is cut.
    pub fn sms_digest(&self, lang: &str, digest: Digest<'_>) -> String {
        let mut listed = digest.max_listed.max(1).min(digest.items.len());
        loop {
            let text = self.render(
                "digest_sms.txt",
                lang,
                Digest {
                    max_listed: listed,
                    ..digest
                }
                .context(),
            );
            let text = text.trim();
            if text.chars().count() <= MAX_SMS_CHARS || listed == 1 {
                return truncate(text, MAX_SMS_CHARS);
            }
            listed -= 1;
        }
    }

    pub fn telegram_digest(&self, lang: &str, digest: Digest<'_>) -> String {
        let text = self.render("digest_telegram.txt", lang, digest.context());
        truncate(text.trim(), MAX_TELEGRAM_CHARS)
    }

    /// A push listing a digest: the count as title, the first titles as body.
    pub fn push_digest(&self, lang: &str, digest: Digest<'_>, delivery_id: &str) -> Vec<u8> {
        let title = self.render("digest_subject.txt", lang, digest.context());
        let mut listed = digest.max_listed.max(1).min(digest.items.len());
        loop {
            let body: Vec<&str> = digest.items[..listed]
                .iter()
                .map(|p| p.title.as_str())
                .collect();
            let bytes = serde_json::json!({
                "type": "community.herald.digest",
                "id": delivery_id,
                "title": title.trim(),
                "body": body.join("\n"),
                "url": digest.inbox_url,
            })
            .to_string()
            .into_bytes();
            if bytes.len() <= MAX_PAYLOAD || listed == 1 {
                return bytes;
            }
            listed -= 1;
        }
    }

    /// The JSON body of a webhook carrying several items.
    pub fn webhook_digest(
        &self,
        items: &[&PublicationContext],
        recipient: &str,
        sent_at: &str,
    ) -> serde_json::Value {
        let items: Vec<serde_json::Value> = items
            .iter()
            .map(|p| {
                serde_json::json!({
                    "publication": p.id,
                    "community": p.community,
                    "communityName": p.community_name,
                    "pipe": p.pipe,
                    "itemId": p.item_id,
                    "title": p.title,
                    "text": p.text,
                    "url": p.url,
                })
            })
            .collect();
        serde_json::json!({
            "type": "community.herald.digest",
            "timestamp": sent_at,
            "data": { "recipient": recipient, "items": items }
        })
    }

    /// One item as an SMS; a long item is cut, never the opt-out line after it.
    pub fn sms(&self, lang: &str, publication: &PublicationContext) -> String {
        let text = self.render("sms.txt", lang, context! { item => Item::of(publication) });
        let text = text.trim();
        let Some((item, stop)) = text.rsplit_once('\n') else {
            return truncate(text, MAX_SMS_CHARS);
        };
        let room = MAX_SMS_CHARS.saturating_sub(stop.chars().count() + 1);
        format!("{}\n{stop}", truncate(item, room))
    }

    pub fn telegram(&self, lang: &str, publication: &PublicationContext) -> String {
        let text = self.render(
            "telegram.txt",
            lang,
            context! { item => Item::of(publication) },
        );
        truncate(text.trim(), MAX_TELEGRAM_CHARS)
    }

    /// The JSON a service worker receives, within the push payload limit (the text is
    /// shortened, never the title or link, when the item is long).
    pub fn push(&self, publication: &PublicationContext, delivery_id: &str) -> Vec<u8> {
        let item = Item::of(publication);
        let mut body = publication.text.clone().unwrap_or_default();
        loop {
            let payload = serde_json::json!({
                "type": "community.herald.notification",
                "id": delivery_id,
                "community": item.community,
                "title": item.title,
                "body": body,
                "url": item.url,
            });
            let bytes = payload.to_string().into_bytes();
            if bytes.len() <= MAX_PAYLOAD || body.is_empty() {
                return bytes;
            }
            // JSON may escape some characters, so shrink by the overshoot and check again.
            let over = bytes.len() - MAX_PAYLOAD;
            body = truncate_bytes(&body, body.len().saturating_sub(over));
        }
    }

    /// The JSON body of a webhook delivery (the Standard Webhooks `type` + `data` shape).
    pub fn webhook(
        &self,
        publication: &PublicationContext,
        recipient: &str,
        published_at: &str,
    ) -> serde_json::Value {
        serde_json::json!({
            "type": "community.herald.notification",
            "timestamp": published_at,
            "data": {
                "publication": publication.id,
                "community": publication.community,
                "communityName": publication.community_name,
                "pipe": publication.pipe,
                "itemId": publication.item_id,
                "title": publication.title,
                "text": publication.text,
                "url": publication.url,
                "recipient": recipient,
            }
        })
    }
}

/// At most `max` bytes of UTF-8, cut at a character boundary and ending in `…` when cut.
fn truncate_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let budget = max.saturating_sub('…'.len_utf8());
    let mut end = 0;
    for (i, c) in text.char_indices() {
        if i + c.len_utf8() > budget {
            break;
        }
        end = i + c.len_utf8();
    }
    if end == 0 {
        return String::new();
    }
    format!("{}…", &text[..end])
}

/// At most `max` characters, ending in `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication() -> PublicationContext {
        PublicationContext {
            id: "pub-1".into(),
            community: "did:plc:community".into(),
            community_name: Some("Gardeners <& Friends>".into()),
            pipe: "opportunity".into(),
            item_id: "item-1".into(),
            title: "Plant trees on Saturday".into(),
            text: Some("Bring gloves.".into()),
            url: Some("https://example.org/trees?a=1&b=2".into()),
            created_at: 0,
            urgency: "normal".into(),
            expires_at: None,
        }
    }

    fn items(n: usize) -> Vec<PublicationContext> {
        (0..n)
            .map(|i| PublicationContext {
                id: format!("pub-{i}"),
                item_id: format!("item-{i}"),
                title: format!("Opportunity number {i} with a reasonably long title"),
                ..publication()
            })
            .collect()
    }

    #[test]
    fn an_sms_digest_lists_the_items_and_keeps_the_opt_out_within_the_size_bound() {
        let r = Renderer::new();
        let all = items(3);
        let refs: Vec<&PublicationContext> = all.iter().collect();
        let digest = Digest {
            items: &refs,
            max_listed: 10,
            inbox_url: "https://herald.example/inbox",
        };
        let sms = r.sms_digest("en", digest);
        assert!(sms.starts_with("3 new items for you:"), "{sms}");
        for i in 0..3 {
            assert!(sms.contains(&format!("Opportunity number {i} ")), "{sms}");
        }
        assert!(sms.ends_with("Reply STOP to opt out."), "{sms}");

        let many = items(30);
        let refs: Vec<&PublicationContext> = many.iter().collect();
        let sms = r.sms_digest(
            "es",
            Digest {
                items: &refs,
                ..digest
            },
        );
        assert!(
            sms.chars().count() <= MAX_SMS_CHARS,
            "{}",
            sms.chars().count()
        );
        assert!(sms.starts_with("30 novedades"), "{sms}");
        assert!(sms.contains(" más: https://herald.example/inbox"), "{sms}");
        assert!(sms.ends_with("Responde STOP para darte de baja."), "{sms}");
    }

    #[test]
    fn an_email_digest_caps_the_list_and_links_the_rest() {
        let r = Renderer::new();
        let all = items(12);
        let refs: Vec<&PublicationContext> = all.iter().collect();
        let email = r.email_digest(
            "de",
            Digest {
                items: &refs,
                max_listed: 10,
                inbox_url: "https://herald.example/inbox",
            },
            "https://h/manage",
            "https://h/unsub",
        );
        assert_eq!(email.subject, "12 Neuigkeiten");
        assert!(email.text.contains("Opportunity number 9 "));
        assert!(!email.text.contains("Opportunity number 10 "));
        assert!(
            email
                .text
                .contains("und 2 weitere: https://herald.example/inbox")
        );
        assert!(
            email.html.contains("Gardeners &lt;&amp; Friends&gt;"),
            "escaped"
        );
        assert!(email.text.contains("https://h/unsub") && email.text.contains("https://h/manage"));
        assert!(email.html.contains("h&#x2f;unsub"), "{}", email.html);
    }

    #[test]
    fn language_falls_back_to_english() {
        let r = Renderer::new();
        assert_eq!(r.language(Some("fr")), "fr");
        assert_eq!(r.language(Some("fr-CA")), "fr");
        assert_eq!(r.language(Some("ES")), "es");
        assert_eq!(r.language(Some("pt-BR")), "en");
        assert_eq!(r.language(None), "en");
        assert_eq!(r.language(Some("")), "en");
        assert_eq!(
            r.languages().collect::<Vec<_>>(),
            vec!["de", "en", "es", "fr"]
        );
    }

    #[test]
    fn email_has_text_html_links_and_language() {
        let r = Renderer::new();
        let e = r.email(
            "fr",
            &publication(),
            "https://h/manage?token=t",
            "https://h/unsubscribe?token=t",
        );
        assert_eq!(e.subject, "Gardeners <& Friends>: Plant trees on Saturday");
        assert!(e.text.contains("Bring gloves."));
        assert!(e.text.contains("Ouvrir: https://example.org/trees?a=1&b=2"));
        assert!(
            e.text
                .contains("Gérer les notifications: https://h/manage?token=t")
        );
        assert!(e.text.contains("https://h/unsubscribe?token=t"));
        // HTML is escaped; text is not.
        assert!(
            e.html.contains("Gardeners &lt;&amp; Friends&gt;"),
            "{}",
            e.html
        );
        // minijinja also escapes `/` (as `&#x2f;`), which browsers read back in attributes.
        assert!(e.html.contains("a=1&amp;b=2"), "{}", e.html);
        assert!(e.html.contains(r#"<html lang="fr">"#));
        let en = r.email("xx", &publication(), "m", "u");
        assert!(en.text.contains("Manage notifications: m"));
    }

    #[test]
    fn a_frame_completed_with_links_is_the_email_rendered_with_them() {
        use quoted_printable::ParseMode;
        let r = Renderer::new();
        let mut quiet = publication();
        quiet.text = None;
        quiet.url = None;
        let links = [
            ("https://h/manage?token=t", "https://h/unsubscribe?token=t"),
            ("m", "u"),
            ("https://h/m?a=1&b=\"<x>'", "https://h/u/?&amp;"),
            ("", ""),
        ];
        for lang in ["en", "fr", "de", "es", "xx"] {
            for p in [publication(), quiet.clone()] {
                let frame = r.email_frame(lang, &p);
                for (manage, unsubscribe) in links {
                    let email = r.email(lang, &p, manage, unsubscribe);
                    assert_eq!(
                        frame.complete(manage, unsubscribe),
                        email,
                        "{lang} {manage} {unsubscribe}"
                    );
                    // The bodies encoded once per frame decode to the same text, with the
                    // CRLF line endings SMTP carries.
                    let encoded = frame.encoded(manage, unsubscribe).expect("Latin text");
                    let decode = |body: &[u8]| {
                        let plain = quoted_printable::decode(body, ParseMode::Strict)
                            .expect("valid quoted-printable");
                        String::from_utf8(plain).expect("UTF-8")
                    };
                    let crlf = |text: &str| text.replace('\n', "\r\n");
                    assert_eq!(decode(&encoded.text), crlf(&email.text), "{lang}");
                    let html = encoded.html.as_deref().expect("an HTML part");
                    assert_eq!(decode(html), crlf(&email.html), "{lang}");
                    // The two at once, links escaped once, are the same.
                    assert_eq!(
                        frame.for_member(manage, unsubscribe),
                        (email, Some(encoded)),
                        "{lang}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_publication_cannot_place_the_members_links() {
        let r = Renderer::new();
        let mut p = publication();
        // What a marker looks like, without the renderer's random part.
        p.title = "herald00000000000000000000000000000000manage".into();
        p.text = Some(format!("{} unsubscribe", r.markers.manage().len()));
        let email = r.email_frame("en", &p).complete("LINK-M", "LINK-U");
        assert_eq!(email.text.matches("LINK-M").count(), 1, "{}", email.text);
        assert_eq!(email.text.matches("LINK-U").count(), 1, "{}", email.text);
        assert!(email.subject.contains(&p.title));
    }

    #[test]
    fn subject_is_one_line() {
        let mut p = publication();
        p.title = "Two\nlines".into();
        let e = Renderer::new().email("en", &p, "m", "u");
        assert_eq!(e.subject, "Gardeners <& Friends>: Two lines");
    }

    #[test]
    fn sms_and_telegram_are_bounded() {
        let r = Renderer::new();
        assert_eq!(
            r.sms("en", &publication()),
            "Gardeners <& Friends>: Plant trees on Saturday https://example.org/trees?a=1&b=2\n\
             Reply STOP to opt out."
        );
        let mut long = publication();
        long.title = "x".repeat(2_000);
        long.text = Some("y".repeat(10_000));
        let sms = r.sms("fr", &long);
        assert_eq!(sms.chars().count(), MAX_SMS_CHARS);
        assert!(
            sms.ends_with("…\nRépondez STOP pour vous désabonner."),
            "{sms}"
        );
        assert_eq!(r.telegram("de", &long).chars().count(), MAX_TELEGRAM_CHARS);
        let t = r.telegram("en", &publication());
        assert!(t.starts_with("Gardeners <& Friends>\nPlant trees on Saturday\n\nBring gloves."));
    }

    #[test]
    fn push_payload_fits_the_limit() {
        let r = Renderer::new();
        let small: serde_json::Value =
            serde_json::from_slice(&r.push(&publication(), "d1")).unwrap();
        assert_eq!(small["title"], "Plant trees on Saturday");
        assert_eq!(small["id"], "d1");
        let mut long = publication();
        long.text = Some("é".repeat(5_000));
        let bytes = r.push(&long, "d1");
        assert!(bytes.len() <= MAX_PAYLOAD, "{}", bytes.len());
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(v["body"].as_str().unwrap().ends_with('…'));
        assert_eq!(v["url"], "https://example.org/trees?a=1&b=2");
    }

    #[test]
    fn webhook_body_names_the_item() {
        let v = Renderer::new().webhook(&publication(), "did:plc:m", "2026-01-01T00:00:00Z");
        assert_eq!(v["type"], "community.herald.notification");
        assert_eq!(v["data"]["itemId"], "item-1");
        assert_eq!(v["data"]["recipient"], "did:plc:m");
    }
}
