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

use crate::model::Channel;
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
    ("HERALD_RELAY_URL", None),
    ("HERALD_BACKFILL_PER_PDS", Some("4")),
    ("HERALD_BACKFILL_CONCURRENCY", Some("32")),
    ("HERALD_PLC_URL", Some("https://plc.directory")),
    ("HERALD_DID_CACHE_TTL_SECS", Some("300")),
    ("HERALD_LOG", Some("info")),
    ("HERALD_VAULT_URL", Some("sqlite://data/vault.db")),
    ("HERALD_VAULT_KEY", None),
    ("HERALD_VAULT_KEY_FILE", Some("data/vault.key")),
    ("HERALD_SMTP_URL", None),
    ("HERALD_EMAIL_FROM", Some("Herald <herald@localhost>")),
    ("HERALD_SMS_API_URL", Some("https://api.twilio.com")),
    ("HERALD_SMS_ACCOUNT_SID", None),
    ("HERALD_SMS_AUTH_TOKEN", None),
    ("HERALD_SMS_FROM", None),
    ("HERALD_TELEGRAM_API_URL", Some("https://api.telegram.org")),
    ("HERALD_TELEGRAM_BOT_TOKEN", None),
    ("HERALD_TELEGRAM_BOT_USERNAME", None),
    ("HERALD_TELEGRAM_WEBHOOK_SECRET", None),
    ("HERALD_VAPID_PRIVATE_KEY", None),
    ("HERALD_VAPID_SUBJECT", None),
    ("HERALD_RESEND_API_URL", Some("https://api.resend.com")),
    ("HERALD_RESEND_API_KEY", None),
    ("HERALD_EMAIL_PROVIDERS", Some("smtp,resend")),
    ("HERALD_DKIM_DOMAIN", None),
    ("HERALD_DKIM_SELECTOR", None),
    ("HERALD_DKIM_PRIVATE_KEY_FILE", None),
    ("HERALD_VONAGE_API_URL", Some("https://rest.nexmo.com")),
    ("HERALD_VONAGE_API_KEY", None),
    ("HERALD_VONAGE_API_SECRET", None),
    ("HERALD_VONAGE_FROM", None),
    ("HERALD_SMS_PROVIDERS", Some("twilio,vonage")),
    ("HERALD_RESEND_WEBHOOK_SECRET", None),
    ("HERALD_VONAGE_SIGNATURE_SECRET", None),
    ("HERALD_WEBHOOK_ALLOW_PRIVATE", Some("false")),
    ("HERALD_PUSH_ALLOW_PRIVATE", Some("false")),
    ("HERALD_DELIVERY_MAX_ATTEMPTS", Some("8")),
    ("HERALD_DELIVERY_CONCURRENCY", Some("512")),
    ("HERALD_DELIVERY_BATCH", Some("512")),
    ("HERALD_DELIVERY_LEASE_SECS", Some("120")),
    ("HERALD_DELIVERY_RETRY_BASE_MS", Some("30000")),
    ("HERALD_DELIVERY_RETRY_MAX_SECS", Some("21600")),
    ("HERALD_DELIVERY_POLL_MS", Some("1000")),
    ("HERALD_DIGEST_CHANNELS", Some("sms")),
    ("HERALD_DIGEST_MAX_ITEMS", Some("10")),
    ("HERALD_SMS_MEMBER_DAILY_LIMIT", Some("1")),
    ("HERALD_SMS_COMMUNITY_DAILY_LIMIT", Some("0")),
    ("HERALD_INBOX_URL", None),
    ("HERALD_TRUSTED_PREVALIDATORS", Some("")),
    ("HERALD_EMAIL_DOUBLE_OPT_IN", Some("false")),
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
    /// A relay's or PDS's base URL: when set, ingest follows its firehose
    /// (`/xrpc/com.atproto.sync.subscribeRepos`) instead of Jetstream, and backfill lists
    /// repositories there.
    pub relay_url: Option<Url>,
    /// Backfill: repositories read at once from one PDS, and in all.
    pub backfill_per_pds: usize,
    pub backfill_concurrency: usize,
    pub plc_url: Url,
    /// How long a resolved DID document is trusted before it is fetched again.
    pub did_cache_ttl: Duration,
    /// `tracing` filter directive.
    pub log: String,
    pub vault: VaultSettings,
    pub providers: ProviderSettings,
    /// DIDs whose signed email pre-validations are trusted (seed 002).
    pub trusted_prevalidators: Vec<String>,
    /// Standalone email subscriptions wait for a confirmation click instead of starting at once.
    pub email_double_opt_in: bool,
    pub delivery: DeliverySettings,
    pub schedule: ScheduleSettings,
}

/// What the operator decides about timing and volume: which channels wait for the daily
/// digest unless a member says otherwise, and the SMS caps members cannot raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSettings {
    /// Channels whose default cadence is the daily digest (`HERALD_DIGEST_CHANNELS`).
    pub digest_channels: Vec<Channel>,
    /// Items listed in one digest message; the rest are counted ("and N more") and linked.
    pub digest_max_items: usize,
    /// Most SMS a member gets per local day, whatever their own `channelLimits` say; 0 means
    /// no operator cap.
    pub sms_member_daily: u32,
    /// Most SMS sent per community per UTC day; 0 means no cap. Maintainers are warned at 80%
    /// and SMS beyond it are refused (dead letters saying so), never silently dropped.
    pub sms_community_daily: u64,
    /// Where a digest's "and N more" links: where members read their inbox.
    pub inbox_url: Url,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            digest_channels: vec![Channel::Sms],
            digest_max_items: 10,
            sms_member_daily: 1,
            sms_community_daily: 0,
            inbox_url: Url::parse("http://127.0.0.1:2470").expect("static URL"),
        }
    }
}

/// Where contacts live and the keys that seal them.
#[derive(Clone)]
pub struct VaultSettings {
    /// A separate database from the index (`sqlite:` or `postgres://`).
    pub url: SecretString,
    /// The key ring given inline (`HERALD_VAULT_KEY`); when unset, `key_file` is used.
    pub key: Option<SecretString>,
    /// Key ring file, created with mode 0600 on first run when no inline key is given.
    pub key_file: std::path::PathBuf,
}

/// Outbound providers. Each channel is configured only when its required keys are present;
/// an unconfigured channel is reported as unavailable, never silently skipped.
#[derive(Clone, Default)]
pub struct ProviderSettings {
    /// `smtp://host:port`, `smtp://host:port?tls=required` (STARTTLS) or `smtps://host:port`,
    /// credentials in the URL.
    pub smtp_url: Option<SecretString>,
    pub email_from: String,
    pub sms: SmsSettings,
    pub telegram: TelegramSettings,
    pub vapid: VapidSettings,
    pub resend: ResendSettings,
    pub vonage: VonageSettings,
    pub dkim: DkimSettings,
    /// Email providers in failover order (`smtp`, `resend`); unconfigured ones are left out.
    pub email_providers: Vec<String>,
    /// SMS providers in failover order (`twilio`, `vonage`); unconfigured ones are left out.
    pub sms_providers: Vec<String>,
    /// Let webhooks reach loopback and private addresses (tests, single-host setups). Off by
    /// default: a member's webhook URL must not become a way into the operator's network.
    pub webhook_allow_private: bool,
    /// Let web push endpoints be loopback and private addresses (tests, a push service next
    /// to Herald). Off by default, for the same reason.
    pub push_allow_private: bool,
    pub callbacks: CallbackSettings,
}

/// Secrets that authenticate what providers post back to Herald (bounces, complaints,
/// inbound SMS). An endpoint whose secret is unset answers 404: Herald never acts on an
/// unsigned callback. Twilio's inbound SMS is signed with the account's auth token
/// (`HERALD_SMS_AUTH_TOKEN`), so it has no setting here.
#[derive(Clone, Default)]
pub struct CallbackSettings {
    /// Resend's webhook signing secret (`whsec_…`, Svix / Standard Webhooks).
    pub resend_webhook_secret: Option<SecretString>,
    /// Vonage's signature secret, for signed inbound-SMS webhooks (HMAC-SHA256).
    pub vonage_signature_secret: Option<SecretString>,
}

/// Resend's HTTP email API, as an alternative or failover to SMTP.
#[derive(Clone, Default)]
pub struct ResendSettings {
    pub api_url: Option<Url>,
    pub api_key: Option<SecretString>,
}

/// Vonage's SMS API, as a failover to the Twilio-shaped gateway.
#[derive(Clone, Default)]
pub struct VonageSettings {
    pub api_url: Option<Url>,
    pub api_key: Option<String>,
    pub api_secret: Option<SecretString>,
    pub from: Option<String>,
}

/// DKIM signing of outgoing email (RSA or Ed25519 key in PEM); off unless all three are set.
#[derive(Clone, Default)]
pub struct DkimSettings {
    pub domain: Option<String>,
    pub selector: Option<String>,
    pub private_key_file: Option<std::path::PathBuf>,
}

/// How the dispatcher drains the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverySettings {
    /// Attempts before a delivery that keeps failing transiently becomes a dead letter.
    pub max_attempts: u32,
    /// Messages in flight at once per process, from claim until their outcome is written:
    /// more than the SMTP pool's 64 connections, because at any moment some messages are
    /// being looked up or recorded rather than sent (64 sent email 25 % slower in the
    /// benchmark).
    pub concurrency: usize,
    /// Rows claimed per query.
    pub batch: usize,
    /// How long a claim lasts; a process killed mid-send loses its claim after this.
    pub lease: Duration,
    /// First retry delay; each later one doubles, with jitter, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How often an idle dispatcher looks for due deliveries (a publish in the same process
    /// wakes it at once).
    pub poll: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            concurrency: 512,
            batch: 512,
            lease: Duration::from_secs(120),
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(6 * 60 * 60),
            poll: Duration::from_secs(1),
        }
    }
}

/// An SMS gateway speaking Twilio's Messages API.
#[derive(Clone, Default)]
pub struct SmsSettings {
    pub api_url: Option<Url>,
    pub account_sid: Option<String>,
    pub auth_token: Option<SecretString>,
    pub from: Option<String>,
}

#[derive(Clone, Default)]
pub struct TelegramSettings {
    pub api_url: Option<Url>,
    pub bot_token: Option<SecretString>,
    pub bot_username: Option<String>,
    /// Compared with `X-Telegram-Bot-Api-Secret-Token` on every webhook call.
    pub webhook_secret: Option<SecretString>,
}

#[derive(Clone, Default)]
pub struct VapidSettings {
    /// Base64url of the 32-byte P-256 private scalar.
    pub private_key: Option<SecretString>,
    /// `mailto:` or `https:` contact for push services.
    pub subject: Option<String>,
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
            .field("relay_url", &self.relay_url.as_ref().map(Url::as_str))
            .field("plc_url", &self.plc_url.as_str())
            .field("did_cache_ttl", &self.did_cache_ttl)
            .field("log", &self.log)
            .field("vault_url", &redact_url(self.vault.url.expose_secret()))
            .field("vault_key_file", &self.vault.key_file)
            .field(
                "smtp_url",
                &self
                    .providers
                    .smtp_url
                    .as_ref()
                    .map(|u| redact_url(u.expose_secret())),
            )
            .field("email_from", &self.providers.email_from)
            .field(
                "sms_api_url",
                &self.providers.sms.api_url.as_ref().map(Url::as_str),
            )
            .field("sms_account_sid", &self.providers.sms.account_sid)
            .field("sms_from", &self.providers.sms.from)
            .field(
                "telegram_api_url",
                &self.providers.telegram.api_url.as_ref().map(Url::as_str),
            )
            .field(
                "telegram_bot_username",
                &self.providers.telegram.bot_username,
            )
            .field("vapid_subject", &self.providers.vapid.subject)
            .field(
                "resend_api_url",
                &self.providers.resend.api_url.as_ref().map(Url::as_str),
            )
            .field(
                "vonage_api_url",
                &self.providers.vonage.api_url.as_ref().map(Url::as_str),
            )
            .field("vonage_from", &self.providers.vonage.from)
            .field("dkim_domain", &self.providers.dkim.domain)
            .field("dkim_selector", &self.providers.dkim.selector)
            .field("email_providers", &self.providers.email_providers)
            .field("sms_providers", &self.providers.sms_providers)
            .field(
                "webhook_allow_private",
                &self.providers.webhook_allow_private,
            )
            .field("push_allow_private", &self.providers.push_allow_private)
            .field(
                "resend_webhook_secret",
                &self
                    .providers
                    .callbacks
                    .resend_webhook_secret
                    .as_ref()
                    .map(|_| "***"),
            )
            .field(
                "vonage_signature_secret",
                &self
                    .providers
                    .callbacks
                    .vonage_signature_secret
                    .as_ref()
                    .map(|_| "***"),
            )
            .field("delivery", &self.delivery)
            .field("trusted_prevalidators", &self.trusted_prevalidators)
            .field("email_double_opt_in", &self.email_double_opt_in)
            .finish_non_exhaustive()
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
        values.extend(std::env::vars().filter(|(k, _)| {
            k.starts_with("HERALD_") && !ignore.contains(&k.as_str()) && !is_harness_key(k)
        }));
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
        let relay_url = match get("HERALD_RELAY_URL").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(raw) => {
                let parsed = Url::parse(&raw).map_err(|e| SettingsError::Invalid {
                    key: "HERALD_RELAY_URL",
                    reason: e.to_string(),
                })?;
                if !matches!(parsed.scheme(), "ws" | "wss" | "http" | "https") {
                    return Err(SettingsError::Invalid {
                        key: "HERALD_RELAY_URL",
                        reason: "must be a ws://, wss://, http:// or https:// URL".into(),
                    });
                }
                Some(parsed)
            }
        };
        let count = |key: &'static str| -> Result<usize, SettingsError> {
            match required(key).parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(SettingsError::Invalid {
                    key,
                    reason: "must be a whole number above 0".into(),
                }),
            }
        };
        let backfill_per_pds = count("HERALD_BACKFILL_PER_PDS")?;
        let backfill_concurrency = count("HERALD_BACKFILL_CONCURRENCY")?;
        let did_cache_ttl = required("HERALD_DID_CACHE_TTL_SECS")
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| SettingsError::Invalid {
                key: "HERALD_DID_CACHE_TTL_SECS",
                reason: e.to_string(),
            })?;

        let vault_url = required("HERALD_VAULT_URL");
        backend_of(&vault_url).map_err(|reason| SettingsError::Invalid {
            key: "HERALD_VAULT_URL",
            reason,
        })?;
        let optional = |key: &'static str| get(key).filter(|v| !v.trim().is_empty());
        let secret = |key: &'static str| optional(key).map(SecretString::from);
        let optional_url = |key: &'static str| -> Result<Option<Url>, SettingsError> {
            optional(key)
                .map(|raw| {
                    Url::parse(&raw).map_err(|e| SettingsError::Invalid {
                        key,
                        reason: e.to_string(),
                    })
                })
                .transpose()
        };
        if let Some(smtp) = optional("HERALD_SMTP_URL") {
            let parsed = Url::parse(&smtp).map_err(|e| SettingsError::Invalid {
                key: "HERALD_SMTP_URL",
                reason: redact_url(&e.to_string()),
            })?;
            if !matches!(parsed.scheme(), "smtp" | "smtps") {
                return Err(SettingsError::Invalid {
                    key: "HERALD_SMTP_URL",
                    reason: "must be an smtp:// or smtps:// URL".into(),
                });
            }
        }
        let trusted_prevalidators = required("HERALD_TRUSTED_PREVALIDATORS")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|did| {
                if crate::model::is_did(did) {
                    Ok(did.to_string())
                } else {
                    Err(SettingsError::Invalid {
                        key: "HERALD_TRUSTED_PREVALIDATORS",
                        reason: format!("{did:?} is not a DID"),
                    })
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let boolean = |key: &'static str| match required(key).as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" | "" => Ok(false),
            other => Err(SettingsError::Invalid {
                key,
                reason: format!("{other:?} is not a boolean"),
            }),
        };
        let number = |key: &'static str| {
            required(key)
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| SettingsError::Invalid {
                    key,
                    reason: "must be a positive whole number".into(),
                })
        };
        let list = |key: &'static str, known: &[&str]| {
            required(key)
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|name| {
                    if known.contains(&name) {
                        Ok(name.to_string())
                    } else {
                        Err(SettingsError::Invalid {
                            key,
                            reason: format!("{name:?} is not one of {}", known.join(", ")),
                        })
                    }
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let email_double_opt_in = boolean("HERALD_EMAIL_DOUBLE_OPT_IN")?;
        let delivery = DeliverySettings {
            max_attempts: number("HERALD_DELIVERY_MAX_ATTEMPTS")?.min(100) as u32,
            concurrency: number("HERALD_DELIVERY_CONCURRENCY")?.min(10_000) as usize,
            batch: number("HERALD_DELIVERY_BATCH")?.min(10_000) as usize,
            lease: Duration::from_secs(number("HERALD_DELIVERY_LEASE_SECS")?),
            retry_base: Duration::from_millis(number("HERALD_DELIVERY_RETRY_BASE_MS")?),
            retry_max: Duration::from_secs(number("HERALD_DELIVERY_RETRY_MAX_SECS")?),
            poll: Duration::from_millis(number("HERALD_DELIVERY_POLL_MS")?),
        };
        let whole = |key: &'static str| {
            required(key)
                .trim()
                .parse::<u64>()
                .map_err(|_| SettingsError::Invalid {
                    key,
                    reason: "must be a whole number (0 for none)".into(),
                })
        };
        let schedule = ScheduleSettings {
            digest_channels: list(
                "HERALD_DIGEST_CHANNELS",
                &["email", "sms", "telegram", "webpush", "webhook"],
            )?
            .iter()
            .filter_map(|c| Channel::parse(c))
            .collect(),
            digest_max_items: number("HERALD_DIGEST_MAX_ITEMS")?.min(100) as usize,
            sms_member_daily: whole("HERALD_SMS_MEMBER_DAILY_LIMIT")?.min(1_000) as u32,
            sms_community_daily: whole("HERALD_SMS_COMMUNITY_DAILY_LIMIT")?,
            inbox_url: match optional_url("HERALD_INBOX_URL")? {
                Some(url) => url,
                None => public_url.clone(),
            },
        };
        let providers = ProviderSettings {
            smtp_url: secret("HERALD_SMTP_URL"),
            email_from: required("HERALD_EMAIL_FROM"),
            sms: SmsSettings {
                api_url: optional_url("HERALD_SMS_API_URL")?,
                account_sid: optional("HERALD_SMS_ACCOUNT_SID"),
                auth_token: secret("HERALD_SMS_AUTH_TOKEN"),
                from: optional("HERALD_SMS_FROM"),
            },
            telegram: TelegramSettings {
                api_url: optional_url("HERALD_TELEGRAM_API_URL")?,
                bot_token: secret("HERALD_TELEGRAM_BOT_TOKEN"),
                bot_username: optional("HERALD_TELEGRAM_BOT_USERNAME"),
                webhook_secret: secret("HERALD_TELEGRAM_WEBHOOK_SECRET"),
            },
            vapid: VapidSettings {
                private_key: secret("HERALD_VAPID_PRIVATE_KEY"),
                subject: optional("HERALD_VAPID_SUBJECT"),
            },
            resend: ResendSettings {
                api_url: optional_url("HERALD_RESEND_API_URL")?,
                api_key: secret("HERALD_RESEND_API_KEY"),
            },
            vonage: VonageSettings {
                api_url: optional_url("HERALD_VONAGE_API_URL")?,
                api_key: optional("HERALD_VONAGE_API_KEY"),
                api_secret: secret("HERALD_VONAGE_API_SECRET"),
                from: optional("HERALD_VONAGE_FROM"),
            },
            dkim: DkimSettings {
                domain: optional("HERALD_DKIM_DOMAIN"),
                selector: optional("HERALD_DKIM_SELECTOR"),
                private_key_file: optional("HERALD_DKIM_PRIVATE_KEY_FILE").map(Into::into),
            },
            email_providers: list("HERALD_EMAIL_PROVIDERS", &["smtp", "resend"])?,
            sms_providers: list("HERALD_SMS_PROVIDERS", &["twilio", "vonage"])?,
            webhook_allow_private: boolean("HERALD_WEBHOOK_ALLOW_PRIVATE")?,
            push_allow_private: boolean("HERALD_PUSH_ALLOW_PRIVATE")?,
            callbacks: CallbackSettings {
                resend_webhook_secret: secret("HERALD_RESEND_WEBHOOK_SECRET"),
                vonage_signature_secret: secret("HERALD_VONAGE_SIGNATURE_SECRET"),
            },
        };

        Ok(Self {
            database_url: SecretString::from(database_url),
            listen,
            public_url,
            service_did,
            jetstream_url,
            relay_url,
            backfill_per_pds,
            backfill_concurrency,
            plc_url: url("HERALD_PLC_URL")?,
            did_cache_ttl,
            log: required("HERALD_LOG"),
            vault: VaultSettings {
                url: SecretString::from(vault_url),
                key: secret("HERALD_VAULT_KEY"),
                key_file: required("HERALD_VAULT_KEY_FILE").into(),
            },
            providers,
            trusted_prevalidators,
            email_double_opt_in,
            delivery,
            schedule,
        })
    }

    pub fn backend(&self) -> Backend {
        // Validated in `from_map`.
        backend_of(self.database_url.expose_secret()).unwrap_or(Backend::Sqlite)
    }
}

/// Variables of the test and benchmark harnesses (`HERALD_TEST_POSTGRES_URL`,
/// `HERALD_TEST_PYTHON`, `HERALD_BENCH_*`): not settings, so a shell that exports them can
/// still run `herald`.
fn is_harness_key(key: &str) -> bool {
    key.starts_with("HERALD_TEST_") || key.starts_with("HERALD_BENCH_")
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

    #[test]
    fn the_relay_url_selects_the_firehose_and_must_be_a_websocket_or_http_url() {
        let s = Settings::from_map(map(&[])).unwrap();
        assert!(s.relay_url.is_none(), "Jetstream unless a relay is named");
        assert_eq!((s.backfill_per_pds, s.backfill_concurrency), (4, 32));
        for ok in [
            "wss://bsky.network",
            "ws://127.0.0.1:2583",
            "https://relay.example",
        ] {
            let s = Settings::from_map(map(&[("HERALD_RELAY_URL", ok)])).unwrap();
            assert_eq!(s.relay_url.unwrap().as_str().trim_end_matches('/'), ok);
        }
        for bad in ["ftp://relay.example", "not a url"] {
            let err = Settings::from_map(map(&[("HERALD_RELAY_URL", bad)])).unwrap_err();
            assert!(err.to_string().contains("HERALD_RELAY_URL"), "{err}");
        }
        let err = Settings::from_map(map(&[("HERALD_BACKFILL_PER_PDS", "0")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_BACKFILL_PER_PDS"), "{err}");
    }

    #[test]
    fn callback_secrets_are_read_and_never_printed() {
        let s = Settings::from_map(map(&[
            (
                "HERALD_RESEND_WEBHOOK_SECRET",
                "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0",
            ),
            ("HERALD_VONAGE_SIGNATURE_SECRET", "vonage-signature-secret"),
        ]))
        .unwrap();
        let callbacks = &s.providers.callbacks;
        assert_eq!(
            callbacks
                .resend_webhook_secret
                .as_ref()
                .map(|v| v.expose_secret()),
            Some("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0")
        );
        assert!(callbacks.vonage_signature_secret.is_some());
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("c2VjcmV0") && !shown.contains("vonage-signature"),
            "{shown}"
        );
        let unset = Settings::from_map(BTreeMap::new()).unwrap();
        assert!(unset.providers.callbacks.resend_webhook_secret.is_none());
    }
}
