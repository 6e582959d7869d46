//! PostgreSQL: [`SchemaGuard`], a schema of a test's own on the shared server, and
//! [`TestPostgres`], a server of a test's own that can be stopped in immediate mode and
//! started again.

use crate::cluster::proc::{Proc, run_ok};
use crate::cluster::{clean_up, wait_until};
use sqlx_core::connection::Connection;
use sqlx_core::executor::Executor;
use sqlx_core::raw_sql::raw_sql;
use sqlx_postgres::PgConnection;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The database of the shared server the proofs make their schemas in:
/// `ERRAND_TEST_POSTGRES` (the server, as for errand-postgres's tests; default
/// `postgres://postgres@127.0.0.1:5432`) and the database `test`.
pub fn shared_postgres_url() -> String {
    let server = std::env::var("ERRAND_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    format!("{server}/test")
}

/// Drops a schema (and everything in it) from the database at `url` when dropped, even when
/// the test panicked. The store creates the schema when it first connects.
pub struct SchemaGuard {
    url: String,
    schema: String,
}

impl SchemaGuard {
    /// Guards `schema` of the database at `url`.
    pub fn new(url: &str, schema: &str) -> Self {
        Self {
            url: url.to_string(),
            schema: schema.to_string(),
        }
    }
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let dropped = clean_up(|| async move {
            let mut conn = PgConnection::connect(&url).await.ok()?;
            let sql = format!(
                "SET lock_timeout = '20s'; DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                schema.replace('"', "\"\"")
            );
            conn.execute(raw_sql(&sql)).await.ok()
        });
        if !dropped {
            eprintln!("could not drop the PostgreSQL schema {}", self.schema);
        }
    }
}

/// A PostgreSQL server of a test's own, made by `initdb` in a temporary directory: on a free
/// loopback port, its socket in that directory, `fsync=on`. Stopped when dropped.
///
/// PostgreSQL refuses to run as root; when the tests do, its commands run as the `postgres`
/// user (`setpriv`, which execs in place, so the child is the server itself), and the
/// directory is given to that user.
pub struct TestPostgres {
    /// Holds `data/` and the socket; removed when dropped, after the server stopped.
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    proc: Option<Proc>,
    starts: u32,
}

impl TestPostgres {
    /// Makes a cluster and starts it; waits until it answers.
    pub async fn start_new() -> TestPostgres {
        let dir = tempfile::Builder::new()
            .prefix("errand-test-postgres-")
            .tempdir()
            .expect("a directory for the test PostgreSQL");
        let owner = running_as_root().then(postgres_user);
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("give the test PostgreSQL's directory to the postgres user");
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut postgres = TestPostgres {
            dir,
            port,
            bin: bin_dir(),
            owner,
            proc: None,
            starts: 0,
        };
        let mut initdb = postgres.command("initdb");
        initdb
            .arg("-D")
            .arg(postgres.data())
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"])
            // The OS does not crash in these tests, only the server: its files need not
            // reach the disk to survive.
            .arg("--no-sync");
        run_ok(initdb, "initdb");
        postgres.start().await;
        postgres
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `program` of the server's binaries, run as the server's owner, in its directory.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = match self.owner {
            Some((uid, gid)) => {
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg(path);
                command
            }
            None => Command::new(path),
        };
        command.current_dir(self.dir.path());
        command
    }

    /// `pg_ctl stop -m immediate`, waiting until the server is gone.
    fn stop_command(&self) -> Command {
        let mut command = self.command("pg_ctl");
        command
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"]);
        command
    }

    /// Starts the server (again) on the same port and directory, and waits until it accepts
    /// connections (after crash recovery, if it was stopped in immediate mode).
    pub async fn start(&mut self) {
        assert!(self.proc.is_none(), "the test PostgreSQL already runs");
        self.starts += 1;
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=on",
                "-c",
                "max_connections=100",
            ]);
        let proc = Proc::spawn(
            &format!("postgres-{}", self.starts),
            command,
            self.dir.path(),
        );
        self.proc = Some(proc);
        let ready = self.bin.join("pg_isready");
        let port = self.port.to_string();
        wait_until(
            "the test PostgreSQL to accept connections",
            Duration::from_secs(60),
            || {
                let mut check = Command::new(&ready);
                check.args(["-q", "-h", "127.0.0.1", "-p", &port, "-U", "postgres"]);
                async move { check.status().is_ok_and(|s| s.success()).then_some(()) }
            },
        )
        .await;
    }

    /// `pg_ctl stop -m immediate`: the server stops at once, with no shutdown checkpoint (its
    /// next start recovers from the write-ahead log, as after a crash). Waits until it exited.
    pub async fn stop_immediate(&mut self) {
        let Some(mut proc) = self.proc.take() else {
            return;
        };
        run_ok(self.stop_command(), "pg_ctl stop -m immediate");
        proc.wait_exit(Duration::from_secs(30)).await;
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            // Immediate stop also ends the server's children; the kill of `proc`'s drop, the
            // postmaster's alone, is the fallback.
            let _ = self.stop_command().output();
            if proc.is_running() {
                proc.kill9();
            }
        }
    }
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The `postgres` user's uid and gid.
fn postgres_user() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        assert!(
            out.status.success(),
            "the tests run as root and there is no postgres user to run PostgreSQL as"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a numeric id")
    };
    (id("-u"), id("-g"))
}

/// Where the server's programs are: `ERRAND_TEST_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout).
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("ERRAND_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(
            "PostgreSQL's server programs under /usr/lib/postgresql (or set ERRAND_TEST_PG_BIN)",
        )
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            Path::new(&bin.join("initdb"))
                .exists()
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("an initdb under /usr/lib/postgresql/<version>/bin")
}
