//! [`tampered_contexts_never_run`]: the scenario every store's "edited in the store" test
//! plays, with the editing done by the store's own test (SQL on the file, commands on Redis).

use crate::{
    CONTEXT_INTEGRITY, Client, Context, Registry, SealKey, Secret, Store, Task, TaskCx, TaskError,
    TaskId, TaskRecord, TaskState, Worker, WorkerConfig,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The tasks a store test edits: four of alice's, each to be tampered with one way, and one of
/// bob's whose sealed context may be pasted onto one of alice's.
#[derive(Debug, Clone, Copy)]
pub struct Victims {
    /// Move to another owner (the record's user).
    pub owner_moved: TaskId,
    /// Gets bob's sealed context.
    pub context_pasted: TaskId,
    /// Gets other arguments.
    pub args_changed: TaskId,
    /// Loses its context (the owner stays).
    pub context_stripped: TaskId,
    /// Bob's task, left alone: it runs, as bob.
    pub bob: TaskId,
}

/// Records who it ran for.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Tamperable {
    n: u32,
}

#[derive(Default)]
struct Ran(Mutex<Vec<(TaskId, Option<String>)>>);

impl Task for Tamperable {
    const NAME: &'static str = "conformance.tamperable";
    type Output = ();
    async fn run(self, cx: TaskCx) -> Result<(), TaskError> {
        cx.resource::<Ran>()?
            .0
            .lock()
            .map_err(|_| TaskError::fatal("poisoned"))?
            .push((cx.id(), cx.user_id().map(String::from)));
        Ok(())
    }
}

fn person(user: &str) -> Context {
    Context::builder()
        .user_id(user)
        .tenant("acme")
        .correlation_id(format!("corr-{user}"))
        .credential(Secret::new(format!("secret-token-of-{user}")), None)
        .build()
}

async fn finished(store: &dyn Store, id: TaskId) -> TaskRecord {
    for _ in 0..1_000 {
        let r = store.get(id).await.expect("get").expect("the task exists");
        if r.status.is_terminal() {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("task {id} did not finish within 10 s");
}

/// Submits the [`Victims`] (the credentials are `secret-token-of-<user>`), lets `tamper` edit
/// them in the store as an attacker with write access would, then runs a worker: each edited
/// task must fail its only attempt as `context_integrity` without running, and bob's must run
/// as bob.
pub async fn tampered_contexts_never_run<F, Fut>(store: Arc<dyn Store>, tamper: F)
where
    F: FnOnce(Victims) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let key = SealKey::generate();
    let client = Client::new(store.clone(), key.clone());
    let mut alices = Vec::new();
    for n in 0..4 {
        let submitted = client.submit(Tamperable { n }).context(person("alice"));
        alices.push(submitted.await.expect("submit").id);
    }
    let bob = client
        .submit(Tamperable { n: 9 })
        .context(person("bob"))
        .await
        .expect("submit")
        .id;
    let victims = Victims {
        owner_moved: alices[0],
        context_pasted: alices[1],
        args_changed: alices[2],
        context_stripped: alices[3],
        bob,
    };
    tamper(victims).await;

    let ran = Arc::new(Ran::default());
    let mut registry = Registry::new();
    registry.register::<Tamperable>().expect("register");
    let worker = Worker::new(store.clone(), Arc::new(registry), key)
        .config(WorkerConfig {
            concurrency: 4,
            claim_batch: 4,
            ..WorkerConfig::default()
        })
        .resource(ran.clone())
        .start();
    for id in &alices {
        let r = finished(&*store, *id).await;
        let err = r.error.expect("an error");
        assert_eq!(
            (r.status, err.kind.as_str(), err.retryable),
            (TaskState::Failed, CONTEXT_INTEGRITY, false),
            "{id}: {}",
            err.message
        );
    }
    assert_eq!(finished(&*store, bob).await.status, TaskState::Success);
    worker.shutdown(Duration::from_secs(5)).await;
    let ran = ran.0.lock().expect("lock").clone();
    assert_eq!(
        ran,
        [(bob, Some("bob".to_string()))],
        "only bob's task ran, as bob"
    );
}
