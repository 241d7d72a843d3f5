//! `spawn_app()` and friends: one fresh database per test (a temp-dir SQLite file, or a new
//! PostgreSQL database on the server CI provides), the app on port 0.

use std::sync::Arc;
use std::time::Duration;

use herald::ingest::JETSTREAM_SOURCE;
use herald::sandbox::{Identity, Jetstream, Plc, event, tid};
use herald::settings::{Backend, Settings};
use herald::startup::{Application, Roles};
use herald::storage::Store;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;

pub const SUBSCRIPTION: &str = "community.herald.subscription";
pub const PREFERENCES: &str = "community.herald.preferences";
pub const COMMUNITY: &str = "community.herald.community";

/// Generate one test per backend from one body:
/// `on_both_backends! { async fn name(backend) { … } }`.
#[macro_export]
macro_rules! on_both_backends {
    ($(async fn $name:ident($backend:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                async fn run($backend: herald::settings::Backend) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    run(herald::settings::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    run(herald::settings::Backend::Postgres).await
                }
            }
        )*
    };
}

/// Where test databases are created on PostgreSQL (trust auth on the CI machines).
fn postgres_admin_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

pub struct TestApp {
    app: Option<Application>,
    pub base: String,
    pub http: reqwest::Client,
    pub plc: Plc,
    pub jetstream: Jetstream,
    pub service_did: String,
    database_url: String,
    pub vault_url: String,
    pub dir: tempfile::TempDir,
    pub providers: Providers,
    /// A pre-validator the operator trusts (seed 002), registered with the local PLC.
    pub prevalidator: Identity,
    pub double_opt_in: bool,
    /// Run the dispatcher too (delivery tests); publish tests look at the outbox it leaves.
    pub deliver: bool,
    /// Settings a test adds (or overrides) before a `restart`.
    pub extra_settings: Vec<(&'static str, String)>,
    /// The clock publish and delivery read, when the test drives time by hand.
    pub clock: Option<Arc<herald::clock::ManualClock>>,
}

/// The local providers a test asked for: a real SMTP server (aiosmtpd), and local servers
/// speaking Twilio's, Telegram's and a push service's wire formats.
#[derive(Default)]
pub struct Providers {
    pub smtp: Option<herald::sandbox::smtp::SmtpServer>,
    pub twilio: Option<herald::sandbox::twilio::Twilio>,
    pub telegram: Option<herald::sandbox::telegram::Telegram>,
    pub push: Option<herald::sandbox::push::PushService>,
    pub resend: Option<herald::sandbox::resend::Resend>,
    pub vonage: Option<herald::sandbox::vonage::Vonage>,
}

pub const TELEGRAM_SECRET: &str = "telegram-webhook-secret";
pub const TWILIO_SID: &str = "AC00000000000000000000000000000001";
pub const TWILIO_TOKEN: &str = "twilio-test-token";
pub const TELEGRAM_TOKEN: &str = "123456:test-bot-token";
pub const RESEND_KEY: &str = "re_test_key";
pub const VONAGE_KEY: &str = "vonage-key";
pub const VONAGE_SECRET: &str = "vonage-secret";

/// Which local providers to start for a test.
#[derive(Default, Clone, Copy)]
pub struct With {
    pub smtp: bool,
    pub twilio: bool,
    pub telegram: bool,
    pub push: bool,
    pub double_opt_in: bool,
    pub deliver: bool,
    /// Resend's email API (after SMTP when both are on).
    pub resend: bool,
    /// Vonage's SMS API (after Twilio when both are on).
    pub vonage: bool,
    /// Publish and delivery read a clock the test sets (`TestApp.clock`).
    pub manual_clock: bool,
}

pub async fn fresh_database_url(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("herald.db").display()),
        Backend::Postgres => {
            let admin = postgres_admin_url();
            let name = format!("herald_test_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&admin).await.expect(
                "PostgreSQL must be reachable for the postgres tests (scripts/test starts it)",
            );
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let mut url = url::Url::parse(&admin).expect("admin URL");
            url.set_path(&name);
            url.to_string()
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, With::default()).await
}

pub async fn spawn_app_with(backend: Backend, with: With) -> TestApp {
    spawn_app_configured(backend, with, &[]).await
}

/// As [`spawn_app_with`], with settings added to (or replacing) the test defaults from the
/// first start.
pub async fn spawn_app_configured(
    backend: Backend,
    with: With,
    settings: &[(&'static str, &str)],
) -> TestApp {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = fresh_database_url(backend, dir.path()).await;
    let vault_url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("vault.db").display()),
        Backend::Postgres => fresh_database_url(backend, dir.path()).await,
    };
    let plc = Plc::start().await.expect("plc");
    let jetstream = Jetstream::start().await.expect("jetstream");
    let providers = Providers {
        smtp: match with.smtp {
            true => Some(
                herald::sandbox::smtp::SmtpServer::start()
                    .await
                    .expect("SMTP server (run scripts/test-deps)"),
            ),
            false => None,
        },
        twilio: match with.twilio {
            true => Some(
                herald::sandbox::twilio::Twilio::start(TWILIO_SID, TWILIO_TOKEN)
                    .await
                    .expect("twilio"),
            ),
            false => None,
        },
        telegram: match with.telegram {
            true => Some(
                herald::sandbox::telegram::Telegram::start(TELEGRAM_TOKEN)
                    .await
                    .expect("telegram"),
            ),
            false => None,
        },
        push: match with.push {
            true => Some(
                herald::sandbox::push::PushService::start()
                    .await
                    .expect("push"),
            ),
            false => None,
        },
        resend: match with.resend {
            true => Some(
                herald::sandbox::resend::Resend::start(RESEND_KEY)
                    .await
                    .expect("resend"),
            ),
            false => None,
        },
        vonage: match with.vonage {
            true => Some(
                herald::sandbox::vonage::Vonage::start(VONAGE_KEY, VONAGE_SECRET)
                    .await
                    .expect("vonage"),
            ),
            false => None,
        },
    };
    let prevalidator = Identity::plc("trusted-prevalidator");
    plc.register_identity(&prevalidator);
    let mut test = TestApp {
        app: None,
        base: String::new(),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client"),
        plc,
        jetstream,
        service_did: "did:web:herald.test".into(),
        database_url,
        vault_url,
        dir,
        providers,
        prevalidator,
        double_opt_in: with.double_opt_in,
        deliver: with.deliver,
        extra_settings: settings.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        clock: with.manual_clock.then(herald::clock::ManualClock::new),
    };
    test.start().await;
    test
}

impl TestApp {
    pub fn settings(&self) -> Settings {
        Settings::from_map(
            self.settings_values()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
        .expect("test settings")
    }

    /// The settings as `HERALD_*` variables (to start the real binary on the same data).
    pub fn settings_values(&self) -> Vec<(&'static str, String)> {
        let mut values: Vec<(&'static str, String)> = vec![
            ("HERALD_DATABASE_URL", self.database_url.clone()),
            ("HERALD_VAULT_URL", self.vault_url.clone()),
            (
                "HERALD_VAULT_KEY_FILE",
                self.dir.path().join("vault.key").display().to_string(),
            ),
            ("HERALD_LISTEN", "127.0.0.1:0".into()),
            ("HERALD_PUBLIC_URL", "http://herald.test".into()),
            ("HERALD_JETSTREAM_URL", self.jetstream.url().to_string()),
            ("HERALD_PLC_URL", self.plc.url().to_string()),
            ("HERALD_SERVICE_DID", self.service_did.clone()),
            (
                "HERALD_TRUSTED_PREVALIDATORS",
                self.prevalidator.did.clone(),
            ),
            ("HERALD_EMAIL_DOUBLE_OPT_IN", self.double_opt_in.to_string()),
            ("HERALD_EMAIL_FROM", "Herald <herald@herald.test>".into()),
            // Tests send to local servers on loopback, and must not wait minutes for a retry.
            ("HERALD_WEBHOOK_ALLOW_PRIVATE", "true".into()),
            ("HERALD_PUSH_ALLOW_PRIVATE", "true".into()),
            ("HERALD_DELIVERY_RETRY_BASE_MS", "50".into()),
            ("HERALD_DELIVERY_RETRY_MAX_SECS", "1".into()),
            ("HERALD_DELIVERY_POLL_MS", "50".into()),
            ("HERALD_DELIVERY_MAX_ATTEMPTS", "4".into()),
            // Deliveries go at once unless a test of the timing policy asks otherwise (it
            // sets these back to the operator defaults, or its own).
            ("HERALD_DIGEST_CHANNELS", String::new()),
            ("HERALD_SMS_MEMBER_DAILY_LIMIT", "0".into()),
            ("HERALD_INBOX_URL", "https://app.test/inbox".into()),
        ];
        if let Some(smtp) = &self.providers.smtp {
            values.push(("HERALD_SMTP_URL", smtp.url()));
        }
        if let Some(twilio) = &self.providers.twilio {
            values.extend([
                ("HERALD_SMS_API_URL", twilio.url().to_string()),
                ("HERALD_SMS_ACCOUNT_SID", TWILIO_SID.into()),
                ("HERALD_SMS_AUTH_TOKEN", TWILIO_TOKEN.into()),
                ("HERALD_SMS_FROM", "+14155550000".into()),
            ]);
        }
        if let Some(telegram) = &self.providers.telegram {
            values.extend([
                ("HERALD_TELEGRAM_API_URL", telegram.url().to_string()),
                ("HERALD_TELEGRAM_BOT_TOKEN", TELEGRAM_TOKEN.into()),
                ("HERALD_TELEGRAM_BOT_USERNAME", "herald_test_bot".into()),
                ("HERALD_TELEGRAM_WEBHOOK_SECRET", TELEGRAM_SECRET.into()),
            ]);
        }
        if let Some(resend) = &self.providers.resend {
            values.extend([
                ("HERALD_RESEND_API_URL", resend.url().to_string()),
                ("HERALD_RESEND_API_KEY", RESEND_KEY.into()),
            ]);
        }
        if let Some(vonage) = &self.providers.vonage {
            values.extend([
                ("HERALD_VONAGE_API_URL", vonage.url().to_string()),
                ("HERALD_VONAGE_API_KEY", VONAGE_KEY.into()),
                ("HERALD_VONAGE_API_SECRET", VONAGE_SECRET.into()),
                ("HERALD_VONAGE_FROM", "Herald".into()),
            ]);
        }
        if self.providers.push.is_some() {
            values.extend([
                (
                    "HERALD_VAPID_PRIVATE_KEY",
                    herald::channels::webpush::generate_vapid_key(),
                ),
                ("HERALD_VAPID_SUBJECT", "mailto:ops@herald.test".into()),
            ]);
        }
        values.extend(self.extra_settings.iter().cloned());
        values
    }

    async fn start(&mut self) {
        let roles = Roles {
            deliver: self.deliver,
            ..Roles::ALL
        };
        let clock: Arc<dyn herald::clock::Clock> = match &self.clock {
            Some(manual) => manual.clone(),
            None => Arc::new(herald::clock::SystemClock),
        };
        let app = Application::build_with_clock(self.settings(), roles, clock)
            .await
            .expect("app starts");
        self.base = format!("http://127.0.0.1:{}", app.port());
        self.app = Some(app);
        // Following a relay (the interop tests' PDS), Herald never subscribes to Jetstream.
        if self
            .extra_settings
            .iter()
            .any(|(key, _)| *key == "HERALD_RELAY_URL")
        {
            return;
        }
        for _ in 0..1_000 {
            if self.jetstream.streaming() > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("herald never subscribed to the jetstream");
    }

    /// Stop the whole process-equivalent and start it again on the same database.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start().await;
    }

    pub async fn stop(&mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
    }

    pub fn store(&self) -> &Store {
        self.app.as_ref().expect("app running").store()
    }

    pub fn vault(&self) -> &std::sync::Arc<herald::vault::Vault> {
        self.app.as_ref().expect("app running").vault()
    }

    /// A pre-validation token from the trusted validator: `email` is `member`'s.
    pub fn prevalidation(&self, member: &Identity, email: &str) -> String {
        self.prevalidation_from(&self.prevalidator, &self.service_did, member, email, 600)
    }

    pub fn prevalidation_from(
        &self,
        issuer: &Identity,
        aud: &str,
        member: &Identity,
        email: &str,
        expires_in_secs: i64,
    ) -> String {
        let now = chrono::Utc::now();
        issuer.sign_claims(&json!({
            "iss": issuer.did,
            "aud": aud,
            "sub": member.did,
            "email": email,
            "validatedAt": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "exp": now.timestamp() + expires_in_secs,
        }))
    }

    /// Give `member` a verified email contact through a trusted pre-validation.
    pub async fn verified_email(&self, member: &Identity, email: &str) -> String {
        let (status, body) = self
            .call(
                Some(member),
                "community.herald.contact.add",
                Some(json!({"channel": "email", "address": email,
                            "prevalidation": self.prevalidation(member, email)})),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "verified", "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    pub fn metrics(&self) -> &herald::metrics::Metrics {
        self.app.as_ref().expect("app running").metrics()
    }

    /// A did:plc identity with a secp256k1 key, registered with the local PLC.
    pub fn identity(&self, name: &str) -> Identity {
        let identity = Identity::plc(name);
        self.plc.register_identity(&identity);
        identity
    }

    /// Push events and wait until ingest has committed past the last of them.
    pub async fn ingest(&self, events: impl IntoIterator<Item = Value>) -> i64 {
        let mut last = 0;
        for e in events {
            last = self.jetstream.push(e);
        }
        self.wait_for_cursor(last).await;
        last
    }

    pub async fn wait_for_cursor(&self, time_us: i64) {
        for _ in 0..1_000 {
            if self
                .store()
                .cursor(JETSTREAM_SOURCE)
                .await
                .unwrap()
                .unwrap_or(-1)
                >= time_us
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("ingest did not reach cursor {time_us}");
    }

    /// Declare a community (public unless `extra` says otherwise).
    pub async fn community(&self, community: &Identity, extra: Value) {
        let mut record = json!({"name": "Riverside", "createdAt": "2026-11-21T10:00:00.000Z",
                                "pipes": [{"id": "digest"}, {"id": "opportunity"}]});
        merge(&mut record, extra);
        self.ingest([event::create(
            &community.did,
            COMMUNITY,
            "self",
            &tid(),
            record,
        )])
        .await;
    }

    /// Subscribe `member` to `community` with a record; returns the record key.
    pub async fn subscribe(&self, member: &Identity, community: &Identity, extra: Value) -> String {
        let rkey = tid();
        let mut record = json!({"subject": community.did, "createdAt": "2026-11-21T10:00:00.000Z"});
        merge(&mut record, extra);
        self.ingest([event::create(
            &member.did,
            SUBSCRIPTION,
            &rkey,
            &tid(),
            record,
        )])
        .await;
        rkey
    }

    pub async fn call(
        &self,
        caller: Option<&Identity>,
        nsid: &str,
        body: Option<Value>,
        query: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let token = caller.map(|c| c.token(&self.service_did, nsid));
        self.call_with_token(token.as_deref(), nsid, body, query)
            .await
    }

    pub async fn call_with_token(
        &self,
        token: Option<&str>,
        nsid: &str,
        body: Option<Value>,
        query: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let url = format!("{}/xrpc/{nsid}", self.base);
        let mut request = match &body {
            Some(b) => self.http.post(url).json(b),
            None => self.http.get(url).query(query),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        json_answer(request.send().await.expect("request")).await
    }

    pub async fn publish(
        &self,
        caller: &Identity,
        community: &Identity,
        pipe: &str,
        item_id: &str,
    ) -> (StatusCode, Value) {
        self.call(
            Some(caller),
            "community.herald.publish",
            Some(json!({"community": community.did, "pipe": pipe,
                        "item": {"id": item_id, "title": format!("Item {item_id}")}})),
            &[],
        )
        .await
    }

    /// The item ids in `member`'s inbox, newest first.
    pub async fn inbox(&self, member: &Identity) -> Vec<String> {
        let (status, body) = self
            .call(
                Some(member),
                "community.herald.listNotifications",
                None,
                &[("limit", "100")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["itemId"].as_str().unwrap().to_string())
            .collect()
    }
}

/// A response's status and its body as JSON (`null` when empty, a string when not JSON).
pub async fn json_answer(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

pub fn merge(target: &mut Value, extra: Value) {
    if let (Some(t), Value::Object(e)) = (target.as_object_mut(), extra) {
        t.extend(e);
    }
}
