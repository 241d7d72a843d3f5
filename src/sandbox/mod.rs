//! Sandbox: local stand-ins for the network Herald talks to — a Jetstream server speaking
//! Jetstream's JSON event format over a real websocket, a PLC directory serving DID documents
//! over HTTP, identities with real signing keys, local servers speaking Twilio's Messages API,
//! Telegram's Bot API and a web-push service's protocol (with fault injection), and a real
//! third-party SMTP server (aiosmtpd) driven as a child process.
//!
//! Used by `herald demo`, the integration tests and the benchmarks, so a newcomer can watch
//! Herald work offline. Binds loopback only. Must not be used by the serving path.

pub mod push;
pub mod resend;
pub mod smtp;
pub mod telegram;
pub mod twilio;
pub mod vonage;
pub mod webhook;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;
use url::Url;

use crate::auth::{SigningKey, mint_service_jwt};
use crate::identity::PublicKey;

async fn serve(router: Router) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(addr)
}

// ---------------------------------------------------------------------------------------
// Jetstream
// ---------------------------------------------------------------------------------------

struct Entry {
    time_us: i64,
    /// For commits: the collection, matched against `wantedCollections`.
    collection: Option<String>,
    frame: Arc<str>,
}

struct JetstreamState {
    log: RwLock<Vec<Entry>>,
    /// Length of the log; connections wait on it for new events.
    appended: watch::Sender<usize>,
    /// Bumped to make every open connection drop.
    generation: watch::Sender<u64>,
    requests: Mutex<Vec<String>>,
    /// Connections currently streaming (counted once their starting point is fixed).
    streaming: std::sync::atomic::AtomicUsize,
}

/// A local Jetstream: events pushed here are streamed to subscribers, replayed from any
/// `cursor` (time_us), filtered by `wantedCollections`.
#[derive(Clone)]
pub struct Jetstream {
    addr: SocketAddr,
    state: Arc<JetstreamState>,
}

impl Jetstream {
    pub async fn start() -> std::io::Result<Self> {
        let state = Arc::new(JetstreamState {
            log: RwLock::new(Vec::new()),
            appended: watch::channel(0).0,
            generation: watch::channel(0).0,
            requests: Mutex::new(Vec::new()),
            streaming: Default::default(),
        });
        let router = Router::new()
            .route("/subscribe", get(subscribe))
            .with_state(state.clone());
        Ok(Self {
            addr: serve(router).await?,
            state,
        })
    }

    /// The subscribe endpoint, as `HERALD_JETSTREAM_URL` expects it.
    pub fn url(&self) -> Url {
        Url::parse(&format!("ws://{}/subscribe", self.addr)).expect("valid loopback URL")
    }

    /// Append an event (a JSON object without `time_us`; one is assigned). Returns its time.
    pub fn push(&self, mut event: Value) -> i64 {
        let collection = event
            .pointer("/commit/collection")
            .and_then(Value::as_str)
            .map(str::to_string);
        self.append(collection, |time| {
            event["time_us"] = json!(time);
            event.to_string()
        })
    }

    /// Append a frame verbatim (malformed input for tests). It is sent to every subscriber.
    pub fn push_raw(&self, frame: impl Into<String>) -> i64 {
        let frame = frame.into();
        self.append(None, |_| frame)
    }

    fn append(&self, collection: Option<String>, frame: impl FnOnce(i64) -> String) -> i64 {
        let mut log = self.state.log.write().expect("jetstream log lock");
        let now = chrono::Utc::now().timestamp_micros();
        let time_us = log.last().map_or(now, |e| now.max(e.time_us + 1));
        log.push(Entry {
            time_us,
            collection,
            frame: frame(time_us).into(),
        });
        let len = log.len();
        drop(log);
        self.state.appended.send_replace(len);
        time_us
    }

    /// Close every open connection, as a network fault would.
    pub fn disconnect_all(&self) {
        self.state.generation.send_modify(|g| *g += 1);
    }

    /// Query strings of every subscribe request received, in order.
    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().expect("requests lock").clone()
    }

    /// Connections currently streaming. A subscriber without a cursor only sees events pushed
    /// after it connected, as with the real Jetstream; tests wait for one before pushing.
    pub fn streaming(&self) -> usize {
        self.state
            .streaming
            .load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.state.log.read().expect("jetstream log lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn subscribe(
    State(state): State<Arc<JetstreamState>>,
    Query(params): Query<Vec<(String, String)>>,
    ws: WebSocketUpgrade,
) -> Response {
    let query = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    state.requests.lock().expect("requests lock").push(query);
    let wanted: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "wantedCollections")
        .map(|(_, v)| v.clone())
        .collect();
    let cursor = params
        .iter()
        .find(|(k, _)| k == "cursor")
        .and_then(|(_, v)| v.parse::<i64>().ok());
    ws.max_message_size(64 << 20)
        .on_upgrade(move |socket| stream_events(state, socket, wanted, cursor))
}

fn wanted(patterns: &[String], collection: &str) -> bool {
    patterns.is_empty()
        || patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => collection.starts_with(prefix),
            None => p == collection,
        })
}

async fn stream_events(
    state: Arc<JetstreamState>,
    mut socket: WebSocket,
    patterns: Vec<String>,
    cursor: Option<i64>,
) {
    let mut appended = state.appended.subscribe();
    let mut generation = state.generation.subscribe();
    generation.borrow_and_update();
    let mut next = {
        let log = state.log.read().expect("jetstream log lock");
        match cursor {
            Some(c) => log.partition_point(|e| e.time_us < c),
            // Without a cursor Jetstream starts at live events.
            None => log.len(),
        }
    };
    struct Streaming<'a>(&'a std::sync::atomic::AtomicUsize);
    impl Drop for Streaming<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
    state
        .streaming
        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    let _streaming = Streaming(&state.streaming);
    loop {
        let batch: Vec<Arc<str>> = {
            let log = state.log.read().expect("jetstream log lock");
            let end = log.len().min(next + 1024);
            let frames = log[next..end]
                .iter()
                .filter(|e| e.collection.as_deref().is_none_or(|c| wanted(&patterns, c)))
                .map(|e| e.frame.clone())
                .collect();
            next = end;
            frames
        };
        for frame in batch {
            if generation.has_changed().unwrap_or(true) {
                return;
            }
            if socket.send(Message::text(frame.as_ref())).await.is_err() {
                return;
            }
        }
        if next < *appended.borrow_and_update() {
            continue;
        }
        tokio::select! {
            changed = appended.changed() => if changed.is_err() { return },
            _ = generation.changed() => return,
        }
    }
}

/// Jetstream event builders (without `time_us`, which the server assigns).
pub mod event {
    use serde_json::{Value, json};

    pub fn create(did: &str, collection: &str, rkey: &str, rev: &str, record: Value) -> Value {
        commit(did, "create", collection, rkey, rev, Some(record))
    }

    pub fn update(did: &str, collection: &str, rkey: &str, rev: &str, record: Value) -> Value {
        commit(did, "update", collection, rkey, rev, Some(record))
    }

    pub fn delete(did: &str, collection: &str, rkey: &str, rev: &str) -> Value {
        commit(did, "delete", collection, rkey, rev, None)
    }

    fn commit(
        did: &str,
        operation: &str,
        collection: &str,
        rkey: &str,
        rev: &str,
        record: Option<Value>,
    ) -> Value {
        let mut commit = json!({"rev": rev, "operation": operation, "collection": collection,
                                "rkey": rkey});
        if let Some(mut record) = record {
            record["$type"] = json!(collection);
            commit["record"] = record;
            commit["cid"] = json!("bafyreihwsnsfxb2zs6ymy3kf6tlrkadkkyfeuv4bgq3fm5vpjcgbocxoxi");
        }
        json!({"did": did, "kind": "commit", "commit": commit})
    }

    pub fn identity(did: &str, handle: &str, seq: i64) -> Value {
        json!({"did": did, "kind": "identity",
               "identity": {"did": did, "handle": handle, "seq": seq,
                            "time": "2026-01-01T00:00:00.000Z"}})
    }

    pub fn account(did: &str, active: bool, status: Option<&str>, seq: i64) -> Value {
        let mut account = json!({"did": did, "active": active, "seq": seq,
                                 "time": "2026-01-01T00:00:00.000Z"});
        if let Some(status) = status {
            account["status"] = json!(status);
        }
        json!({"did": did, "kind": "account", "account": account})
    }
}

/// A monotonic TID (ATProto's sortable timestamp id) for revs and record keys.
pub fn tid() -> String {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = chrono::Utc::now().timestamp_micros();
    let micros = LAST
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
            Some(now.max(last + 1))
        })
        .map_or(now, |last| now.max(last + 1));
    const ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";
    let value = ((micros as u64) << 10) & 0x7fff_ffff_ffff_ffff;
    (0..13)
        .rev()
        .map(|i| ALPHABET[((value >> (i * 5)) & 31) as usize] as char)
        .collect()
}

// ---------------------------------------------------------------------------------------
// PLC directory
// ---------------------------------------------------------------------------------------

/// A local PLC directory: `GET /{did}` answers the DID document registered for it, and
/// `GET /.well-known/did.json` answers the one registered as this host's did:web.
#[derive(Clone)]
pub struct Plc {
    addr: SocketAddr,
    docs: Arc<RwLock<HashMap<String, Value>>>,
}

impl Plc {
    pub async fn start() -> std::io::Result<Self> {
        let docs: Arc<RwLock<HashMap<String, Value>>> = Arc::default();
        let router = Router::new()
            .route("/.well-known/did.json", get(web_document))
            .route("/{did}", get(plc_document))
            .with_state(docs.clone());
        Ok(Self {
            addr: serve(router).await?,
            docs,
        })
    }

    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}", self.addr)).expect("valid loopback URL")
    }

    /// The did:web this server answers for (`did:web:localhost%3A<port>`).
    pub fn web_did(&self) -> String {
        format!("did:web:localhost%3A{}", self.addr.port())
    }

    pub fn register(&self, did: &str, document: Value) {
        self.docs
            .write()
            .expect("plc lock")
            .insert(did.to_string(), document);
    }

    pub fn register_identity(&self, identity: &Identity) {
        self.register(&identity.did, identity.document());
    }
}

async fn plc_document(
    State(docs): State<Arc<RwLock<HashMap<String, Value>>>>,
    Path(did): Path<String>,
) -> Response {
    match docs.read().expect("plc lock").get(&did) {
        Some(doc) => axum::Json(doc.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": format!("DID not registered: {did}")})),
        )
            .into_response(),
    }
}

async fn web_document(State(docs): State<Arc<RwLock<HashMap<String, Value>>>>) -> Response {
    let docs = docs.read().expect("plc lock");
    match docs.iter().find(|(did, _)| did.starts_with("did:web:")) {
        Some((_, doc)) => axum::Json(doc.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

// ---------------------------------------------------------------------------------------
// Identities
// ---------------------------------------------------------------------------------------

/// How an identity's key appears in its DID document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `Multikey` with a multicodec-prefixed key (what PLC serves today).
    Multikey,
    /// `EcdsaSecp256k1VerificationKey2019` / `EcdsaSecp256r1VerificationKey2019` with the raw
    /// key (what some directories, the reference dev-env's among them, still serve).
    Legacy,
}

/// A DID with a real signing key, able to produce its DID document and service-auth tokens.
pub struct Identity {
    pub did: String,
    pub key: SigningKey,
    pub format: KeyFormat,
}

impl Identity {
    /// A did:plc with a secp256k1 key; `name` makes the DID deterministic and readable.
    pub fn plc(name: &str) -> Self {
        Self {
            did: plc_did(name),
            key: SigningKey::generate_k256(),
            format: KeyFormat::Multikey,
        }
    }

    /// A did:plc with a P-256 key.
    pub fn plc_p256(name: &str) -> Self {
        Self {
            did: plc_did(name),
            key: SigningKey::generate_p256(),
            format: KeyFormat::Multikey,
        }
    }

    pub fn with_format(mut self, format: KeyFormat) -> Self {
        self.format = format;
        self
    }

    pub fn document(&self) -> Value {
        let public = self.key.public_key();
        let method = match self.format {
            KeyFormat::Multikey => json!({
                "id": format!("{}#atproto", self.did),
                "type": "Multikey",
                "controller": self.did,
                "publicKeyMultibase": public.multibase(),
            }),
            KeyFormat::Legacy => {
                let (kind, raw) = match &public {
                    PublicKey::K256(k) => (
                        "EcdsaSecp256k1VerificationKey2019",
                        k.to_encoded_point(true).as_bytes().to_vec(),
                    ),
                    PublicKey::P256(k) => (
                        "EcdsaSecp256r1VerificationKey2019",
                        k.to_encoded_point(true).as_bytes().to_vec(),
                    ),
                };
                json!({
                    "id": "#atproto",
                    "type": kind,
                    "controller": self.did,
                    "publicKeyMultibase": multibase::encode(multibase::Base::Base58Btc, raw),
                })
            }
        };
        json!({
            "@context": ["https://www.w3.org/ns/did/v1"],
            "id": self.did,
            "alsoKnownAs": [],
            "verificationMethod": [method],
            "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                         "serviceEndpoint": "http://127.0.0.1:1"}],
        })
    }

    /// A service-auth JWT for calling `lxm` on the service `aud`, valid for a minute.
    pub fn token(&self, aud: &str, lxm: &str) -> String {
        let exp = chrono::Utc::now().timestamp() + 60;
        mint_service_jwt(&self.key, &self.did, aud, Some(lxm), exp)
    }

    /// A JWT with these claims signed by this identity's key (a pre-validation assertion).
    pub fn sign_claims(&self, claims: &Value) -> String {
        crate::auth::mint_jwt(&self.key, claims)
    }
}

/// `did:plc:` + 24 base32 characters derived from `name`.
pub fn plc_did(name: &str) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let digest = Sha256::digest(name.as_bytes());
    let id: String = digest
        .iter()
        .take(24)
        .map(|b| ALPHABET[(b & 31) as usize] as char)
        .collect();
    format!("did:plc:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tids_are_13_sortable_characters_and_increase() {
        let a = tid();
        let b = tid();
        assert_eq!(a.len(), 13);
        assert!(b > a, "{b} > {a}");
    }

    #[test]
    fn plc_dids_are_deterministic_and_well_formed() {
        assert_eq!(plc_did("alice"), plc_did("alice"));
        assert!(crate::model::is_did(&plc_did("alice")));
        assert_eq!(plc_did("alice").len(), "did:plc:".len() + 24);
    }

    #[test]
    fn wanted_collections_match_prefixes() {
        let p = vec!["community.herald.*".to_string()];
        assert!(wanted(&p, "community.herald.subscription"));
        assert!(!wanted(&p, "app.bsky.feed.post"));
    }
}
