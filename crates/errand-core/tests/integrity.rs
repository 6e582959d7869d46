//! The store is not trusted with identity: a context altered, moved or stripped in the store
//! fails its attempt (`context_integrity`) and never runs; a context sealed under a key the
//! worker lacks is retried, and runs once a worker holding the key takes it; rotation never
//! fails queued work.
//!
//! A store writer is played by enqueueing records that differ from what the submitter sealed,
//! exactly as an attacker with write access to the store would leave them.

mod common;

use common::*;
use errand_core::*;
use std::sync::Arc;

fn alice() -> Context {
    user("alice")
        .to_builder()
        .credential(Secret::new("alices-token"), None)
        .build()
}

/// A task for `ctx` as the submitter sealed it (not yet stored).
fn sealed_task(ctx: &Context, ring: &SealKeyRing) -> NewTask {
    let args = serde_json::value::to_raw_value(&Observe { sleep_ms: 0 }).expect("args");
    NewTask::new(Observe::NAME, args)
        .with_context(ctx, ring)
        .expect("seal")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_altered_in_the_store_never_run_under_any_identity() {
    let s = setup(Arc::new(MemoryStore::new()));
    let ring: SealKeyRing = s.key.clone().into();
    let bob = sealed_task(&user("bob"), &ring);

    // The owner (what listings and isolation use) moved to another user.
    let mut owner_moved = sealed_task(&alice(), &ring);
    owner_moved.owner = Owner::new("mallory", Some("acme".into()));
    // Bob's sealed context pasted onto a task of alice's.
    let mut pasted = sealed_task(&alice(), &ring);
    pasted.context = bob.context.clone();
    pasted.owner = bob.owner.clone();
    pasted.correlation_id = bob.correlation_id.clone();
    // Other work under alice's sealed identity: arguments and name rewritten.
    let mut args_changed = sealed_task(&alice(), &ring);
    args_changed.args = serde_json::value::to_raw_value(&Observe { sleep_ms: 1 }).expect("args");
    let mut renamed = sealed_task(&alice(), &ring);
    renamed.name = Flaky::NAME.into();
    renamed.args = serde_json::value::to_raw_value(&Flaky { fail_times: 0 }).expect("args");
    // The context stripped while the record still names alice.
    let mut stripped = sealed_task(&alice(), &ring);
    stripped.context = None;
    // One byte of the sealed document flipped.
    let mut flipped = sealed_task(&alice(), &ring);
    let text = flipped
        .context
        .as_ref()
        .expect("sealed")
        .as_str()
        .to_string();
    let at = text.len() - 3;
    let swapped = if &text[at..=at] == "A" { "B" } else { "A" };
    flipped.context = Some(SealedContext::from_stored(format!(
        "{}{swapped}{}",
        &text[..at],
        &text[at + 1..]
    )));
    // The correlation id the record shows, changed.
    let mut recorrelated = sealed_task(&alice(), &ring);
    recorrelated.correlation_id = Some("corr-mallory".into());

    let tampered = [
        owner_moved,
        pasted,
        args_changed,
        renamed,
        stripped,
        flipped,
        recorrelated,
    ];
    let ids: Vec<TaskId> = tampered.iter().map(|t| t.id).collect();
    s.store.enqueue(tampered.to_vec()).await.expect("enqueue");
    let honest = s
        .client
        .submit(Observe { sleep_ms: 0 })
        .context(alice())
        .await
        .expect("submit")
        .id;

    let worker = s.worker(config(4));
    for id in &ids {
        let r = finished(&s.store, *id, LONG).await;
        let err = r.error.expect("an error");
        assert_eq!(
            (r.status, r.attempt, err.kind.as_str(), err.retryable),
            (TaskState::Failed, 1, CONTEXT_INTEGRITY, false),
            "{id}: {}",
            err.message
        );
        assert!(
            err.message.contains("altered") || err.message.contains("integrity"),
            "a clear message: {}",
            err.message
        );
        assert!(
            s.journal.of(*id).is_empty(),
            "the tampered task {id} never ran"
        );
    }
    let r = finished(&s.store, honest, LONG).await;
    assert_eq!(r.status, TaskState::Success);
    let seen = s.journal.entries();
    assert_eq!(seen.len(), 1, "only the honest task ran: {seen:?}");
    assert_eq!(seen[0].cx_user.as_deref(), Some("alice"));
    worker.shutdown(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_worker_lacks_is_retried_until_a_worker_holding_it_runs_the_task() {
    let s = setup(Arc::new(MemoryStore::new()));
    let foreign = SealKey::generate();
    let other = Client::new(s.store.clone(), foreign.clone());
    let id = other
        .submit(Flaky { fail_times: 0 })
        .context(alice())
        .await
        .expect("submit")
        .id;
    let lacking = s.worker(config(1));
    let r = until(&s.store, id, LONG, |r| r.status == TaskState::Retrying).await;
    let err = r.error.expect("error");
    assert_eq!((err.kind.as_str(), err.retryable), (SEAL_KEY_UNKNOWN, true));
    assert!(
        err.message.contains(foreign.id()) && err.message.contains(s.key.id()),
        "the message names both key ids: {}",
        err.message
    );
    assert!(s.journal.of(id).is_empty(), "never ran without its context");
    lacking.shutdown(LONG).await;

    let holding = Worker::new(
        s.store.clone(),
        registry(),
        SealKeyRing::new([s.key.clone(), foreign]).expect("ring"),
    )
    .config(config(1))
    .resource(s.journal.clone())
    .start();
    let r = finished(&s.store, id, LONG).await;
    assert_eq!(r.status, TaskState::Success);
    // The lacking worker spent one attempt, or two when its backoff ended before it stopped.
    assert!((2..=3).contains(&r.attempt), "attempt {}", r.attempt);
    let seen = s.journal.of(id);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].cx_user.as_deref(), Some("alice"));
    holding.shutdown(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_key_never_fails_queued_work() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let journal = Arc::new(Journal::default());
    let (k1, k2) = (SealKey::generate(), SealKey::generate());
    // Queued under k1 by the old deployment.
    let before = Client::new(store.clone(), k1.clone());
    let mut ids = Vec::new();
    for i in 0..20 {
        let ctx = user(&format!("u{i}"))
            .to_builder()
            .credential(Secret::new(format!("tok-{i}")), None)
            .build();
        ids.push(
            before
                .submit(UseCredential)
                .context(ctx)
                .await
                .expect("submit")
                .id,
        );
    }
    // The new deployment: `k2,k1`.
    let ring = SealKeyRing::new([k2.clone(), k1.clone()]).expect("ring");
    let after = Client::new(store.clone(), ring.clone());
    let task = NewTask::new(
        UseCredential::NAME,
        serde_json::value::to_raw_value(&UseCredential).expect("args"),
    )
    .with_context(&user("late"), after.seal_keys())
    .expect("seal");
    assert_eq!(
        task.context.as_ref().and_then(|c| c.key_id()),
        Some(k2.id()),
        "new work is sealed under the new key"
    );
    store.enqueue(vec![task.clone()]).await.expect("enqueue");
    let worker = Worker::new(store.clone(), registry(), ring)
        .config(config(4))
        .resource(journal.clone())
        .start();
    for (i, id) in ids.iter().enumerate() {
        let r = finished(&store, *id, LONG).await;
        assert_eq!(r.status, TaskState::Success, "task {i}: {:?}", r.error);
        assert_eq!(
            r.result.expect("result").get(),
            format!("\"credential:{}\"", format!("tok-{i}").len())
        );
    }
    assert_eq!(
        finished(&store, task.id, LONG).await.status,
        TaskState::Success
    );
    worker.shutdown(LONG).await;
}
