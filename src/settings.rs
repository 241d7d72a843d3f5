//! Settings: one typed struct, read from an optional TOML file and then from `HERALD_*`
//! environment variables (the environment wins).
//!
//! Owns the names and defaults of every configuration key (DESIGN.md §4). Unknown keys are an
//! error in both sources, so a typo never silently falls back to a default. Secrets are held in
//! [`SecretString`] and never printed; `Debug` of the settings is safe to log.
//! Must not touch: anything at runtime — settings are parsed once and passed in, never global.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// Every key Herald understands, with its default (`None`: derived or unset).
const KEYS: &[(&str, Option<&str>)] = &[
    ("HERALD_DATABASE_URL", Some("sqlite://data/herald.db")),
    ("HERALD_LISTEN", Some("127.0.0.1:2470")),
    ("HERALD_PUBLIC_URL", Some("http://127.0.0.1:2470")),
    ("HERALD_SERVICE_DID", None),
    (
        "HERALD_JETSTREAM_URL",
        Some("wss://jetstream2.us-east.bsky.network/subscribe"),
    ),
    ("HERALD_PLC_URL", Some("https://plc.directory")),
    ("HERALD_DID_CACHE_TTL_SECS", Some("300")),
    ("HERALD_LOG", Some("info")),
];

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("unknown configuration key {0} (known keys: see the README's configuration table)")]
    UnknownKey(String),
    #[error("invalid value for {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("cannot read configuration file {path}: {reason}")]
    File { path: String, reason: String },
}

/// Which store a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Settings {
    /// Index, inbox and outbox. May carry a password, hence secret.
    pub database_url: SecretString,
    pub listen: SocketAddr,
    /// Base URL people and PDSes reach Herald at; the service DID and links derive from it.
    pub public_url: Url,
    /// The `aud` every inter-service JWT must carry.
    pub service_did: String,
    /// Jetstream's subscribe endpoint; Herald appends `wantedCollections` and `cursor`.
    pub jetstream_url: Url,
    pub plc_url: Url,
    /// How long a resolved DID document is trusted before it is fetched again.
    pub did_cache_ttl: Duration,
    /// `tracing` filter directive.
    pub log: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field(
                "database_url",
                &redact_url(self.database_url.expose_secret()),
            )
            .field("listen", &self.listen)
            .field("public_url", &self.public_url.as_str())
            .field("service_did", &self.service_did)
            .field("jetstream_url", &self.jetstream_url.as_str())
            .field("plc_url", &self.plc_url.as_str())
            .field("did_cache_ttl", &self.did_cache_ttl)
            .field("log", &self.log)
            .finish()
    }
}

/// A URL with any password replaced, for logs.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => raw.to_string(),
    }
}

impl Settings {
    /// Load from an optional TOML file, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_excluding(file, &[])
    }

    /// As [`Settings::load`], ignoring environment variables in `ignore` (the CLI's own,
    /// such as the variable naming the configuration file).
    pub fn load_excluding(file: Option<&Path>, ignore: &[&str]) -> Result<Self, SettingsError> {
        let mut values = BTreeMap::new();
        if let Some(path) = file {
            values.extend(read_toml(path)?);
        }
        values.extend(
            std::env::vars()
                .filter(|(k, _)| k.starts_with("HERALD_") && !ignore.contains(&k.as_str())),
        );
        Self::from_map(values)
    }

    /// Build from explicit key/value pairs (the keys of the configuration table). Tests use
    /// this instead of mutating the process environment.
    pub fn from_map(values: BTreeMap<String, String>) -> Result<Self, SettingsError> {
        for key in values.keys() {
            if !KEYS.iter().any(|(k, _)| k == key) {
                return Err(SettingsError::UnknownKey(key.clone()));
            }
        }
        let get = |key: &'static str| -> Option<String> {
            values.get(key).cloned().or_else(|| {
                KEYS.iter()
                    .find(|(k, _)| *k == key)
                    .and_then(|(_, d)| d.map(str::to_string))
            })
        };
        let required = |key: &'static str| get(key).unwrap_or_default();
        let url = |key: &'static str| {
            Url::parse(&required(key)).map_err(|e| SettingsError::Invalid {
                key,
                reason: e.to_string(),
            })
        };

        let database_url = required("HERALD_DATABASE_URL");
        backend_of(&database_url).map_err(|reason| SettingsError::Invalid {
            key: "HERALD_DATABASE_URL",
            reason,
        })?;
        let listen = required("HERALD_LISTEN")
            .parse()
            .map_err(|e: std::net::AddrParseError| SettingsError::Invalid {
                key: "HERALD_LISTEN",
                reason: e.to_string(),
            })?;
        let public_url = url("HERALD_PUBLIC_URL")?;
        let service_did = match get("HERALD_SERVICE_DID") {
            Some(did) if did.starts_with("did:") => did,
            Some(other) => {
                return Err(SettingsError::Invalid {
                    key: "HERALD_SERVICE_DID",
                    reason: format!("{other:?} is not a DID"),
                });
            }
            None => did_web_for(&public_url).ok_or(SettingsError::Invalid {
                key: "HERALD_PUBLIC_URL",
                reason: "has no host to derive a did:web from".into(),
            })?,
        };
        let jetstream_url = url("HERALD_JETSTREAM_URL")?;
        if !matches!(jetstream_url.scheme(), "ws" | "wss") {
            return Err(SettingsError::Invalid {
                key: "HERALD_JETSTREAM_URL",
                reason: "must be a ws:// or wss:// URL".into(),
            });
        }
        let did_cache_ttl = required("HERALD_DID_CACHE_TTL_SECS")
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| SettingsError::Invalid {
                key: "HERALD_DID_CACHE_TTL_SECS",
                reason: e.to_string(),
            })?;

        Ok(Self {
            database_url: SecretString::from(database_url),
            listen,
            public_url,
            service_did,
            jetstream_url,
            plc_url: url("HERALD_PLC_URL")?,
            did_cache_ttl,
            log: required("HERALD_LOG"),
        })
    }

    pub fn backend(&self) -> Backend {
        // Validated in `from_map`.
        backend_of(self.database_url.expose_secret()).unwrap_or(Backend::Sqlite)
    }
}

pub fn backend_of(url: &str) -> Result<Backend, String> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err("must start with sqlite: or postgres://".into())
    }
}

/// `did:web` of a public URL; a port is percent-encoded as the did:web spec requires.
pub fn did_web_for(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("did:web:{host}%3A{port}"),
        None => format!("did:web:{host}"),
    })
}

fn read_toml(path: &Path) -> Result<BTreeMap<String, String>, SettingsError> {
    let file_err = |reason: String| SettingsError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_err(e.to_string()))?;
    table
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => return Err(file_err(format!("{key}: unsupported value {other}"))),
            };
            Ok((key, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_select_embedded_sqlite_and_a_did_web_service_did() {
        let s = Settings::from_map(BTreeMap::new()).unwrap();
        assert_eq!(s.backend(), Backend::Sqlite);
        assert_eq!(s.service_did, "did:web:127.0.0.1%3A2470");
        assert_eq!(s.listen.port(), 2470);
    }

    #[test]
    fn an_unknown_key_is_an_error() {
        let err = Settings::from_map(map(&[("HERALD_DATABSE_URL", "x")])).unwrap_err();
        assert!(matches!(err, SettingsError::UnknownKey(k) if k == "HERALD_DATABSE_URL"));
    }

    #[test]
    fn a_postgres_url_selects_postgres_and_its_password_never_prints() {
        let s = Settings::from_map(map(&[(
            "HERALD_DATABASE_URL",
            "postgres://herald:hunter2@db/herald",
        )]))
        .unwrap();
        assert_eq!(s.backend(), Backend::Postgres);
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn a_toml_file_uses_the_same_keys_and_rejects_unknown_ones() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(
            &good,
            "HERALD_LISTEN = \"127.0.0.1:9999\"\nHERALD_DID_CACHE_TTL_SECS = 5\n",
        )
        .unwrap();
        let values = read_toml(&good).unwrap();
        let s = Settings::from_map(values).unwrap();
        assert_eq!(s.listen.port(), 9999);
        assert_eq!(s.did_cache_ttl, Duration::from_secs(5));

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "listen = \"x\"\n").unwrap();
        assert!(Settings::from_map(read_toml(&bad).unwrap()).is_err());
    }

    #[test]
    fn a_non_websocket_jetstream_url_is_rejected() {
        let err =
            Settings::from_map(map(&[("HERALD_JETSTREAM_URL", "http://x/subscribe")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_JETSTREAM_URL"));
    }
}
