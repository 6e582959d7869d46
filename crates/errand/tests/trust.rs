//! One deployment, one key, with real `errand serve` processes:
//! - two processes with different generated seal keys on one Redis: the second refuses to
//!   start, naming both key ids (instead of failing half the tasks later);
//! - rotation with queued tasks: tasks sealed under `k1` run on a process started with
//!   `k2,k1`, and a process holding only `k1` afterwards refuses to start;
//! - the data directory and every file holding secrets or task data are private.

mod common;

use common::{Serve, run, tempdir};
use errand::{SealKey, SealKeyRing};
use std::path::Path;
use std::time::Duration;

const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Deletes a Redis prefix's keys when dropped.
struct Prefix(String);

impl Drop for Prefix {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(REDIS_URL) else {
            return;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
            return;
        };
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{{{}:*", self.0))
            .query(&mut conn)
            .unwrap_or_default();
        keys.push(format!("{{{}}}:queues", self.0));
        keys.push(format!("{{{}}}:meta", self.0));
        let _: Result<u64, _> = redis::cmd("UNLINK").arg(&keys).query(&mut conn);
    }
}

fn errand_server_key_id(secret: &[u8]) -> String {
    errand::server::hs256_key_id(secret)
}

fn generated_key(data_dir: &Path) -> SealKey {
    let text = std::fs::read_to_string(data_dir.join("seal.key")).expect("the generated key");
    SealKey::from_base64(&text).expect("a key")
}

/// Runs `errand serve ARGS` expecting it to refuse to start; returns its stderr.
async fn refused(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = data_dir.to_string_lossy().into_owned();
    let mut all = vec!["--data-dir", dir.as_str(), "serve", "--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let out = tokio::time::timeout(Duration::from_secs(30), run(data_dir, &all, env))
        .await
        .expect("errand serve exits instead of serving");
    assert!(
        !out.status.success(),
        "errand serve should have refused to start\n{}",
        out.stderr
    );
    assert!(
        !out.stdout.contains("errand listening"),
        "it never served: {}",
        out.stdout
    );
    out.stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_other_keys_on_one_redis_refuses_to_start() {
    let prefix = Prefix(format!("errand-trust-{}", uuid::Uuid::now_v7().simple()));
    let redis = [
        "--store",
        "redis",
        "--redis-url",
        REDIS_URL,
        "--redis-prefix",
        prefix.0.as_str(),
    ];
    let (first_dir, second_dir, third_dir) = (tempdir(), tempdir(), tempdir());
    let first = Serve::start(first_dir.path(), &redis);
    let first_key = generated_key(first_dir.path());

    // Its own data directory, so its own generated key: refused, naming both ids.
    let stderr = refused(second_dir.path(), &redis, &[]).await;
    let second_key = generated_key(second_dir.path());
    assert_ne!(first_key.id(), second_key.id());
    assert!(
        stderr.contains(first_key.id()) && stderr.contains(second_key.id()),
        "the message names both key ids:\n{stderr}"
    );
    assert!(stderr.contains("ERRAND_SEAL_KEYS"), "{stderr}");

    // The deployment's seal key but a token secret of its own: tokens the others mint would
    // be refused here, so it refuses to start too.
    let fourth_dir = tempdir();
    let stderr = refused(
        fourth_dir.path(),
        &redis,
        &[("ERRAND_SEAL_KEYS", &first_key.to_base64())],
    )
    .await;
    let own_secret =
        std::fs::read_to_string(fourth_dir.path().join("jwt.secret")).expect("generated");
    let ids = [
        errand_server_key_id(&first.jwt_secret()),
        errand_server_key_id(own_secret.trim().as_bytes()),
    ];
    assert!(
        stderr.contains("token secret") && ids.iter().all(|id| stderr.contains(id.as_str())),
        "names both token secret ids {ids:?}:\n{stderr}"
    );
    assert!(stderr.contains("ERRAND_JWT_SECRETS"), "{stderr}");

    // Given the deployment's keys, another process joins and runs the first one's tasks.
    let third = Serve::builder(third_dir.path())
        .args(&redis)
        .env("ERRAND_SEAL_KEYS", &first_key.to_base64())
        .env(
            "ERRAND_JWT_SECRET",
            std::str::from_utf8(&first.jwt_secret()).expect("text"),
        )
        .start();
    let token = first.token("alice", None, false).await;
    let alice = third.client(&token);
    let id = alice.ingest("shared", "both processes open this").await;
    let done = alice.wait_done(&id).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["owner"]["user_id"], "alice");
    // The first process sees it too: one deployment.
    let seen = first.client(&token).record(&id).await;
    assert_eq!(seen["status"], "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_seal_key_runs_the_queued_tasks_and_refuses_the_old_key_alone() {
    let dir = tempdir();
    let (k1, k2) = (SealKey::generate(), SealKey::generate());
    // The old deployment queues work (it runs no workers).
    let old = Serve::builder(dir.path())
        .args(&["--workers", "0"])
        .env("ERRAND_SEAL_KEYS", &k1.to_base64())
        .start();
    let alice = old.user("alice", Some("acme")).await;
    let mut queued = Vec::new();
    for i in 0..5 {
        queued.push(
            alice
                .ingest(
                    &format!("doc {i}"),
                    &format!("otters number {i} hold hands"),
                )
                .await,
        );
    }
    let mut old = old;
    assert!(old.terminate().success());

    // The new deployment seals with k2 and still opens k1.
    let rotated = format!("{},{}", k2.to_base64(), k1.to_base64());
    let new = Serve::builder(dir.path())
        .env("ERRAND_SEAL_KEYS", &rotated)
        .start();
    let alice = new.user("alice", Some("acme")).await;
    for id in &queued {
        let done = alice.wait_done(id).await;
        assert_eq!(done["status"], "success", "a task sealed under k1: {done}");
        assert_eq!(done["owner"]["user_id"], "alice");
    }
    let fresh = alice.ingest("new doc", "sealed under k2").await;
    assert_eq!(alice.wait_done(&fresh).await["status"], "success");
    assert!(
        new.stderr().contains("rotated forward"),
        "the store now records k2:\n{}",
        new.stderr()
    );
    let mut new = new;
    assert!(new.terminate().success());

    // A process still holding only k1 would fail what k2 sealed: it refuses to start.
    let stderr = refused(dir.path(), &[], &[("ERRAND_SEAL_KEYS", &k1.to_base64())]).await;
    assert!(
        stderr.contains(k1.id()) && stderr.contains(k2.id()),
        "{stderr}"
    );
    let ring = SealKeyRing::from_base64_list(&rotated).expect("ring");
    assert_eq!(ring.sealing().id(), k2.id());
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempdir();
    let data = parent.path().join("errand-data");
    let serve = Serve::builder(&data).cwd(parent.path()).start();
    let alice = serve.user("alice", None).await;
    let id = alice
        .ingest("private notes", "otters keep a favourite rock")
        .await;
    assert_eq!(alice.wait_done(&id).await["status"], "success");
    let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory");
    let mut files = Vec::new();
    let mut dirs = vec![data.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("list") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                assert_eq!(mode(&path), 0o700, "{}", path.display());
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    for name in ["jwt.secret", "seal.key", "errand.sqlite"] {
        assert!(
            files.iter().any(|f| f.ends_with(name)),
            "{name} in {files:?}"
        );
    }
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "sqlite") && !f.ends_with("errand.sqlite")),
        "a user's index: {files:?}"
    );
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
}
