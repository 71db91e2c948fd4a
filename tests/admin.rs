//! `tern admin key …` end to end: the binary makes a key on the server's store and prints it
//! once, lists keys without them, and revokes one; the store then authenticates exactly the
//! live keys.

use std::process::Command;

use tern_server::{Config, open_admin_keys};

/// Runs `tern admin key ARGS` on the store of `data`; stdout and whether it succeeded.
fn tern_admin(data: &(tempfile::TempDir, Option<String>), args: &[&str]) -> (String, bool) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tern"));
    c.args(["admin", "key"]).args(args);
    match &data.1 {
        Some(url) => c.args(["--store", url]),
        None => c.arg("--data-dir").arg(data.0.path()),
    };
    let out = c.env_remove("TERN_STORE").output().expect("tern runs");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.success(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_made_listed_verified_and_revoked() {
    let data = (
        tempfile::tempdir().unwrap(),
        tern_testkit::test_database().await,
    );
    let (out, ok) = tern_admin(&data, &["create", "--name", "billing backend"]);
    assert!(ok, "{out}");
    let key = out.trim().to_owned();
    assert!(key.starts_with("tern_"), "{key}");
    let (out, ok) = tern_admin(&data, &["create", "--name", "ops"]);
    assert!(ok);
    let other = out.trim().to_owned();
    assert_ne!(key, other);

    let (list, ok) = tern_admin(&data, &["list"]);
    assert!(ok);
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(
        list.contains("billing backend") && list.contains("live"),
        "{list}"
    );
    assert!(!list.contains(&key[5..]), "a list never shows a key");
    let id = key
        .trim_start_matches("tern_")
        .split('_')
        .next()
        .unwrap()
        .to_owned();
    assert!(list.contains(&id));

    let (_, ok) = tern_admin(&data, &["create", "--name", "   "]);
    assert!(!ok, "a blank name is refused");
    let (out, ok) = tern_admin(&data, &["revoke", &id]);
    assert!(ok, "{out}");
    let (_, ok) = tern_admin(&data, &["revoke", &id]);
    assert!(!ok, "a key is revoked once");
    let (list, _) = tern_admin(&data, &["list"]);
    assert!(list.contains("revoked at"), "{list}");

    // What the store now authenticates.
    let mut config = Config {
        data_dir: data.0.path().to_path_buf(),
        ..Config::default()
    };
    config.store = data.1.clone();
    let (keys, store) = open_admin_keys(&config).await.unwrap();
    assert!(keys.verify(&key).await.is_err(), "revoked");
    assert_eq!(keys.verify(&other).await.unwrap().name, "ops");
    assert!(keys.verify("tern_nope_nope").await.is_err());
    assert!(keys.verify(&other.replace("tern_", "xern_")).await.is_err());
    store.close().await;
}
