//! What errand logs for every task (attributed to its user), and that a credential shows up
//! nowhere: logs, `Debug`, status records, events.
//!
//! Each test runs on a current-thread runtime so a thread-local subscriber sees every task.

mod common;

use common::*;
use errand_core::*;
use futures::StreamExt;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Collects formatted log output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn lifecycle_is_logged_with_each_tasks_user() {
    let (logs, _guard) = capture();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let key = SealKey::generate();
    let client = Client::new(store.clone(), key.clone());
    let journal = Arc::new(Journal::default());
    let worker = Worker::new(store.clone(), registry(), key)
        .config(config(16))
        .resource(journal)
        .start();
    let mut ids = Vec::new();
    for i in 0..60 {
        let name = format!("logger-{i:02}");
        let sub = if i % 3 == 0 {
            client
                .submit(Pipeline {
                    fail_at: Some("index".into()),
                })
                .context(user(&name))
                .await
        } else {
            client
                .submit(Observe {
                    sleep_ms: (i % 7) as u64,
                })
                .context(user(&name))
                .await
        };
        ids.push((i, name, sub.expect("submit").id));
    }
    for (_, _, id) in &ids {
        finished(&store, *id, LONG).await;
    }
    worker.shutdown(LONG).await;
    let text = logs.text();
    for (i, name, id) in &ids {
        let mine: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(&format!("task_id={id}")))
            .collect();
        let attributed = |what: &str| {
            mine.iter()
                .any(|l| l.contains(what) && l.contains(&format!("user_id={name}")))
        };
        assert!(
            attributed("task started"),
            "no start line for {name}:\n{mine:#?}"
        );
        if i % 3 == 0 {
            assert!(
                attributed("task failed"),
                "no failure line for {name}:\n{mine:#?}"
            );
        } else {
            assert!(
                attributed("task succeeded"),
                "no success line for {name}:\n{mine:#?}"
            );
        }
        // Every line about this task carries its own user, and nobody else's.
        for l in &mine {
            assert!(l.contains(&format!("user_id={name}")), "misattributed: {l}");
        }
    }
}

#[tokio::test]
async fn the_credential_appears_nowhere() {
    const SECRET: &str = "SUPER-SECRET-0xC0FFEE";
    let (logs, _guard) = capture();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let key = SealKey::generate();
    let client = Client::new(store.clone(), key.clone());
    let worker = Worker::new(store.clone(), registry(), key.clone())
        .config(config(4))
        .resource(Arc::new(Journal::default()))
        .start();
    let ctx = user("sam")
        .to_builder()
        .credential(Secret::new(SECRET), None)
        .header("x-client", "cli")
        .build();
    tracing::info!(?ctx, "a service logging its context by mistake");
    let mut dumps = vec![format!("{ctx:?}"), format!("{:?}", ctx.credential())];

    let ok = client
        .submit(UseCredential)
        .context(ctx.clone())
        .await
        .expect("submit")
        .id;
    let bad = client
        .submit(Pipeline {
            fail_at: Some("chunk".into()),
        })
        .context(ctx.clone())
        .await
        .expect("submit")
        .id;
    let mut events = store.watch(bad).await.expect("watch");
    for id in [ok, bad] {
        let r = finished(&store, id, LONG).await;
        dumps.push(serde_json::to_string(&r).expect("json"));
        dumps.push(format!("{r:?}"));
    }
    while let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(100), events.next()).await {
        dumps.push(serde_json::to_string(&r).expect("json"));
    }
    let task = NewTask::new("x", serde_json::value::RawValue::NULL.to_owned())
        .with_context(&ctx, &key.clone().into())
        .expect("seal");
    let sealed = task.context.clone().expect("sealed");
    dumps.push(sealed.as_str().to_string());
    dumps.push(format!("{sealed:?}"));
    dumps.push(format!("{task:?}"));
    worker.shutdown(LONG).await;
    dumps.push(logs.text());

    assert!(
        logs.text().contains("user_id=sam"),
        "the logs were captured"
    );
    for d in &dumps {
        assert!(!d.contains(SECRET), "the credential leaked into: {d}");
    }
    let r = store.get(ok).await.expect("get").expect("rec");
    assert_eq!(
        r.result.expect("result").get(),
        format!("\"credential:{}\"", SECRET.len()),
        "while the task itself did receive it"
    );
}

#[tokio::test]
async fn a_managed_tasks_panic_is_logged_with_its_user() {
    let (logs, _guard) = capture();
    let manager = Manager::new(ManagerConfig::default());
    let handle = user("paula")
        .scope(async {
            manager.task("publish_event").spawn(async {
                if true {
                    panic!("publisher exploded");
                }
            })
        })
        .await
        .expect("spawn");
    assert!(matches!(handle.wait().await, TaskEnd::Panicked(_)));
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("background task panicked"))
        .unwrap_or_else(|| panic!("no panic line in:\n{text}"));
    assert!(line.contains("user_id=paula"), "{line}");
    assert!(line.contains("publisher exploded"), "{line}");
    assert!(line.contains("task=publish_event"), "{line}");
}
