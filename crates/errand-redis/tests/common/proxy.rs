//! A TCP proxy on a loopback port between a store and a Redis, which reads the commands the
//! store sends, so a test can look at them, cut a connection right after a given command, or
//! hold Redis's answers back until some commands were sent.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

type Rule = Box<dyn Fn(&[String]) -> bool + Send>;
type Release = Box<dyn Fn(&[Vec<String>]) -> bool + Send>;

/// The proxy; it stops (and drops every connection) when dropped.
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
}

struct Shared {
    upstream: String,
    /// Every command sent so far, on any connection.
    commands: Mutex<Vec<Vec<String>>>,
    /// Cut the sender's connection after the first command matching this (then forgotten).
    cut: Mutex<Option<Rule>>,
    hold: Mutex<Option<Hold>>,
    holding: watch::Sender<bool>,
    /// Upstream connections of cut clients, kept open so that Redis runs what it received.
    parked: Mutex<Vec<OwnedWriteHalf>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Answers being held.
struct Hold {
    /// What releases them.
    release: Release,
    /// The commands sent since they are held.
    since: Vec<Vec<String>>,
    /// Who waits to hear whether commands released them.
    waiter: oneshot::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Proxy {
    /// A proxy to the Redis at `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            commands: Mutex::new(Vec::new()),
            cut: Mutex::new(None),
            hold: Mutex::new(None),
            holding: watch::channel(false).0,
            parked: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
        });
        let accepting = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = TcpStream::connect(&accepting.upstream)
                    .await
                    .expect("the proxy reaches Redis");
                let (client_rx, client_tx) = client.into_split();
                let (upstream_rx, upstream_tx) = upstream.into_split();
                let (cut_tx, cut_rx) = watch::channel(false);
                let requests =
                    tokio::spawn(requests(accepting.clone(), client_rx, upstream_tx, cut_tx));
                let answers =
                    tokio::spawn(answers(accepting.clone(), upstream_rx, client_tx, cut_rx));
                lock(&accepting.tasks).extend([requests, answers]);
            }
        });
        lock(&shared.tasks).push(accept);
        Self { port, shared }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Every command sent through the proxy so far, its arguments as (lossy) text.
    pub fn commands(&self) -> Vec<Vec<String>> {
        lock(&self.shared.commands).clone()
    }

    /// After forwarding the first command for which `rule` holds, closes the connection that
    /// sent it: Redis runs the command, but neither its answer nor anything sent after it on
    /// that connection gets through.
    pub fn cut_after(&self, rule: impl Fn(&[String]) -> bool + Send + 'static) {
        *lock(&self.shared.cut) = Some(Box::new(rule));
    }

    /// From now on holds Redis's answers on every connection until the commands sent since
    /// satisfy `release`, or `within` passed. The receiver says which: `true` when the
    /// commands released them.
    pub fn hold_answers_until(
        &self,
        release: impl Fn(&[Vec<String>]) -> bool + Send + 'static,
        within: Duration,
    ) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        *lock(&self.shared.hold) = Some(Hold {
            release: Box::new(release),
            since: Vec::new(),
            waiter: tx,
        });
        self.shared.holding.send_replace(true);
        let shared = self.shared.clone();
        let deadline = tokio::spawn(async move {
            tokio::time::sleep(within).await;
            shared.release(false);
        });
        lock(&self.shared.tasks).push(deadline);
        rx
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for task in lock(&self.shared.tasks).drain(..) {
            task.abort();
        }
        lock(&self.shared.parked).clear();
    }
}

impl Shared {
    /// Lets answers through again; tells the waiter whether commands did it.
    fn release(&self, by_commands: bool) {
        if let Some(hold) = lock(&self.hold).take() {
            let _ = hold.waiter.send(by_commands);
        }
        self.holding.send_replace(false);
    }

    /// Records a command; whether the connection that sent it is to be cut now.
    fn sent(&self, command: Vec<String>) -> bool {
        lock(&self.commands).push(command.clone());
        let cut = {
            let mut rule = lock(&self.cut);
            let matched = rule.as_ref().is_some_and(|r| r(&command));
            if matched {
                *rule = None;
            }
            matched
        };
        let released = match lock(&self.hold).as_mut() {
            Some(hold) => {
                hold.since.push(command);
                (hold.release)(&hold.since)
            }
            None => false,
        };
        if released {
            self.release(true);
        }
        cut
    }
}

/// Client to Redis: forwards whole commands, recording each.
async fn requests(
    shared: Arc<Shared>,
    mut client: OwnedReadHalf,
    mut upstream: OwnedWriteHalf,
    cut: watch::Sender<bool>,
) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some((len, command)) = parse_command(&buf) {
            if upstream.write_all(&buf[..len]).await.is_err() {
                return;
            }
            buf.drain(..len);
            if shared.sent(command) {
                lock(&shared.parked).push(upstream);
                cut.send_replace(true);
                return;
            }
        }
    }
}

/// Redis to client: forwards answers unless they are held, until the connection is cut.
async fn answers(
    shared: Arc<Shared>,
    mut upstream: OwnedReadHalf,
    mut client: OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
) {
    let mut holding = shared.holding.subscribe();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            read = upstream.read(&mut chunk) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = cut.wait_for(|c| *c) => break,
        };
        tokio::select! {
            _ = holding.wait_for(|h| !*h) => {}
            _ = cut.wait_for(|c| *c) => break,
        }
        if *cut.borrow() || client.write_all(&chunk[..n]).await.is_err() {
            break;
        }
    }
    // Cut: the client sees its connection close; Redis's answers are read and dropped.
    drop(client);
    while matches!(upstream.read(&mut chunk).await, Ok(n) if n > 0) {}
}

/// The first whole command in `buf` (a RESP array of bulk strings, as clients send): its
/// length in bytes and its arguments; `None` until it is complete.
fn parse_command(buf: &[u8]) -> Option<(usize, Vec<String>)> {
    let (count, mut pos) = number_line(buf, 0, b'*')?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, start) = number_line(buf, pos, b'$')?;
        let end = start + len;
        if buf.len() < end + 2 {
            return None;
        }
        args.push(String::from_utf8_lossy(&buf[start..end]).into_owned());
        pos = end + 2;
    }
    Some((pos, args))
}

/// A `<marker><number>\r\n` line at `pos`: the number and the position after the line.
fn number_line(buf: &[u8], pos: usize, marker: u8) -> Option<(usize, usize)> {
    let first = *buf.get(pos)?;
    assert_eq!(
        first, marker,
        "the proxy only reads RESP arrays of bulk strings"
    );
    let end = pos + buf[pos..].windows(2).position(|w| w == b"\r\n")?;
    let number = std::str::from_utf8(&buf[pos + 1..end])
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("a RESP length");
    Some((number, end + 2))
}
