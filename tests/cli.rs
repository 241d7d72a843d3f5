//! The `herald` binary itself: configuration from the environment and a TOML file, and
//! `herald migrate` creating the embedded SQLite database with its folders.

use std::process::Command;

fn herald() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    // Start from a clean slate: no HERALD_* from the developer's shell.
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("HERALD_")) {
        command.env_remove(key);
    }
    command
}

fn migrate(extra: &[&str], database: Option<&std::path::Path>) -> std::process::Output {
    let mut command = herald();
    command.args(extra).arg("migrate");
    if let Some(db) = database {
        command.env("HERALD_DATABASE_URL", format!("sqlite://{}", db.display()));
        let vault = db.with_file_name("vault.db");
        command.env("HERALD_VAULT_URL", format!("sqlite://{}", vault.display()));
    }
    command.output().unwrap()
}

#[test]
fn migrate_creates_the_sqlite_database_and_its_folders() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nested/folder/herald.db");
    let out = migrate(&[], Some(&db));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(db.is_file());
}

#[test]
fn an_unknown_herald_variable_is_refused_by_name() {
    let out = herald()
        .arg("migrate")
        .env("HERALD_DATABSE_URL", "sqlite://typo.db")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HERALD_DATABSE_URL"), "{stderr}");
}

#[test]
fn a_toml_file_configures_the_same_keys_and_the_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    let from_file = dir.path().join("from-file.db");
    let from_env = dir.path().join("from-env.db");
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "HERALD_DATABASE_URL = \"sqlite://{}\"\nHERALD_VAULT_URL = \"sqlite://{}\"\n",
            from_file.display(),
            dir.path().join("vault.db").display()
        ),
    )
    .unwrap();
    let with_file = ["--config", config.to_str().unwrap()];
    let out = migrate(&with_file, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(from_file.is_file());

    let out = migrate(&with_file, Some(&from_env));
    assert!(out.status.success());
    assert!(from_env.is_file());

    std::fs::write(&config, "database_url = \"sqlite://x.db\"\n").unwrap();
    let out = migrate(&with_file, None);
    assert!(
        !out.status.success(),
        "unknown keys in the file are an error too"
    );
}

#[test]
fn keys_rotate_adds_a_key_to_a_private_key_file_and_generate_prints_a_ring() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("vault.key");
    let rotate = || {
        herald()
            .args(["keys", "rotate"])
            .env(
                "HERALD_DATABASE_URL",
                format!("sqlite://{}", dir.path().join("herald.db").display()),
            )
            .env(
                "HERALD_VAULT_URL",
                format!("sqlite://{}", dir.path().join("vault.db").display()),
            )
            .env("HERALD_VAULT_KEY_FILE", &key_file)
            .output()
            .unwrap()
    };
    let out = rotate();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("key version 2 (new)"));
    let ring = std::fs::read_to_string(&key_file).unwrap();
    assert!(ring.contains("key 1 ") && ring.contains("key 2 "), "{ring}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the key file is private");

    let out = herald().args(["keys", "generate"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("index ") && text.contains("key 1 "), "{text}");
}

#[tokio::test]
async fn deliveries_dead_lists_dead_letters_and_retry_requeues_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    assert!(migrate(&[], Some(&db)).status.success());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    for (id, channel, status) in [
        ("d-sms", "sms", "dead"),
        ("d-email", "email", "dead"),
        ("ok", "sms", "sent"),
    ] {
        sqlx::query(
            "INSERT INTO outbox (id, publication_id, recipient, channel, status, attempts, \
             next_attempt_at, last_error, created_at) VALUES ($1, 'p1', $2, $3, $4, 3, 0, \
             'gave up after 3 attempts: temporary failure: twilio answered 503', 1)",
        )
        .bind(id)
        .bind(format!("did:plc:{id}"))
        .bind(channel)
        .bind(status)
        .execute(&pool)
        .await
        .unwrap();
    }
    let run = |args: &[&str]| {
        let mut command = herald();
        command
            .args(args)
            .env("HERALD_DATABASE_URL", format!("sqlite://{}", db.display()));
        command.output().unwrap()
    };
    let out = run(&["deliveries", "dead"]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("d-sms") && table.contains("d-email"),
        "{table}"
    );
    assert!(!table.contains("ok "), "{table}");
    assert!(table.contains("twilio answered 503"), "{table}");

    let out = run(&["deliveries", "dead", "--channel", "sms", "--json"]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], "d-sms");
    assert_eq!(lines[0]["attempts"], 3);

    let out = run(&["deliveries", "retry"]);
    assert!(!out.status.success(), "retry needs ids or --all");
    let out = run(&["deliveries", "dead", "--channel", "pigeon"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown channel"));

    let out = run(&["deliveries", "retry", "d-sms"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 dead letter(s) re-queued"));
    let (status, attempts): (String, i64) =
        sqlx::query_as("SELECT status, attempts FROM outbox WHERE id = 'd-sms'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("pending", 0));
    let out = run(&["deliveries", "retry", "--all"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 dead letter(s) re-queued"));
    let out = run(&["deliveries", "dead"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no dead letters"));
}
