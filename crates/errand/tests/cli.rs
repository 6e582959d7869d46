//! The CLI around the server: `errand check` against live servers, configuration precedence
//! (flags, then `ERRAND_*`, then the TOML file, then defaults), `errand token`'s output,
//! `errand worker` beside an API-only server, plain logs on a pipe, and `--help` everywhere.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use common::{Serve, now_s, run, tempdir};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;

/// `errand check` as `user` against `server`, minting with its data directory.
async fn check(server: &Serve, extra: &[&str]) -> common::Finished {
    let dir = server.data_dir.to_string_lossy().into_owned();
    let mut args = vec![
        "--data-dir",
        dir.as_str(),
        "check",
        "--url",
        server.base.as_str(),
        "--user-id",
        "checker",
        "--timeout",
        "20s",
    ];
    args.extend(extra);
    run(&server.data_dir, &args, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_against_a_live_server_and_fails_without_the_reference_tasks() {
    let (live_dir, bare_dir) = (tempdir(), tempdir());
    let live = Serve::start(live_dir.path(), &[]);
    let bare = Serve::start(bare_dir.path(), &["--no-reference-tasks"]);

    let (passed, chat_only, failed) = tokio::join!(
        check(&live, &[]),
        check(&live, &["--test", "chat"]),
        check(&bare, &[]),
    );
    passed.expect_code(0, "errand check on a live server");
    for line in ["chat: PASSED", "document: PASSED", "All tests passed."] {
        assert!(passed.stdout.contains(line), "{line}: {}", passed.stdout);
    }
    assert!(
        passed
            .stdout
            .contains("the other user cannot see the task (404)"),
        "{}",
        passed.stdout
    );
    chat_only.expect_code(0, "errand check --test chat");
    assert!(chat_only.stdout.contains("chat: PASSED"));
    assert!(
        !chat_only.stdout.contains("document:"),
        "{}",
        chat_only.stdout
    );

    assert_ne!(failed.status.code(), Some(0), "{}", failed.stdout);
    for line in ["chat: FAILED", "document: FAILED", "Some tests FAILED."] {
        assert!(failed.stdout.contains(line), "{line}: {}", failed.stdout);
    }
    assert!(
        failed.stdout.contains("unknown_task") || failed.stdout.contains("not registered"),
        "says why: {}",
        failed.stdout
    );

    // The secret can come from the environment instead of the data directory; a wrong one is
    // refused with a hint.
    let secret = String::from_utf8(live.jwt_secret()).expect("text");
    let elsewhere = tempdir();
    let args = [
        "check",
        "--url",
        live.base.as_str(),
        "--user-id",
        "envuser",
        "--test",
        "chat",
    ];
    let out = run(elsewhere.path(), &args, &[("ERRAND_JWT_SECRET", &secret)]).await;
    out.expect_code(0, "errand check with ERRAND_JWT_SECRET");
    let out = run(
        elsewhere.path(),
        &args,
        &[(
            "ERRAND_JWT_SECRET",
            "a-different-secret-of-at-least-32-bytes",
        )],
    )
    .await;
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stderr.contains("refused a token"), "{}", out.stderr);
    let out = run(elsewhere.path(), &args, &[]).await;
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stderr.contains("errand serve"), "{}", out.stderr);
}

/// Whether the server on `dir` keeps its tasks in SQLite (else in memory).
fn uses_sqlite(dir: &Path) -> bool {
    dir.join("errand.sqlite").exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_beat_env_which_beats_the_file_which_beats_defaults() {
    let files = tempdir();
    let config = files.path().join("errand.toml");
    // Port 9 on 127.0.0.1 cannot be bound by a test: only a server that ignored the file's
    // address starts. The redis store without a URL cannot start either.
    std::fs::write(&config, "addr = \"127.0.0.1:9\"\nstore = \"redis\"\n").expect("write");
    let config = config.to_string_lossy().into_owned();

    // Flags beat the file.
    let dir = tempdir();
    let server = Serve::builder(dir.path())
        .args(&[
            "--config",
            &config,
            "--addr",
            "127.0.0.1:0",
            "--store",
            "memory",
        ])
        .start();
    assert_ne!(server.addr.port(), 9);
    assert!(!uses_sqlite(dir.path()));
    drop(server);

    // Env beats the file.
    let dir = tempdir();
    let server = Serve::builder(dir.path())
        .env("ERRAND_CONFIG", &config)
        .env("ERRAND_ADDR", "127.0.0.1:0")
        .env("ERRAND_STORE", "sqlite")
        .start();
    assert_ne!(server.addr.port(), 9);
    assert!(uses_sqlite(dir.path()));
    drop(server);

    // Flags beat env.
    let dir = tempdir();
    let server = Serve::builder(dir.path())
        .env("ERRAND_STORE", "redis")
        .args(&["--store", "memory"])
        .start();
    assert!(!uses_sqlite(dir.path()));
    drop(server);

    // The file beats defaults, read from ./errand.toml when no --config is given.
    let dir = tempdir();
    std::fs::write(dir.path().join("errand.toml"), "store = \"memory\"\n").expect("write");
    let server = Serve::start(dir.path(), &[]);
    assert!(!uses_sqlite(dir.path()));
    let api = server.user("alice", None).await;
    let id = api.persist("s", &[("user", "hi")]).await;
    assert_eq!(api.wait_done(&id).await["status"], "success");
    drop(server);

    // Without any of them: SQLite.
    let dir = tempdir();
    let server = Serve::start(dir.path(), &[]);
    assert!(uses_sqlite(dir.path()));
    drop(server);

    // The file's own value is used when nothing overrides it: the redis store without a URL
    // is refused with a clear message.
    let dir = tempdir();
    let out = run(
        dir.path(),
        &["--config", &config, "serve", "--addr", "127.0.0.1:0"],
        &[],
    )
    .await;
    assert_ne!(out.status.code(), Some(0));
    assert!(
        out.stderr.contains("redis store needs a URL"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_file_is_a_clear_error_for_every_command() {
    let dir = tempdir();
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "adress = \"127.0.0.1:8080\"\n").expect("write");
    let typo = typo.to_string_lossy().into_owned();
    for args in [
        vec!["--config", typo.as_str(), "serve", "--addr", "127.0.0.1:0"],
        vec!["--config", typo.as_str(), "token", "--user", "alice"],
        vec!["--config", typo.as_str(), "tasks"],
    ] {
        let out = run(dir.path(), &args, &[]).await;
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert!(
            out.stderr.contains("invalid config file")
                && out.stderr.contains("unknown field `adress`")
                && out.stderr.contains("typo.toml"),
            "{args:?}: {}",
            out.stderr
        );
    }
    let bad_value = dir.path().join("bad.toml");
    std::fs::write(&bad_value, "store = \"cassandra\"\n").expect("write");
    let out = run(
        dir.path(),
        &["--config", &bad_value.to_string_lossy(), "serve"],
        &[],
    )
    .await;
    assert_ne!(out.status.code(), Some(0));
    assert!(
        out.stderr.contains("unknown variant `cassandra`"),
        "{}",
        out.stderr
    );
    let out = run(
        dir.path(),
        &["--config", "/nonexistent/errand.toml", "serve"],
        &[],
    )
    .await;
    assert_ne!(out.status.code(), Some(0));
    assert!(
        out.stderr.contains("cannot read the config file"),
        "{}",
        out.stderr
    );
    assert!(
        !dir.path().join("errand-data").exists(),
        "nothing was created"
    );
}

/// The claims of a token.
fn claims(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "header.claims.signature: {token}");
    let decode = |s: &str| -> Value {
        serde_json::from_slice(&B64URL.decode(s).expect("base64url")).expect("JSON")
    };
    assert!(!parts[2].is_empty());
    (decode(parts[0]), decode(parts[1]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_prints_the_token_alone_on_the_last_line() {
    let dir = tempdir();
    let data = dir.path().to_string_lossy().into_owned();

    // Before the first serve there is no secret: a clear error, no token.
    let out = run(
        dir.path(),
        &["--data-dir", &data, "token", "--user", "alice"],
        &[],
    )
    .await;
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.trim().is_empty(), "{}", out.stdout);
    assert!(
        out.stderr.contains("errand serve") && out.stderr.contains("ERRAND_JWT_SECRET"),
        "{}",
        out.stderr
    );

    let server = Serve::start(dir.path(), &[]);
    let out = run(
        dir.path(),
        &[
            "--data-dir",
            &data,
            "token",
            "--user",
            "alice",
            "--tenant",
            "acme",
            "--admin",
            "--ttl",
            "15m",
        ],
        &[],
    )
    .await;
    out.expect_code(0, "errand token");
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    let token = out.last_line();
    let (header, c) = claims(token);
    assert_eq!(header["alg"], "HS256");
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["tenant"], "acme");
    assert_eq!(c["roles"], json!(["admin"]));
    assert_eq!(
        c["exp"].as_i64().zip(c["iat"].as_i64()).map(|(e, i)| e - i),
        Some(900)
    );
    assert!((c["iat"].as_i64().unwrap_or(0) - now_s()).abs() < 60);
    assert!(
        out.stderr
            .contains("token for alice (tenant acme), admin, valid 15m"),
        "{}",
        out.stderr
    );
    let (status, page) = server.client(token).get("/v1/tasks").await;
    assert_eq!(status, StatusCode::OK, "{page}");

    // Defaults: an hour, no tenant, no roles.
    let plain = server.token("bob", None, false).await;
    let (_, c) = claims(&plain);
    assert_eq!(c["sub"], "bob");
    assert!(c.get("tenant").is_none() && c.get("roles").is_none(), "{c}");
    assert_eq!(
        c["exp"].as_i64().zip(c["iat"].as_i64()).map(|(e, i)| e - i),
        Some(3600)
    );

    // The claim name is configurable; ERRAND_JWT_SECRET beats the generated file.
    let out = run(
        dir.path(),
        &["--data-dir", &data, "token", "--user", "carol"],
        &[
            ("ERRAND_USER_CLAIM", "oid"),
            ("ERRAND_JWT_SECRET", "another-secret-that-is-32-bytes-long"),
        ],
    )
    .await;
    out.expect_code(0, "errand token with env");
    let token = out.last_line();
    let (_, c) = claims(token);
    assert_eq!(c["oid"], "carol");
    assert!(c.get("sub").is_none());
    let (status, body) = server.client(token).get("/v1/tasks").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "another secret: {body}");
    // The token names its secret's key id, which is not one of the server's.
    assert_eq!(body["error"]["code"], "unknown_key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_runs_what_an_api_only_server_accepts() {
    let dir = tempdir();
    let mut api = Serve::start(dir.path(), &["--workers", "0"]);
    let alice = api.user("alice", None).await;
    let id = alice
        .ingest("Shared", "Written by one process, run by another.")
        .await;
    assert_eq!(alice.record(&id).await["status"], "pending");

    // The worker claims ahead of its running tasks (`--prefetch`, here from the environment).
    let mut worker = Serve::builder(dir.path())
        .worker()
        .env("ERRAND_PREFETCH", "4")
        .start();
    let record = alice.wait_done(&id).await;
    assert_eq!(record["status"], "success", "{record:#}");
    assert_eq!(record["owner"]["user_id"], "alice");
    let (_, found) = alice.get("/v1/search?q=process").await;
    assert_eq!(found["results"][0]["task_id"], id.as_str(), "{found}");

    // At SIGTERM the worker prints its statistics as JSON on stdout.
    let status = worker.terminate();
    assert_eq!(status.code(), Some(0), "{}", worker.stderr());
    let stats: Value = worker
        .stdout()
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("stats on stdout");
    assert_eq!(stats["succeeded"], 1, "{stats}");
    assert_eq!(stats["status"], "completed", "{stats}");
    assert!(
        worker.stderr().contains("prefetch=4"),
        "the worker did not take ERRAND_PREFETCH:\n{}",
        worker.stderr()
    );
    assert_eq!(api.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_on_a_pipe_are_plain_text() {
    let dir = tempdir();
    let mut server = Serve::start(dir.path(), &[]);
    assert_eq!(server.terminate().code(), Some(0));
    let logs = server.stderr();
    assert!(logs.contains("errand serving"), "{logs}");
    assert!(logs.contains("worker stopped"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "no colour codes: {logs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_has_help() {
    let dir = tempdir();
    let commands = [
        "serve", "worker", "token", "bench", "submit", "status", "watch", "tasks", "cancel",
        "retry", "check",
    ];
    let out = run(dir.path(), &["--help"], &[]).await;
    out.expect_code(0, "errand --help");
    for command in commands {
        assert!(
            out.stdout.contains(&format!("  {command} ")),
            "{command} is listed: {}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("ERRAND_"), "{}", out.stdout);
    for command in commands {
        let out = run(dir.path(), &[command, "--help"], &[]).await;
        out.expect_code(0, command);
        assert!(
            out.stdout.contains(&format!("Usage: errand {command}")),
            "{command}: {}",
            out.stdout
        );
        assert!(out.stdout.contains("--config"), "{command}: global flags");
    }
    let out = run(dir.path(), &["serve", "--help"], &[]).await;
    for flag in [
        "--addr",
        "--store",
        "--workers",
        "--no-reference-tasks",
        "ERRAND_ADDR",
    ] {
        assert!(out.stdout.contains(flag), "serve --help: {flag}");
    }
    let out = run(dir.path(), &["submit", "--help"], &[]).await;
    for flag in [
        "--args",
        "--key",
        "--wait",
        "--url",
        "--token",
        "ERRAND_TOKEN",
    ] {
        assert!(out.stdout.contains(flag), "submit --help: {flag}");
    }
    let out = run(dir.path(), &["--version"], &[]).await;
    out.expect_code(0, "--version");
    assert!(out.stdout.starts_with("errand "), "{}", out.stdout);
    let out = run(dir.path(), &["no-such-command"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "a usage error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_check_use_the_configured_claim_names_and_admin_role() {
    let dir = tempdir();
    let data = dir.path().to_string_lossy().into_owned();
    let config = dir.path().join("claims.toml");
    std::fs::write(
        &config,
        "user_claim = \"oid\"\ntenant_claim = \"org\"\nadmin_role = \"boss\"\n",
    )
    .expect("write");
    let config = config.to_string_lossy().into_owned();
    let server = Serve::start(dir.path(), &["--config", &config]);
    let token = async |user: &str, extra: &[&str]| {
        let mut args = vec![
            "--config",
            &config,
            "--data-dir",
            &data,
            "token",
            "--user",
            user,
        ];
        args.extend(extra);
        let out = run(dir.path(), &args, &[]).await;
        out.expect_code(0, "errand token");
        out.last_line().to_string()
    };
    let alice = token("alice", &["--tenant", "acme"]).await;
    let (_, c) = claims(&alice);
    assert_eq!(
        (c["oid"].as_str(), c["org"].as_str()),
        (Some("alice"), Some("acme")),
        "{c}"
    );
    let alice = server.client(&alice);
    let id = alice.persist("s", &[("user", "hi")]).await;
    assert_eq!(
        alice.wait_done(&id).await["owner"],
        json!({"user_id": "alice", "tenant": "acme"}),
        "the tenant reached the server"
    );
    let boss = token("root", &["--admin"]).await;
    assert_eq!(claims(&boss).1["roles"], json!(["boss"]));
    let (status, page) = server.client(&boss).get("/v1/tasks").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        page["items"][0]["id"],
        id.as_str(),
        "the admin sees alice's task"
    );

    let out = run(
        dir.path(),
        &[
            "--config",
            &config,
            "--data-dir",
            &data,
            "check",
            "--url",
            &server.base,
            "--user-id",
            "checker",
            "--tenant",
            "acme",
            "--test",
            "chat",
        ],
        &[],
    )
    .await;
    out.expect_code(0, "errand check with configured claims");
    assert!(out.stdout.contains("chat: PASSED"), "{}", out.stdout);
}
