//! What the adapter test files share: client timeouts against the local provider servers, an
//! unreachable URL, and the check that an error names no address, token or credential.

#![allow(dead_code)]

use std::time::Duration;

use herald::channels::SendError;
use url::Url;

/// Short enough to keep the suite fast, long enough for a loaded CI machine to answer a
/// loopback request.
pub const CLIENT_TIMEOUT: Duration = Duration::from_millis(400);
/// Longer than the client waits.
pub const HANG: Duration = Duration::from_secs(5);

/// An error's text in every form it could be logged or stored in.
pub fn texts(err: &SendError) -> String {
    format!("{err} | {err:?}")
}

pub fn assert_reveals_none(err: &SendError, secrets: &[&str]) {
    let text = texts(err);
    for secret in secrets {
        assert!(!text.contains(secret), "{text:?} reveals {secret:?}");
    }
}

/// A loopback URL nothing listens on.
pub async fn unreachable_url() -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    Url::parse(&format!("http://{addr}")).unwrap()
}
