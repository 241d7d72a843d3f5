//! Domain types: the records Herald indexes, delivery channels, pipes and routes.
//!
//! Owns the typed shape of `community.herald.*` records (after lexicon validation) and the
//! vocabulary the rest of the code speaks. Pure: no IO, no storage, no HTTP.

use serde::{Deserialize, Serialize};

pub const SUBSCRIPTION: &str = "community.herald.subscription";
pub const PREFERENCES: &str = "community.herald.preferences";
pub const COMMUNITY: &str = "community.herald.community";

/// The collections Herald indexes; anything else under `community.herald.` is skipped.
pub const COLLECTIONS: [&str; 3] = [SUBSCRIPTION, PREFERENCES, COMMUNITY];

/// Pipes DESIGN.md §4 names, used when a community declares none.
pub const KNOWN_PIPES: [&str; 9] = [
    "digest",
    "opportunity",
    "eventReminder",
    "announcement",
    "mention",
    "reply",
    "discussion",
    "docChange",
    "comment",
];

/// A way to reach a person. `Inbox` is Herald's own; the others go through the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Inbox,
    Email,
    Sms,
    Telegram,
    Webpush,
    Feed,
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 7] = [
        Channel::Inbox,
        Channel::Email,
        Channel::Sms,
        Channel::Telegram,
        Channel::Webpush,
        Channel::Feed,
        Channel::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Inbox => "inbox",
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Telegram => "telegram",
            Channel::Webpush => "webpush",
            Channel::Feed => "feed",
            Channel::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A browser's push subscription as `PushSubscription.toJSON()` gives it. Parsed and checked
/// by `vault::address`; sent to by `channels::webpush`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSubscription {
    pub endpoint: String,
    pub keys: PushKeys,
}

/// The subscription's keys, base64url as browsers give them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushKeys {
    /// The user agent's P-256 public key, uncompressed (65 bytes).
    pub p256dh: String,
    /// The 16-byte authentication secret.
    pub auth: String,
}

/// One `{pipe, channels}` entry of a subscription's or the preferences' routes. Channel names
/// stay strings here: the lexicon lists *known* values, so a newer client may name a channel
/// this Herald does not know, which is ignored rather than rejecting the whole record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub pipe: String,
    #[serde(default)]
    pub channels: Vec<String>,
}

/// Find the route for `pipe`. `Some(vec![])` means "nothing for this pipe" — an explicit
/// empty list is an answer, not a fallthrough.
pub fn route_for<'a>(routes: &'a [Route], pipe: &str) -> Option<&'a [String]> {
    routes
        .iter()
        .find(|r| r.pipe == pipe)
        .map(|r| r.channels.as_slice())
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionRecord {
    pub subject: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub recursive: bool,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub muted: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreferencesRecord {
    #[serde(default)]
    pub default_routes: Vec<Route>,
    #[serde(default)]
    pub paused_all: bool,
    /// BCP 47 language tag for the messages Herald renders for the member.
    #[serde(default)]
    pub language: Option<String>,
    /// IANA time zone for the digest hour, quiet hours and daily limits.
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub digest_hour: Option<i64>,
    #[serde(default)]
    pub quiet_hours: Option<QuietHoursRecord>,
    #[serde(default)]
    pub channel_limits: Vec<ChannelLimit>,
    #[serde(default)]
    pub channel_cadences: Vec<ChannelCadence>,
}

/// `community.herald.preferences#quietHours`, as written ("HH:MM" each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHoursRecord {
    pub start: String,
    pub end: String,
}

/// `community.herald.preferences#channelLimit`: at most `max_per_day` messages on `channel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelLimit {
    pub channel: String,
    pub max_per_day: i64,
}

/// `community.herald.preferences#channelCadence`: `immediate` or `daily` on `channel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCadence {
    pub channel: String,
    pub cadence: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommunityRecord {
    pub name: String,
    #[serde(default)]
    pub pipes: Vec<PipeDecl>,
    #[serde(default)]
    pub publishers: Vec<String>,
    #[serde(default)]
    pub admins: Vec<String>,
    #[serde(default)]
    pub visibility: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipeDecl {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Visibility as delivery must treat it: anything but an explicit (or absent, the lexicon's
/// default) `public` is private, so an unknown value fails closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    Public,
    Private,
}

impl Visibility {
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            None | Some("public") => Visibility::Public,
            Some(_) => Visibility::Private,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }
}

/// Everything preference resolution needs to know about one member of one community,
/// gathered from the index (all of the member's subscriptions to that community merged).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberFacts {
    pub did: String,
    /// False once the account was deactivated, taken down or deleted.
    pub active: bool,
    pub paused_all: bool,
    /// Any of the member's subscriptions to the community is muted.
    pub muted: bool,
    /// Admitted to the community (a membership or an admin role): what a private community
    /// requires.
    pub admitted: bool,
    /// The routes of each of the member's subscriptions to the community.
    pub subscription_routes: Vec<Vec<Route>>,
    /// `defaultRoutes` from the member's preferences record, if they published one.
    pub default_routes: Vec<Route>,
    /// External channels on which the member has a verified contact that may be delivered to
    /// (from the vault; inbox and feed need none).
    pub reachable: Vec<Channel>,
}

/// A validated record, typed by collection.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Subscription(SubscriptionRecord),
    Preferences(PreferencesRecord),
    Community(CommunityRecord),
}

impl Record {
    /// Type a record that already passed lexicon validation. Also enforces the record keys
    /// the lexicons declare (`literal:self`), which schema validation cannot see.
    pub fn from_json(
        collection: &str,
        rkey: &str,
        value: &serde_json::Value,
    ) -> Result<Self, String> {
        let self_keyed = |what: &str| {
            if rkey == "self" {
                Ok(())
            } else {
                Err(format!(
                    "{what} record must have rkey \"self\", got {rkey:?}"
                ))
            }
        };
        let typed = match collection {
            SUBSCRIPTION => Record::Subscription(parse(value)?),
            PREFERENCES => {
                self_keyed("preferences")?;
                Record::Preferences(parse(value)?)
            }
            COMMUNITY => {
                self_keyed("community")?;
                Record::Community(parse(value)?)
            }
            other => return Err(format!("collection {other} is not indexed")),
        };
        Ok(typed)
    }
}

fn parse<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<T, String> {
    T::deserialize(value).map_err(|e| e.to_string())
}

/// Longest DID ATProto allows.
const MAX_DID_LEN: usize = 2048;

/// One DNS label in letter-digit-hyphen form (RFC 1123): 1–63 characters, no hyphen at either
/// end. Used for did:web hosts and email domains.
pub fn is_ldh_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// Whether `s` is a syntactically valid DID under ATProto's rules: `did:`, a lowercase method,
/// `:`, then an identifier of `[A-Za-z0-9._:%-]` that does not end in `:` or `%`; at most
/// 2 KiB. Says nothing about whether the method is supported or the DID exists. The one DID
/// syntax check in Herald: ingest, lexicon validation, identity and XRPC all use it.
pub fn is_did(s: &str) -> bool {
    if s.len() > MAX_DID_LEN {
        return false;
    }
    let Some(rest) = s.strip_prefix("did:") else {
        return false;
    };
    let Some((method, id)) = rest.split_once(':') else {
        return false;
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_lowercase()) {
        return false;
    }
    let Some(last) = id.bytes().last() else {
        return false;
    };
    id.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'%' | b'-'))
        && !matches!(last, b':' | b'%')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_empty_channel_list_is_an_answer_not_a_fallthrough() {
        let routes = vec![Route {
            pipe: "digest".into(),
            channels: vec![],
        }];
        assert_eq!(route_for(&routes, "digest"), Some(&[][..]));
        assert_eq!(route_for(&routes, "opportunity"), None);
    }

    #[test]
    fn unknown_or_missing_visibility_fails_closed_only_when_named() {
        assert_eq!(Visibility::parse(None), Visibility::Public);
        assert_eq!(Visibility::parse(Some("public")), Visibility::Public);
        assert_eq!(Visibility::parse(Some("private")), Visibility::Private);
        assert_eq!(Visibility::parse(Some("secret")), Visibility::Private);
    }

    #[test]
    fn preferences_must_be_keyed_self() {
        let v = json!({"pausedAll": true, "updatedAt": "2026-01-01T00:00:00Z"});
        assert!(Record::from_json(PREFERENCES, "self", &v).is_ok());
        assert!(Record::from_json(PREFERENCES, "3abc", &v).is_err());
    }

    #[test]
    fn dids_are_checked_for_syntax() {
        assert!(is_did("did:plc:abc234"));
        assert!(is_did("did:web:example.org%3A8080"));
        assert!(!is_did("did:plc:"));
        assert!(!is_did("plc:abc"));
        assert!(!is_did("did:PLC:abc"));
        assert!(!is_did("did:plc:a b"));
    }
}
