//! A tiny local DID host for tests: PLC-directory style `GET /{did}` and `did:web` style
//! `GET /.well-known/did.json` (the DID taken from the `Host` header), on 127.0.0.1:0.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use url::Url;

use super::{PublicKey, Resolver, ResolverConfig};

#[derive(Clone, Default)]
struct Shared {
    docs: Arc<Mutex<HashMap<String, Value>>>,
    failures: Arc<Mutex<HashMap<String, u16>>>,
    hits: Arc<AtomicUsize>,
}

pub(crate) struct TestPlc {
    url: Url,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestPlc {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestPlc {
    pub(crate) async fn start() -> Self {
        let shared = Shared::default();
        let app = Router::new()
            .route("/.well-known/did.json", get(serve_did_web))
            .route("/{did}", get(serve_plc))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url: Url::parse(&format!("http://{addr}")).unwrap(),
            shared,
            server,
        }
    }

    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    /// A resolver pointed at this server, with a long TTL so cache behaviour is deterministic.
    pub(crate) fn resolver(&self) -> Resolver {
        Resolver::new(ResolverConfig {
            plc_url: self.url.clone(),
            cache_ttl: Duration::from_secs(600),
            http_timeout: Duration::from_secs(5),
        })
    }

    /// Serves `doc` for `did` from now on (and clears any failure set for it).
    pub(crate) fn put(&self, did: &str, doc: Value) {
        self.shared.failures.lock().unwrap().remove(did);
        self.shared.docs.lock().unwrap().insert(did.to_owned(), doc);
    }

    pub(crate) fn remove(&self, did: &str) {
        self.shared.docs.lock().unwrap().remove(did);
    }

    /// Answers requests for `did` with `status` (and a `Location` header, for redirects).
    pub(crate) fn fail_with(&self, did: &str, status: u16) {
        self.shared
            .failures
            .lock()
            .unwrap()
            .insert(did.to_owned(), status);
    }

    /// Number of document requests served so far.
    pub(crate) fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }
}

async fn serve_plc(State(shared): State<Shared>, Path(did): Path<String>) -> Response {
    answer(&shared, &did)
}

async fn serve_did_web(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    answer(&shared, &format!("did:web:{}", host.replace(':', "%3A")))
}

fn answer(shared: &Shared, did: &str) -> Response {
    shared.hits.fetch_add(1, Ordering::SeqCst);
    if let Some(status) = shared.failures.lock().unwrap().get(did) {
        let status = StatusCode::from_u16(*status).unwrap();
        return (status, [(header::LOCATION, "/elsewhere")], "failure").into_response();
    }
    match shared.docs.lock().unwrap().get(did) {
        Some(doc) => axum::Json(doc.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "DID not registered").into_response(),
    }
}

/// A syntactically valid `did:plc` built from a readable name (letters a–z and digits 2–7).
pub(crate) fn plc_did(name: &str) -> String {
    format!("did:plc:{name:a<24}")
}

/// A current-format (Multikey) PLC document for `did` with `key` as its `#atproto` key.
pub(crate) fn plc_doc(did: &str, key: &PublicKey) -> Value {
    json!({
        "@context": [
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/multikey/v1",
            "https://w3id.org/security/suites/secp256k1-2019/v1"
        ],
        "id": did,
        "alsoKnownAs": [format!("at://{}.test", did.rsplit(':').next().unwrap_or("x"))],
        "verificationMethod": [{
            "id": format!("{did}#atproto"),
            "type": "Multikey",
            "controller": did,
            "publicKeyMultibase": key.multibase(),
        }],
        "service": [{
            "id": "#atproto_pds",
            "type": "AtprotoPersonalDataServer",
            "serviceEndpoint": "https://pds.test"
        }]
    })
}
