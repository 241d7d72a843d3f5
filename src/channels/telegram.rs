//! Telegram through the Bot API (`api.telegram.org`, a self-hosted Bot API server, or
//! [`crate::sandbox::telegram`]): sending a text message to a chat, the `t.me` pairing link,
//! and the webhook `Update` types with the `/start <token>` parser that pairs a chat to a
//! member and the bot-command parser that recognises `/stop` and a bare `/start`.
//!
//! Owns the Bot API request shape (`POST {api}/bot{token}/{method}` with a JSON body), the
//! classification of its `{"ok":false,"error_code":…,"description":…}` answers into
//! [`SendError`] kinds, and the shape of the updates Telegram posts to Herald's webhook.
//! Must not touch: the webhook's HTTP handling and secret check (the web layer), pairing state
//! (the vault), storage.
//!
//! # Invariants
//! - The bot token is part of every request path, so it is in every URL reqwest reports: errors
//!   are reduced to their kind with the URL stripped ([`reqwest::Error::without_url`]), the
//!   token is held as a [`SecretString`] and `Debug` never prints it.
//! - Error reasons are built from the HTTP status, Telegram's `error_code` and `description`
//!   (Telegram's descriptions name the problem, never the chat), never from the chat id.
//! - The token is checked to be `<digits>:<[A-Za-z0-9_-]+>` when the bot is built, so it cannot
//!   change the shape of the request path.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use super::{SendError, Sent, retry_after, transport_error};
use crate::settings::ProviderSettings;

/// Telegram's hosted Bot API, used when `HERALD_TELEGRAM_API_URL` is unset.
pub const DEFAULT_API_URL: &str = "https://api.telegram.org";

/// Whole-request timeout. `sendMessage` answers in well under a second; 10 s leaves room for
/// a slow network without holding a dispatcher lease long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest deep-link payload Telegram passes to `/start` (Bot API, "Deep linking": up to 64
/// characters from `A-Z a-z 0-9 _ -`).
pub const MAX_START_PAYLOAD: usize = 64;

/// Longest description kept in an error reason: Telegram's are one short sentence, and the
/// reason ends up in logs and the outbox.
const MAX_DESCRIPTION: usize = 200;

/// Why a Telegram bot could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum TelegramConfigError {
    /// Deliberately without the token: this error is logged.
    #[error("Telegram bot token is malformed (expected <digits>:<letters, digits, _ or ->)")]
    BadToken,
    #[error("Telegram API URL must be an http(s) URL")]
    BadUrl,
    #[error("could not build the HTTP client for Telegram")]
    Client(#[source] reqwest::Error),
}

/// One Telegram bot. Cheap to clone (the HTTP client is shared).
#[derive(Clone)]
pub struct TelegramBot {
    client: reqwest::Client,
    /// The API root; methods are `{api_url}/bot{token}/{method}`.
    api_url: Url,
    token: SecretString,
    /// Without the leading `@`; needed for `t.me` links and to recognise `/start@name`.
    username: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for TelegramBot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramBot")
            .field("api", &self.api_url.origin().ascii_serialization())
            .field("username", &self.username)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TelegramBot {
    /// The bot the settings describe, `None` when no bot token is set.
    pub fn from_settings(settings: &ProviderSettings) -> Result<Option<Self>, TelegramConfigError> {
        let telegram = &settings.telegram;
        let Some(token) = &telegram.bot_token else {
            return Ok(None);
        };
        let api_url = match &telegram.api_url {
            Some(url) => url.clone(),
            None => Url::parse(DEFAULT_API_URL).map_err(|_| TelegramConfigError::BadUrl)?,
        };
        Self::new(api_url, token.clone(), telegram.bot_username.clone()).map(Some)
    }

    pub fn new(
        api_url: Url,
        token: SecretString,
        username: Option<String>,
    ) -> Result<Self, TelegramConfigError> {
        if !matches!(api_url.scheme(), "http" | "https") || api_url.cannot_be_a_base() {
            return Err(TelegramConfigError::BadUrl);
        }
        if !is_token(token.expose_secret()) {
            return Err(TelegramConfigError::BadToken);
        }
        let username = username
            .map(|u| u.trim().trim_start_matches('@').to_string())
            .filter(|u| !u.is_empty());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(TelegramConfigError::Client)?;
        Ok(Self {
            client,
            api_url,
            token,
            username,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Replace the whole-request timeout (tests use a short one against a hanging server).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The bot's username (without `@`), when configured.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// Send a plain-text message (no `parse_mode`, so no markup can make it fail). On success
    /// `provider_id` is the message's `message_id`.
    pub async fn send_message(&self, chat_id: i64, text: &str) -> Result<Sent, SendError> {
        let result = self
            .call("sendMessage", &json!({"chat_id": chat_id, "text": text}))
            .await?;
        let message_id = result.get("message_id").and_then(Value::as_i64);
        Ok(Sent {
            provider_id: message_id.map(|id| id.to_string()),
        })
    }

    /// `getMe`: checks the token and tells the bot's username (for a startup check, or when
    /// the username is not configured).
    pub async fn get_me(&self) -> Result<User, SendError> {
        let result = self.call("getMe", &json!({})).await?;
        serde_json::from_value(result)
            .map_err(|_| SendError::permanent("telegram getMe answered an unexpected result"))
    }

    /// `https://t.me/<username>?start=<token>`: opening it in Telegram starts a chat with the
    /// bot and sends `/start <token>`. `None` without a configured username, or when `token`
    /// is not a payload Telegram would pass on (1–64 of `A-Z a-z 0-9 _ -`).
    pub fn pairing_link(&self, token: &str) -> Option<String> {
        let username = self.username.as_deref()?;
        is_start_payload(token).then(|| format!("https://t.me/{username}?start={token}"))
    }

    /// Like [`start_payload`], but also refuses `/start@OtherBot <token>` when this bot's
    /// username is known (in groups, a command addressed to another bot is not ours).
    pub fn start_payload_for<'a>(&self, text: &'a str) -> Option<&'a str> {
        let (addressee, payload) = parse_start(text)?;
        match (addressee, self.username.as_deref()) {
            (Some(to), Some(me)) if !to.eq_ignore_ascii_case(me) => None,
            _ => Some(payload),
        }
    }

    /// Whether `command` is for this bot: unaddressed, or addressed to this bot's username
    /// (compared without case), or addressed at all when the username is not configured.
    pub fn is_addressed_to_me(&self, command: &Command<'_>) -> bool {
        match (command.addressee, self.username.as_deref()) {
            (Some(to), Some(me)) => to.eq_ignore_ascii_case(me),
            _ => true,
        }
    }

    /// Call a Bot API method and return its `result`.
    async fn call(&self, method: &str, params: &Value) -> Result<Value, SendError> {
        let url = format!(
            "{}/bot{}/{method}",
            self.api_url.as_str().trim_end_matches('/'),
            self.token.expose_secret()
        );
        let response = self
            .client
            .post(url)
            .json(params)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| transport_error("telegram", e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await;
        let parsed = body
            .as_ref()
            .ok()
            .and_then(|b| serde_json::from_slice::<ApiResponse>(b).ok());
        match parsed {
            Some(ApiResponse {
                ok: true,
                result: Some(result),
                ..
            }) => Ok(result),
            // A 2xx whose body did not arrive or parse: Telegram has the message; the
            // message_id is lost, but saying "failed" would make the caller send it again.
            None if status.is_success() => Ok(Value::Null),
            parsed => Err(classify(status, &headers, parsed.as_ref())),
        }
    }
}

/// The Bot API's envelope: `{"ok":true,"result":…}` or
/// `{"ok":false,"error_code":403,"description":"…","parameters":{"retry_after":N}}`.
#[derive(Deserialize)]
struct ApiResponse {
    ok: bool,
    result: Option<Value>,
    error_code: Option<u16>,
    description: Option<String>,
    parameters: Option<ResponseParameters>,
}

#[derive(Deserialize)]
struct ResponseParameters {
    retry_after: Option<u64>,
}

/// Descriptions (lower-cased fragments) meaning the chat can no longer receive from the bot.
const GONE: &[&str] = &[
    "bot was blocked by the user",
    "user is deactivated",
    "chat not found",
    "bot was kicked from",
    "bot is not a member of",
    "group chat was deleted",
];

/// Classify an answer that is not `ok: true`.
fn classify(status: StatusCode, headers: &HeaderMap, body: Option<&ApiResponse>) -> SendError {
    let code = body.and_then(|b| b.error_code).unwrap_or(status.as_u16());
    let description = body
        .and_then(|b| b.description.as_deref())
        .map(clean_description)
        .unwrap_or_default();
    let reason = if description.is_empty() {
        format!("telegram answered {code}")
    } else {
        format!("telegram answered {code}: {description}")
    };
    let lower = description.to_ascii_lowercase();
    if GONE.iter().any(|fragment| lower.contains(fragment)) {
        return SendError::Gone { reason };
    }
    if code == 429 || code >= 500 || status.is_server_error() {
        let from_body = body
            .and_then(|b| b.parameters.as_ref())
            .and_then(|p| p.retry_after)
            .map(Duration::from_secs);
        return SendError::Transient {
            reason,
            retry_after: from_body.or_else(|| retry_after(headers)),
        };
    }
    SendError::Permanent { reason }
}

/// One line, bounded, no control characters: descriptions are stored and logged.
fn clean_description(description: &str) -> String {
    description
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DESCRIPTION)
        .collect()
}

/// `<bot id>:<secret>` as BotFather issues it.
fn is_token(token: &str) -> bool {
    match token.split_once(':') {
        Some((id, secret)) => {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && !secret.is_empty()
                && secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }
        None => false,
    }
}

// ---------------------------------------------------------------------------------------
// Webhook input
// ---------------------------------------------------------------------------------------

/// An update Telegram posts to the webhook. Only what Herald uses; other fields (and other
/// update kinds: edited messages, callbacks…) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// Increases per update; Telegram may deliver an update more than once.
    pub update_id: i64,
    pub message: Option<Message>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub message_id: i64,
    pub chat: Chat,
    /// Absent for messages posted on behalf of a channel.
    pub from: Option<User>,
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    /// What `sendMessage` takes as `chat_id`. Equal to the user's id in a private chat.
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    #[serde(default)]
    pub is_bot: bool,
    pub username: Option<String>,
    /// The IETF tag of the user's Telegram language, when Telegram sends it: replies to a
    /// user's own commands are written in it when Herald has the words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language_code: Option<String>,
}

/// Longest command name the Bot API accepts (`setMyCommands`: 1–32 characters).
const MAX_COMMAND_NAME: usize = 32;

/// A bot command at the start of a message: `/name`, or `/name@BotName` (how commands are
/// addressed in groups), then its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command<'a> {
    /// As written, without the `/`; Bot API command names are `[A-Za-z0-9_]`, compare them
    /// without case.
    pub name: &'a str,
    pub addressee: Option<&'a str>,
    /// Everything after the command, trimmed (empty for a bare command).
    pub args: &'a str,
}

impl Command<'_> {
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// The bot command `text` starts with, if it is one (`/stop`, `/start@HeraldBot tok`).
pub fn command(text: &str) -> Option<Command<'_>> {
    let rest = text.trim().strip_prefix('/')?;
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let (head, args) = rest.split_at(end);
    let (name, addressee) = match head.split_once('@') {
        Some((name, to)) => (name, Some(to)),
        None => (head, None),
    };
    let word = |w: &str| {
        (1..=MAX_COMMAND_NAME).contains(&w.len())
            && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    if !word(name) || addressee.is_some_and(|to| !word(to)) {
        return None;
    }
    Some(Command {
        name,
        addressee,
        args: args.trim(),
    })
}

/// The pairing token of a `/start <token>` or `/start@BotName <token>` message, `None` for
/// anything else (other commands, `/start` alone, a payload Telegram would not send).
pub fn start_payload(text: &str) -> Option<&str> {
    parse_start(text).map(|(_, payload)| payload)
}

/// `(addressed bot, payload)` of a `/start` command with a valid payload.
fn parse_start(text: &str) -> Option<(Option<&str>, &str)> {
    let rest = text.trim().strip_prefix("/start")?;
    let (addressee, rest) = match rest.strip_prefix('@') {
        Some(addressed) => {
            let end = addressed.find(char::is_whitespace)?;
            let name = &addressed[..end];
            let valid =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return None;
            }
            (Some(name), &addressed[end..])
        }
        None => (None, rest),
    };
    // "/startle x" is another command; "/start" alone carries no token.
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let payload = rest.trim();
    is_start_payload(payload).then_some((addressee, payload))
}

fn is_start_payload(payload: &str) -> bool {
    (1..=MAX_START_PAYLOAD).contains(&payload.len())
        && payload
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, description: &str, retry_after: Option<u64>) -> ApiResponse {
        ApiResponse {
            ok: false,
            result: None,
            error_code: Some(code),
            description: Some(description.to_string()),
            parameters: retry_after.map(|s| ResponseParameters {
                retry_after: Some(s),
            }),
        }
    }

    fn bot(username: Option<&str>) -> TelegramBot {
        TelegramBot::new(
            Url::parse(DEFAULT_API_URL).unwrap(),
            SecretString::from("123456:AAsecret-token_x".to_string()),
            username.map(str::to_string),
        )
        .unwrap()
    }

    #[test]
    fn start_payload_takes_the_token_after_start() {
        assert_eq!(start_payload("/start abc-DEF_123"), Some("abc-DEF_123"));
        assert_eq!(start_payload("  /start   tok  "), Some("tok"));
        assert_eq!(start_payload("/start@HeraldBot tok"), Some("tok"));
    }

    #[test]
    fn start_payload_refuses_other_texts() {
        for text in [
            "/start",
            "/start ",
            "/start@HeraldBot",
            "/startle tok",
            "/stop tok",
            "hello /start tok",
            "/start two words",
            "/start t@k",
            "/start@ tok",
            "/start@Bad-Name tok",
        ] {
            assert_eq!(start_payload(text), None, "{text:?}");
        }
        assert_eq!(start_payload(&format!("/start {}", "a".repeat(65))), None);
        assert!(start_payload(&format!("/start {}", "a".repeat(64))).is_some());
    }

    #[test]
    fn command_reads_stop_and_bare_start_with_or_without_the_bot_name() {
        let stop = command("  /stop ").unwrap();
        assert!(stop.is("stop") && stop.addressee.is_none() && stop.args.is_empty());
        let stop = command("/STOP@HeraldBot please").unwrap();
        assert!(stop.is("stop"));
        assert_eq!((stop.addressee, stop.args), (Some("HeraldBot"), "please"));
        let start = command("/start").unwrap();
        assert!(start.is("start") && start.args.is_empty());
        assert_eq!(command("/start tok").unwrap().args, "tok");
        assert!(!command("/stopped").unwrap().is("stop"));
        for text in [
            "stop",
            "hello /stop",
            "/",
            "/@bot",
            "/stop@",
            "/st-op",
            "/stop@bad-name",
        ] {
            assert_eq!(command(text), None, "{text:?}");
        }
    }

    #[test]
    fn a_command_to_another_bot_is_not_ours() {
        let named = bot(Some("HeraldBot"));
        assert!(named.is_addressed_to_me(&command("/stop").unwrap()));
        assert!(named.is_addressed_to_me(&command("/stop@heraldbot").unwrap()));
        assert!(!named.is_addressed_to_me(&command("/stop@OtherBot").unwrap()));
        assert!(bot(None).is_addressed_to_me(&command("/stop@OtherBot").unwrap()));
    }

    #[test]
    fn start_payload_for_ignores_commands_to_other_bots() {
        let bot = bot(Some("@HeraldBot"));
        assert_eq!(bot.start_payload_for("/start@heraldbot tok"), Some("tok"));
        assert_eq!(bot.start_payload_for("/start tok"), Some("tok"));
        assert_eq!(bot.start_payload_for("/start@OtherBot tok"), None);
    }

    #[test]
    fn pairing_link_points_at_the_bot_with_the_token() {
        assert_eq!(
            bot(Some("@HeraldBot")).pairing_link("tok_1").as_deref(),
            Some("https://t.me/HeraldBot?start=tok_1")
        );
        assert_eq!(bot(None).pairing_link("tok_1"), None);
        assert_eq!(bot(Some("HeraldBot")).pairing_link("a b"), None);
    }

    #[test]
    fn blocked_deactivated_and_missing_chats_are_gone() {
        for (code, description) in [
            (403, "Forbidden: bot was blocked by the user"),
            (403, "Forbidden: user is deactivated"),
            (400, "Bad Request: chat not found"),
            (403, "Forbidden: bot was kicked from the group chat"),
        ] {
            let status = StatusCode::from_u16(code).unwrap();
            let err = classify(
                status,
                &HeaderMap::new(),
                Some(&api(code, description, None)),
            );
            assert_eq!(
                err,
                SendError::Gone {
                    reason: format!("telegram answered {code}: {description}")
                }
            );
        }
    }

    #[test]
    fn flood_control_is_transient_with_the_retry_after_parameter() {
        let body = api(429, "Too Many Requests: retry after 17", Some(17));
        let err = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            Some(&body),
        );
        assert!(
            matches!(err, SendError::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(17))
        );
    }

    #[test]
    fn other_client_errors_are_permanent_and_server_errors_transient() {
        let err = classify(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            Some(&api(400, "Bad Request: message is too long", None)),
        );
        assert!(matches!(err, SendError::Permanent { .. }));
        let err = classify(StatusCode::UNAUTHORIZED, &HeaderMap::new(), None);
        assert_eq!(err, SendError::permanent("telegram answered 401"));
        let err = classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), None);
        assert!(err.is_transient());
    }

    #[test]
    fn malformed_tokens_are_refused_and_debug_hides_the_token() {
        for token in ["", "123", "abc:def", "123:", "123:a/b", "123:a b"] {
            let result = TelegramBot::new(
                Url::parse(DEFAULT_API_URL).unwrap(),
                SecretString::from(token.to_string()),
                None,
            );
            assert!(
                matches!(result, Err(TelegramConfigError::BadToken)),
                "{token:?}"
            );
        }
        let debug = format!("{:?}", bot(Some("HeraldBot")));
        assert!(!debug.contains("AAsecret"), "{debug}");
    }

    #[test]
    fn updates_parse_with_unknown_fields_ignored() {
        let update: Update = serde_json::from_value(json!({
            "update_id": 10,
            "message": {
                "message_id": 5, "date": 1700000000,
                "from": {"id": 42, "is_bot": false, "first_name": "A", "language_code": "en"},
                "chat": {"id": 42, "type": "private", "first_name": "A"},
                "text": "/start tok",
                "entities": [{"offset": 0, "length": 6, "type": "bot_command"}]
            }
        }))
        .unwrap();
        let message = update.message.unwrap();
        assert_eq!(message.chat.id, 42);
        assert_eq!(message.chat.kind, "private");
        assert_eq!(message.from.unwrap().id, 42);
        assert_eq!(start_payload(message.text.as_deref().unwrap()), Some("tok"));
        let other: Update =
            serde_json::from_value(json!({"update_id": 11, "edited_message": {}})).unwrap();
        assert_eq!(other.message, None);
    }
}
