//! Storage: the index, the inbox and the outbox, on SQLite (embedded default) or PostgreSQL.
//!
//! Owns every SQL statement in Herald and the migrations in `migrations/{sqlite,postgres}`.
//! One code path serves both backends through sqlx's `Any` driver: statements use `$N`
//! placeholders, which both SQLite and PostgreSQL accept, and portable column types (TEXT,
//! BIGINT; times are microseconds since the Unix epoch; flags are 0/1). Multi-row inserts are
//! the exception: their VALUES lists are generated per backend (see `values_placeholders`).
//! Where the dialects differ, both versions sit side by side in the same function.
//!
//! SQLite allows one writer at a time, so on SQLite writes go through a single-connection
//! pool (transactions start with `BEGIN IMMEDIATE`): writers queue in the pool instead of
//! failing with `SQLITE_BUSY`. Reads use a separate pool and WAL lets them run alongside.
//! Must not touch: the network. No transaction is ever held across a network call.

mod backfill;
mod distribution;
mod inbox;
mod index;
mod outbox;
mod usage;
mod vault;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use backfill::BackfillCounts;
pub use distribution::{CommunityInfo, NewPublication, PublicationOutcome, SubscriberPage};
pub use inbox::NotificationRow;
pub use index::{ApplyStats, IndexOp, MemberRecords};
pub use outbox::{
    Claimed, DeadFilter, DeadLetter, FeedEntry, Outcome, PublicationContext, Settled,
};
pub use usage::{Counter, MemberTiming};
pub use vault::{
    ChallengeRow, ContactRow, EmailAddressRow, NewContact, SealedRow, StandaloneRow, VaultStore,
};

use crate::settings::{Backend, backend_of};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("invalid database URL: {0}")]
    Url(String),
    #[error("cannot create the database folder: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    #[error("cannot write a list as a JSON parameter: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The index store. Cheap to clone: pools are reference-counted.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    read: AnyPool,
    /// On SQLite a one-connection pool (the single writer); on PostgreSQL the same pool as
    /// `read`.
    write: AnyPool,
}

/// Busy timeout for SQLite: long enough to ride out another process's write transaction
/// (migrations, a fan-out), short enough to surface a stuck lock.
const SQLITE_BUSY_TIMEOUT_MS: u64 = 10_000;

impl Store {
    /// Connect (creating a SQLite file and its folders if needed) and apply migrations.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        Self::connect_mapped(url, true).await
    }

    /// As [`Store::connect`]; `map` memory-maps a SQLite database for its writer, which bulk
    /// ingest needs and a process that only serves and delivers does not (the mapped pages
    /// it touches would count in its RSS).
    pub async fn connect_mapped(url: &str, map: bool) -> Result<Self, StorageError> {
        let store = Self::open(url, map).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// The vault's migrations (a vault database is a `Store` with another schema).
    async fn migrate_vault(&self) -> Result<(), StorageError> {
        match self.backend {
            Backend::Sqlite => {
                run(sqlx::migrate!("./migrations/vault/sqlite"), &self.write).await?
            }
            Backend::Postgres => {
                run(sqlx::migrate!("./migrations/vault/postgres"), &self.write).await?
            }
        }
        Ok(())
    }

    pub async fn connect_without_migrating(url: &str) -> Result<Self, StorageError> {
        Self::open(url, true).await
    }

    async fn open(url: &str, map: bool) -> Result<Self, StorageError> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(url).map_err(StorageError::Url)?;
        match backend {
            Backend::Sqlite => {
                let url = prepare_sqlite_url(url)?;
                let options = AnyConnectOptions::from_str(&url)
                    .map_err(|e| StorageError::Url(e.to_string()))?;
                // A SQLite connection is a handle in this process: it cannot go stale the way
                // a socket can, and pinging it before each use cost a round trip to its
                // worker thread on every statement.
                let write = AnyPoolOptions::new()
                    .max_connections(1)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(60))
                    .after_connect(move |conn, _| {
                        sqlite_pragmas(conn, if map { WRITER } else { UNMAPPED_WRITER })
                    })
                    .connect_with(options.clone())
                    .await?;
                let read = AnyPoolOptions::new()
                    .max_connections(SQLITE_READERS)
                    .test_before_acquire(false)
                    .after_connect(|conn, _| sqlite_pragmas(conn, READER))
                    .connect_with(options)
                    .await?;
                Ok(Self {
                    backend,
                    read,
                    write,
                })
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(10)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(url)
                    .await?;
                Ok(Self {
                    backend,
                    read: pool.clone(),
                    write: pool,
                })
            }
        }
    }

    pub async fn migrate(&self) -> Result<(), StorageError> {
        match self.backend {
            Backend::Sqlite => run(sqlx::migrate!("./migrations/sqlite"), &self.write).await?,
            Backend::Postgres => run(sqlx::migrate!("./migrations/postgres"), &self.write).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A write transaction: `BEGIN IMMEDIATE` on SQLite so the write lock is taken up front
    /// (a deferred transaction that reads first can fail to upgrade), plain `BEGIN` elsewhere.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StorageError> {
        Ok(match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.write.begin().await?,
        })
    }

    /// Liveness of the database, for `/xrpc/_health`.
    pub async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// Index migrations are numbered from 1 and vault migrations from 1001, and each run ignores
/// the other's, so the two may share one PostgreSQL database (or schema) when an operator
/// wants that, and still live apart by default.
async fn run(mut migrator: sqlx::migrate::Migrator, pool: &AnyPool) -> Result<(), StorageError> {
    migrator.set_ignore_missing(true);
    migrator.run(pool).await?;
    Ok(())
}

/// How one SQLite connection caches pages.
struct Tuning {
    /// Page cache, KiB.
    cache_kib: u32,
    /// Bytes of the database file memory-mapped.
    mmap_bytes: u64,
}

/// The writer: a 16 MiB page cache keeps a large fan-out's b-tree pages in memory (the
/// default 2 MiB thrashes at 100,000 rows), and up to 1 GiB of the file is memory-mapped, so
/// page reads inside write transactions are memory reads instead of a syscall and a copy
/// each (they were a third of ingest's time).
const WRITER: Tuning = Tuning {
    cache_kib: 16 * 1024,
    mmap_bytes: 1 << 30,
};

/// The writer of a database no bulk ingest writes to (the vault; the index in a process
/// without the ingest role): the same cache, no map.
const UNMAPPED_WRITER: Tuning = Tuning {
    cache_kib: 16 * 1024,
    mmap_bytes: 0,
};

/// Readers: SQLite's default 2 MiB cache and no memory map. Each connection maps the file
/// separately and resident mapped pages count once per mapping, so mapped readers
/// multiplied the process's RSS by the pool size (244 MiB of a 319 MiB peak when
/// delivering to 100,000 members); reads they serve are small index look-ups that the OS
/// page cache answers anyway.
const READER: Tuning = Tuning {
    cache_kib: 2 * 1024,
    mmap_bytes: 0,
};

/// Read connections per SQLite database: readers never block the writer in WAL mode, and
/// more than this on a small machine only adds caches.
const SQLITE_READERS: u32 = 4;

/// WAL pages between automatic checkpoints (each one syncs): 10,000 pages (40 MiB) instead of
/// the default 1,000 keeps checkpoint syncs off the hot path of bulk ingest.
const SQLITE_CHECKPOINT_PAGES: u32 = 10_000;

/// Per-connection SQLite settings: WAL so readers never block the writer, NORMAL sync (safe
/// with WAL: a crash loses at most the last commits, never corrupts), a busy timeout.
fn sqlite_pragmas(
    conn: &mut sqlx::AnyConnection,
    tuning: Tuning,
) -> futures_util::future::BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        conn.execute(
            format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA foreign_keys = ON; \
                 PRAGMA cache_size = -{}; \
                 PRAGMA wal_autocheckpoint = {SQLITE_CHECKPOINT_PAGES}; \
                 PRAGMA mmap_size = {};",
                tuning.cache_kib, tuning.mmap_bytes
            )
            .as_str(),
        )
        .await
        .map(|_| ())
    })
}

/// Make sure a SQLite URL creates its file (`mode=rwc`) and that the folder exists.
fn prepare_sqlite_url(url: &str) -> Result<String, StorageError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StorageError::Url("expected sqlite://PATH".into()))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Err(StorageError::Url(
            "an in-memory SQLite database cannot be shared by Herald's pools; use a file".into(),
        ));
    }
    if let Some(parent) = Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)?;
    }
    let query = if query.split('&').any(|kv| kv.starts_with("mode=")) {
        query.to_string()
    } else if query.is_empty() {
        "mode=rwc".to_string()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

// Lists of values (the members of a claim, the outcomes of a settle) reach SQL as one
// parameter holding a JSON array, which the database reads back as a table. A list of any
// length is then one fixed statement, prepared once per connection and kept in its statement
// cache. Listing each value as a parameter (`IN ($1, …, $n)`, `VALUES (…), …`) made every
// length a statement of its own: cached, up to 100 of them per connection cost 15 MiB at 256
// messages in flight; uncached, SQLite parsed each one again at every use, looking each `$N`
// up by name, which was a quarter of the dispatcher's CPU.

/// `(SELECT …)`: the strings of the JSON array in parameter `$n`, for `x IN (…)`.
fn json_list(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => format!("(SELECT value FROM json_each(${n}))"),
        Backend::Postgres => format!("(SELECT json_array_elements_text(${n}::json))"),
    }
}

/// A `FROM` source with one row per element of the JSON array in parameter `$n`, the element
/// named `value`: with arrays as elements, `value ->> 0` is a row's first field, as text (or
/// SQL NULL for `null`).
fn json_rows(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => format!("json_each(${n})"),
        Backend::Postgres => format!("json_array_elements(${n}::json) AS j(value)"),
    }
}

/// The rows of `sql`, whose one parameter `$1` is the list `values` (see [`json_list`]).
async fn fetch_listed<T: serde::Serialize>(
    pool: &AnyPool,
    sql: &str,
    values: &[T],
) -> Result<Vec<sqlx::any::AnyRow>, StorageError> {
    Ok(sqlx::query(sql)
        .bind(json_param(values)?)
        .fetch_all(pool)
        .await?)
}

/// A JSON array of `values`, the parameter [`json_list`] and [`json_rows`] read.
fn json_param<T: serde::Serialize>(values: &[T]) -> Result<String, StorageError> {
    Ok(serde_json::to_string(values)?)
}

/// Microseconds since the Unix epoch: Herald's one stored time representation.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// RFC 3339 with millisecond precision and `Z`, as ATProto datetimes are written.
pub fn format_micros(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub fn parse_datetime(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_micros())
}

/// Row groups for a multi-row INSERT of `rows` rows of `width` columns, whose parameters are
/// all in its VALUES list. PostgreSQL gets `$1, $2, …`; SQLite gets anonymous `?`, because
/// SQLite looks up each *named* parameter by a linear scan — with thousands of `$N` in one
/// statement that scan was most of the cost of a batch (measured: 29% of ingest time).
fn values_placeholders(backend: Backend, rows: usize, width: usize) -> String {
    let mut out = String::with_capacity(rows * width * 5);
    for r in 0..rows {
        if r > 0 {
            out.push(',');
        }
        out.push('(');
        for c in 0..width {
            if c > 0 {
                out.push(',');
            }
            match backend {
                Backend::Sqlite => out.push('?'),
                Backend::Postgres => {
                    out.push('$');
                    out.push_str(&(r * width + c + 1).to_string());
                }
            }
        }
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_gain_create_mode_and_keep_other_options() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/herald.db");
        let url = format!("sqlite://{}", path.display());
        assert_eq!(
            prepare_sqlite_url(&url).unwrap(),
            format!("sqlite://{}?mode=rwc", path.display())
        );
        assert!(path.parent().unwrap().is_dir());
        let with_query = format!("sqlite://{}?cache=shared", path.display());
        assert!(
            prepare_sqlite_url(&with_query)
                .unwrap()
                .ends_with("?cache=shared&mode=rwc")
        );
        assert!(prepare_sqlite_url("sqlite::memory:").is_err());
    }

    #[test]
    fn placeholders_number_rows_consecutively() {
        assert_eq!(
            values_placeholders(Backend::Postgres, 2, 3),
            "($1,$2,$3),($4,$5,$6)"
        );
        assert_eq!(values_placeholders(Backend::Sqlite, 2, 2), "(?,?),(?,?)");
    }

    #[test]
    fn times_round_trip_through_rfc3339() {
        let t = 1_767_225_600_123_456;
        assert_eq!(parse_datetime(&format_micros(t)), Some(t));
    }
}
