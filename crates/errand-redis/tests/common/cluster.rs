//! [`TestCluster`]: a Redis Cluster of the test's own on loopback (three primaries, one replica
//! each), with nodes a test can kill -9 and start again.
//!
//! Every node runs with `appendonly yes` in a temporary directory and a small
//! `cluster-node-timeout`, so a replica takes over a killed primary within a few seconds. The
//! nodes die with the cluster (`Drop`, even when the test panicked) and with the process that
//! started them (`PR_SET_PDEATHSIG`), so no test leaves servers behind.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a primary may stay silent before its replica takes over (ms).
pub const NODE_TIMEOUT_MS: u64 = 1000;

/// One `redis-server` of the cluster.
struct Node {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn start(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            .args(["--appendonly", "yes", "--save", ""])
            .args(["--logfile", "redis.log"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; the closure allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().expect("redis-server starts (is it installed?)"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server {} did not come up",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running cluster; killed (and its files removed) when dropped.
pub struct TestCluster {
    nodes: Mutex<Vec<Node>>,
    dir: PathBuf,
}

/// A port `p` free on loopback whose cluster bus port `p + 10000` is free too.
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn redis_cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl TestCluster {
    /// Starts 3 primaries and 3 replicas on free loopback ports, and waits until every node
    /// says `cluster_state:ok` and every replica is in sync.
    pub fn start() -> Self {
        let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
        let dir = std::env::temp_dir().join(format!(
            "errand-cluster-{}-{}",
            std::process::id(),
            ports[0]
        ));
        let nodes = ports
            .iter()
            .map(|&port| {
                let dir = dir.join(port.to_string());
                std::fs::create_dir_all(&dir).expect("node dir");
                let mut node = Node {
                    port,
                    dir,
                    child: None,
                };
                node.start();
                node
            })
            .collect();
        let cluster = Self {
            nodes: Mutex::new(nodes),
            dir,
        };
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"]);
        redis_cli(&args);
        cluster.wait_ready(Duration::from_secs(30));
        cluster
    }

    /// One cluster shared by every test of the process (the conformance cases), started on
    /// first use from a thread that lives as long as the process, and stopped when the
    /// process exits.
    pub fn shared() -> &'static TestCluster {
        static SHARED: OnceLock<TestCluster> = OnceLock::new();
        SHARED.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            // The nodes die with the thread that started them (PR_SET_PDEATHSIG): this one
            // parks until the process ends.
            std::thread::spawn(move || {
                let _ = tx.send(TestCluster::start());
                loop {
                    std::thread::park();
                }
            });
            extern "C" fn stop_shared() {
                if let Some(cluster) = SHARED.get() {
                    cluster.stop();
                }
            }
            // SAFETY: registering a plain function to run at exit.
            unsafe {
                libc::atexit(stop_shared);
            }
            rx.recv().expect("the cluster starts")
        })
    }

    /// The seed URLs of every node, comma-separated, as `--redis-url` takes them.
    pub fn url(&self) -> String {
        self.ports()
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn ports(&self) -> Vec<u16> {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|n| n.port)
            .collect()
    }

    /// The port of the primary that serves `key`'s slot now (panics if none does).
    pub fn primary_of(&self, key: &str) -> u16 {
        self.serving(key)
            .unwrap_or_else(|| panic!("no primary serves the slot of {key}"))
    }

    /// The port of the primary that serves `key`'s slot, as a live node sees it now.
    fn serving(&self, key: &str) -> Option<u16> {
        let slot: u16 = redis_cli(&[
            "-p",
            &self.live_port().to_string(),
            "cluster",
            "keyslot",
            key,
        ])
        .trim()
        .parse()
        .expect("a slot");
        for line in redis_cli(&["-p", &self.live_port().to_string(), "cluster", "nodes"]).lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let port: u16 = fields[1]
                .split(['@', ':'])
                .nth(1)
                .and_then(|p| p.parse().ok())
                .expect("a port");
            for range in &fields[8..] {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>())
                    && (lo..=hi).contains(&slot)
                {
                    return Some(port);
                }
            }
        }
        None
    }

    fn live_port(&self) -> u16 {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes
            .iter()
            .find(|n| n.child.is_some())
            .map(|n| n.port)
            .expect("a live node")
    }

    /// Kills the node on `port` with SIGKILL.
    pub fn kill(&self, port: u16) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(node) = nodes.iter_mut().find(|n| n.port == port) {
            node.kill();
        }
    }

    /// Starts the node on `port` again (from its AOF and `nodes.conf`: it rejoins, as a
    /// replica if it was failed over).
    pub fn restart(&self, port: u16) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(node) = nodes.iter_mut().find(|n| n.port == port) {
            node.start();
        }
    }

    /// Waits until `key`'s slot is served by a primary other than `old` and the cluster says
    /// `cluster_state:ok` on the live nodes.
    pub fn wait_failover(&self, key: &str, old: u16, within: Duration) -> u16 {
        let deadline = Instant::now() + within;
        loop {
            let ok = self.live_ports().iter().all(|p| {
                redis_cli(&["-p", &p.to_string(), "cluster", "info"]).contains("cluster_state:ok")
            });
            if let Some(now) = self.serving(key).filter(|p| ok && *p != old) {
                return now;
            }
            assert!(Instant::now() < deadline, "no failover within {within:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn live_ports(&self) -> Vec<u16> {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// Waits until every live node says `cluster_state:ok` and knows every node, and every
    /// live replica's link to its primary is up.
    pub fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let total = self.ports().len();
        loop {
            let ready = self.live_ports().iter().all(|p| {
                let port = p.to_string();
                let info = redis_cli(&["-p", &port, "cluster", "info"]);
                let replication = redis_cli(&["-p", &port, "info", "replication"]);
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{total}"))
                    && (replication.contains("role:master")
                        || replication.contains("master_link_status:up"))
            });
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster was not ready within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&self) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        for node in nodes.iter_mut() {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
