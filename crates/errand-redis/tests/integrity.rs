//! Redis is not trusted with identity: a queued task whose stored owner, context or arguments
//! were edited in Redis fails its attempt (`context_integrity`) and never runs; neither the
//! identity nor the credential is in clear in Redis.

mod common;

use errand_core::conformance::{Victims, tampered_contexts_never_run};
use errand_core::{Store, TaskId};
use std::sync::Arc;
use std::time::Duration;

/// A stored record split into its header line and its six length-prefixed blobs.
struct Raw {
    header: String,
    blobs: Vec<Vec<u8>>,
}

impl Raw {
    fn parse(bytes: &[u8]) -> Self {
        let newline = bytes.iter().position(|b| *b == b'\n').expect("header");
        let mut rest = &bytes[newline + 1..];
        let mut blobs = Vec::new();
        for _ in 0..6 {
            let colon = rest.iter().position(|b| *b == b':').expect("length");
            let len: usize = std::str::from_utf8(&rest[..colon])
                .expect("digits")
                .parse()
                .expect("length");
            blobs.push(rest[colon + 1..colon + 1 + len].to_vec());
            rest = &rest[colon + 1 + len..];
        }
        Self {
            header: String::from_utf8(bytes[..newline].to_vec()).expect("utf-8 header"),
            blobs,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = self.header.clone().into_bytes();
        out.push(b'\n');
        for blob in &self.blobs {
            out.extend_from_slice(format!("{}:", blob.len()).as_bytes());
            out.extend_from_slice(blob);
        }
        out
    }

    /// The payload (name, owner, ids, args, sealed context) as JSON.
    fn payload(&self) -> serde_json::Value {
        serde_json::from_slice(&self.blobs[5]).expect("payload JSON")
    }

    fn set_payload(&mut self, payload: &serde_json::Value) {
        self.blobs[5] = serde_json::to_vec(payload).expect("JSON");
    }
}

struct Raws {
    conn: redis::Connection,
    prefix: String,
}

impl Raws {
    fn key(&self, id: TaskId) -> String {
        format!("{{{}:default}}:t:{id}", self.prefix)
    }

    fn get(&mut self, id: TaskId) -> Raw {
        let bytes: Vec<u8> = redis::cmd("GET")
            .arg(self.key(id))
            .query(&mut self.conn)
            .expect("GET");
        Raw::parse(&bytes)
    }

    fn put(&mut self, id: TaskId, raw: &Raw) {
        let _: () = redis::cmd("SET")
            .arg(self.key(id))
            .arg(raw.encode())
            .query(&mut self.conn)
            .expect("SET");
    }

    /// Applies `edit` to the payload of `id`.
    fn tamper(&mut self, id: TaskId, edit: impl FnOnce(&mut serde_json::Value)) {
        let mut raw = self.get(id);
        let mut payload = raw.payload();
        edit(&mut payload);
        raw.set_payload(&payload);
        self.put(id, &raw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_edited_in_redis_never_run() {
    let prefix = common::unique_prefix();
    let _clean = common::KeyCleaner::new(&prefix);
    let store: Arc<dyn Store> =
        Arc::new(common::store_on(&prefix, Arc::new(errand_core::SystemClock)).await);
    let conn = redis::Client::open(common::REDIS_URL)
        .expect("client")
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("connection");
    let mut raws = Raws { conn, prefix };
    tampered_contexts_never_run(store, async |v: Victims| {
        for id in [
            v.owner_moved,
            v.context_pasted,
            v.args_changed,
            v.context_stripped,
            v.bob,
        ] {
            let stored = String::from_utf8_lossy(&raws.get(id).encode()).into_owned();
            assert!(
                !stored.contains("secret-token-of"),
                "no credential in clear: {stored}"
            );
            let sealed = raws.get(id).payload()["x"]
                .as_str()
                .expect("sealed")
                .to_string();
            assert!(sealed.starts_with("ctx2.") && !sealed.contains("alice"));
        }
        // Someone with write access to Redis moves, swaps, rewrites and strips contexts.
        let bobs_context = raws.get(v.bob).payload()["x"].clone();
        raws.tamper(v.owner_moved, |p| p["u"] = "mallory".into());
        raws.tamper(v.context_pasted, |p| p["x"] = bobs_context);
        raws.tamper(v.args_changed, |p| p["a"] = serde_json::json!({"n": 77}));
        raws.tamper(v.context_stripped, |p| {
            p.as_object_mut().expect("object").remove("x");
        });
    })
    .await;
}
