//! A local stand-in for Telegram's Bot API: `/bot<token>/sendMessage` and `/bot<token>/getMe`
//! over GET or POST, with parameters in the query, a JSON body or a form body, answering in the
//! Bot API's envelope (`{"ok":true,"result":…}` / `{"ok":false,"error_code":…,
//! "description":…}`). Also builds the webhook updates Telegram would post to Herald.
//!
//! Owns nothing of Herald's: it records what the bot sent so tests can assert on it, and
//! injects faults (one per API call, in order) so tests can drive every failure the Telegram
//! adapter classifies. Binds loopback only. Must not be used by the serving path.
//!
//! What it checks, like Telegram: the token in the path (anything else gets 401
//! `Unauthorized`), `chat_id` present and numeric (a `@username` chat is "chat not found"),
//! `text` present and at most 4096 characters; method names are case-insensitive.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Map, Value, json};
use url::Url;

/// Telegram's limit on a message's text.
const MAX_TEXT: usize = 4096;

/// A failure the next API call gets instead of the normal handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// This status with the Bot API's error envelope (description: the status's reason).
    Status(u16),
    /// 429 `Too Many Requests: retry after N` with `parameters.retry_after` (and no
    /// `Retry-After` header, as Telegram does).
    RateLimited { retry_after_secs: u64 },
    /// Wait this long, then handle the call normally.
    Hang(Duration),
    /// 403 `Forbidden: bot was blocked by the user`.
    Blocked,
    /// 403 `Forbidden: user is deactivated`.
    Deactivated,
    /// 400 `Bad Request: chat not found`.
    ChatNotFound,
}

/// A message the bot sent (answered `ok: true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramMessage {
    pub message_id: i64,
    pub chat_id: i64,
    pub text: String,
}

/// Any call to the Bot API, accepted or not.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method as called (`sendMessage`, `getMe`, …).
    pub method: String,
    /// Whether the path carried the configured token.
    pub authorized: bool,
    pub content_type: Option<String>,
    /// The parameters, merged from query and body (form values as strings).
    pub params: Value,
    pub status: u16,
}

struct TelegramState {
    token: String,
    username: String,
    faults: Mutex<VecDeque<Fault>>,
    sent: Mutex<Vec<TelegramMessage>>,
    requests: Mutex<Vec<Request>>,
    next_message_id: AtomicI64,
}

/// The local Bot API for one bot. Clones share the same server.
#[derive(Clone)]
pub struct Telegram {
    addr: SocketAddr,
    state: Arc<TelegramState>,
}

impl Telegram {
    /// Serve the bot with this token (`<id>:<secret>`), named `herald_sandbox_bot`.
    pub async fn start(token: &str) -> std::io::Result<Self> {
        Self::start_named(token, "herald_sandbox_bot").await
    }

    /// Serve the bot with this token and username (what `getMe` reports).
    pub async fn start_named(token: &str, username: &str) -> std::io::Result<Self> {
        let state = Arc::new(TelegramState {
            token: token.to_string(),
            username: username.trim_start_matches('@').to_string(),
            faults: Mutex::default(),
            sent: Mutex::default(),
            requests: Mutex::default(),
            next_message_id: AtomicI64::new(1),
        });
        let router = Router::new()
            .route("/{bot}/{method}", any(call))
            .fallback(|| async { envelope_error(StatusCode::NOT_FOUND, "Not Found", None) })
            .with_state(state.clone());
        Ok(Self {
            addr: super::serve(router).await?,
            state,
        })
    }

    /// The API root, as `HERALD_TELEGRAM_API_URL` expects it.
    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}", self.addr)).expect("valid loopback URL")
    }

    pub fn token(&self) -> &str {
        &self.state.token
    }

    pub fn username(&self) -> &str {
        &self.state.username
    }

    /// Queue a fault for the next API call that has none yet.
    pub fn fail_next(&self, fault: Fault) {
        self.state
            .faults
            .lock()
            .expect("telegram faults lock")
            .push_back(fault);
    }

    /// Messages the bot sent, in order.
    pub fn sent(&self) -> Vec<TelegramMessage> {
        self.state.sent.lock().expect("telegram sent lock").clone()
    }

    /// Every API call, in order, with the status it got.
    pub fn requests(&self) -> Vec<Request> {
        self.state
            .requests
            .lock()
            .expect("telegram requests lock")
            .clone()
    }

    /// The update Telegram posts to a webhook when a user sends `text` in chat `chat_id` of
    /// type `chat_type` (`private`, `group`, `supergroup`), with the fields real updates carry
    /// (`from`, `date`, the chat's name or title, a `bot_command` entity for commands).
    pub fn start_update(update_id: i64, chat_id: i64, chat_type: &str, text: &str) -> Value {
        // In a private chat the chat is the user; in groups the sender is someone else.
        let user_id = if chat_type == "private" {
            chat_id
        } else {
            700_000_001
        };
        let mut chat = json!({"id": chat_id, "type": chat_type});
        if chat_type == "private" {
            chat["first_name"] = json!("Sandbox");
            chat["username"] = json!("sandbox_user");
        } else {
            chat["title"] = json!("Sandbox group");
        }
        let mut message = json!({
            "message_id": update_id + 1000,
            "from": {"id": user_id, "is_bot": false, "first_name": "Sandbox",
                     "username": "sandbox_user", "language_code": "en"},
            "chat": chat,
            "date": chrono::Utc::now().timestamp(),
            "text": text,
        });
        if text.starts_with('/') {
            let command = text.split_whitespace().next().unwrap_or(text);
            message["entities"] = json!([{
                "offset": 0,
                "length": command.encode_utf16().count(),
                "type": "bot_command",
            }]);
        }
        json!({"update_id": update_id, "message": message})
    }
}

async fn call(
    State(state): State<Arc<TelegramState>>,
    Path((bot, method)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let authorized = bot.strip_prefix("bot") == Some(state.token.as_str());
    let (params, response) = match params(query.as_deref(), content_type.as_deref(), &body) {
        Ok(params) => {
            let fault = state
                .faults
                .lock()
                .expect("telegram faults lock")
                .pop_front();
            if let Some(Fault::Hang(delay)) = fault {
                tokio::time::sleep(delay).await;
            }
            let response = answer(&state, authorized, &method, &params, fault);
            (params, response)
        }
        Err(description) => (
            Map::new(),
            envelope_error(StatusCode::BAD_REQUEST, description, None),
        ),
    };
    state
        .requests
        .lock()
        .expect("telegram requests lock")
        .push(Request {
            method,
            authorized,
            content_type,
            params: Value::Object(params),
            status: response.status().as_u16(),
        });
    response
}

/// Parameters from the query string and a JSON or form body, as the Bot API accepts them;
/// the error is the Bot API's description for an unreadable body.
fn params(
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Map<String, Value>, &'static str> {
    let mut params = Map::new();
    if let Some(query) = query {
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            params.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    }
    let media_type = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    match media_type.as_deref() {
        _ if body.is_empty() => {}
        Some("application/json") => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(fields)) => params.extend(fields),
            _ => return Err("Bad Request: can't parse JSON object"),
        },
        Some("application/x-www-form-urlencoded") => {
            for (k, v) in url::form_urlencoded::parse(body) {
                params.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
        _ => {}
    }
    Ok(params)
}

fn answer(
    state: &TelegramState,
    authorized: bool,
    method: &str,
    params: &Map<String, Value>,
    fault: Option<Fault>,
) -> Response {
    match fault {
        Some(Fault::Status(status)) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return envelope_error(code, code.canonical_reason().unwrap_or("Error"), None);
        }
        Some(Fault::RateLimited { retry_after_secs }) => {
            return envelope_error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too Many Requests: retry after {retry_after_secs}"),
                Some(json!({"retry_after": retry_after_secs})),
            );
        }
        Some(Fault::Blocked) => {
            return envelope_error(
                StatusCode::FORBIDDEN,
                "Forbidden: bot was blocked by the user",
                None,
            );
        }
        Some(Fault::Deactivated) => {
            return envelope_error(
                StatusCode::FORBIDDEN,
                "Forbidden: user is deactivated",
                None,
            );
        }
        Some(Fault::ChatNotFound) => {
            return envelope_error(StatusCode::BAD_REQUEST, "Bad Request: chat not found", None);
        }
        Some(Fault::Hang(_)) | None => {}
    }
    if !authorized {
        return envelope_error(StatusCode::UNAUTHORIZED, "Unauthorized", None);
    }
    match method.to_ascii_lowercase().as_str() {
        "getme" => ok(bot_user(state)),
        "sendmessage" => send_message(state, params),
        _ => envelope_error(StatusCode::NOT_FOUND, "Not Found", None),
    }
}

fn send_message(state: &TelegramState, params: &Map<String, Value>) -> Response {
    let chat_id = match params.get("chat_id") {
        None | Some(Value::Null) => {
            return envelope_error(
                StatusCode::BAD_REQUEST,
                "Bad Request: chat_id is empty",
                None,
            );
        }
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    let Some(chat_id) = chat_id else {
        return envelope_error(StatusCode::BAD_REQUEST, "Bad Request: chat not found", None);
    };
    let text = match params.get("text") {
        Some(Value::String(text)) if !text.trim().is_empty() => text.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return envelope_error(
                StatusCode::BAD_REQUEST,
                "Bad Request: message text is empty",
                None,
            );
        }
    };
    if text.encode_utf16().count() > MAX_TEXT {
        return envelope_error(
            StatusCode::BAD_REQUEST,
            "Bad Request: message is too long",
            None,
        );
    }
    let message_id = state.next_message_id.fetch_add(1, Ordering::Relaxed);
    state
        .sent
        .lock()
        .expect("telegram sent lock")
        .push(TelegramMessage {
            message_id,
            chat_id,
            text: text.clone(),
        });
    let chat = if chat_id > 0 {
        json!({"id": chat_id, "first_name": "Sandbox", "username": "sandbox_user",
               "type": "private"})
    } else if chat_id < -1_000_000_000_000 {
        json!({"id": chat_id, "title": "Sandbox group", "type": "supergroup"})
    } else {
        json!({"id": chat_id, "title": "Sandbox group", "type": "group"})
    };
    ok(json!({
        "message_id": message_id,
        "from": bot_user(state),
        "chat": chat,
        "date": chrono::Utc::now().timestamp(),
        "text": text,
    }))
}

/// The bot as `getMe` and a message's `from` describe it; its id is the token's prefix.
fn bot_user(state: &TelegramState) -> Value {
    let id = state
        .token
        .split(':')
        .next()
        .and_then(|id| id.parse::<i64>().ok())
        .unwrap_or(0);
    json!({
        "id": id,
        "is_bot": true,
        "first_name": "Herald Sandbox",
        "username": state.username,
        "can_join_groups": true,
        "can_read_all_group_messages": false,
        "supports_inline_queries": false,
    })
}

fn ok(result: Value) -> Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

fn envelope_error(status: StatusCode, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({
        "ok": false,
        "error_code": status.as_u16(),
        "description": description,
    });
    if let Some(parameters) = parameters {
        body["parameters"] = parameters;
    }
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "4242:sandbox-token";

    #[tokio::test]
    async fn send_message_accepts_json_and_form_bodies() {
        let telegram = Telegram::start(TOKEN).await.unwrap();
        let url = format!("{}bot{TOKEN}/sendMessage", telegram.url());
        let http = reqwest::Client::new();
        let r: Value = http
            .post(&url)
            .json(&json!({"chat_id": 42, "text": "hi"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["ok"], true);
        assert_eq!(r["result"]["chat"]["id"], 42);
        let r: Value = http
            .post(&url)
            .form(&[("chat_id", "-100123"), ("text", "hello")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["result"]["text"], "hello");
        assert_eq!(
            telegram.sent(),
            vec![
                TelegramMessage {
                    message_id: 1,
                    chat_id: 42,
                    text: "hi".into()
                },
                TelegramMessage {
                    message_id: 2,
                    chat_id: -100123,
                    text: "hello".into()
                },
            ]
        );
    }

    #[tokio::test]
    async fn wrong_tokens_are_unauthorized_and_get_me_names_the_bot() {
        let telegram = Telegram::start_named(TOKEN, "@my_bot").await.unwrap();
        let http = reqwest::Client::new();
        let r = http
            .get(format!("{}bot4242:wrong/getMe", telegram.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body,
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
        );
        let me: Value = http
            .get(format!("{}bot{TOKEN}/GETME", telegram.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["result"]["id"], 4242);
        assert_eq!(me["result"]["username"], "my_bot");
    }

    #[tokio::test]
    async fn missing_text_and_named_chats_are_bad_requests() {
        let telegram = Telegram::start(TOKEN).await.unwrap();
        let url = format!("{}bot{TOKEN}/sendMessage", telegram.url());
        let http = reqwest::Client::new();
        for (params, description) in [
            (json!({"chat_id": 1}), "Bad Request: message text is empty"),
            (json!({"text": "x"}), "Bad Request: chat_id is empty"),
            (
                json!({"chat_id": "@someone", "text": "x"}),
                "Bad Request: chat not found",
            ),
            (
                json!({"chat_id": 1, "text": "x".repeat(4097)}),
                "Bad Request: message is too long",
            ),
        ] {
            let r = http.post(&url).json(&params).send().await.unwrap();
            assert_eq!(r.status(), 400);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["description"], description);
        }
        assert!(telegram.sent().is_empty());
    }

    #[test]
    fn start_updates_look_like_telegrams() {
        let update = Telegram::start_update(7, 99, "private", "/start abc");
        assert_eq!(update["update_id"], 7);
        assert_eq!(
            update["message"]["chat"],
            json!({"id": 99, "type": "private",
            "first_name": "Sandbox", "username": "sandbox_user"})
        );
        assert_eq!(update["message"]["from"]["id"], 99);
        assert_eq!(
            update["message"]["entities"],
            json!([{"offset": 0, "length": 6, "type": "bot_command"}])
        );
        let group = Telegram::start_update(8, -5, "group", "hello");
        assert_ne!(group["message"]["from"]["id"], -5);
        assert!(group["message"].get("entities").is_none());
    }
}
