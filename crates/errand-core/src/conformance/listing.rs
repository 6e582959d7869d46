//! The cases about listings and counters: every filter (state, name, queue, creation range,
//! search) and their combinations answer exactly what [`ListQuery::matches`] admits, and
//! [`Store::counts`] and [`Store::queues`] equal counting a full listing after any mix of
//! concurrent transitions.

use super::{C, LEASE, S, actor, args, claim_from, error, ring};
use crate::{
    Completion, Context, ListQuery, NewTask, Outcome, Owner, OwnerFilter, QueueCounts, SealKeyRing,
    StateCounts, StatusUpdate, TaskId, TaskRecord, TaskState,
};
use std::collections::BTreeMap;
use std::time::Duration;

const QUEUES: [&str; 2] = ["default", "other"];
const NAMES: [&str; 2] = ["send", "index"];

fn owner(user: &str) -> Owner {
    Owner::new(user, Some("acme".into()))
}

/// Task `i` of `user`: its name, queue and correlation id cycle, its request id is its own.
fn task(user: &str, i: usize, key: &SealKeyRing) -> NewTask {
    let cx = Context::builder()
        .user_id(user)
        .tenant("acme")
        .correlation_id(format!("corr-{user}-{}", i % 3))
        .request_id(format!("req-{user}-{i}"))
        .build();
    let mut t = NewTask::new(NAMES[i % 2], args(serde_json::json!({ "i": i })));
    t.queue = QUEUES[(i / 2) % 2].into();
    t.with_context(&cx, key).expect("context seals")
}

/// Every page of `query`, `limit` at a time, checking that pages do not overlap.
async fn all_pages(store: &S, query: &ListQuery, limit: usize) -> Vec<TaskRecord> {
    let mut q = query.clone();
    q.limit = limit;
    let mut out: Vec<TaskRecord> = Vec::new();
    for _ in 0..10_000 {
        let page = store.list(&q).await.expect("list");
        assert!(page.items.len() <= limit, "a page holds at most its limit");
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
    panic!("the listing never ended");
}

/// Everything `owner` may list, newest first, by the unfiltered listing.
async fn everything(store: &S, owner: &OwnerFilter) -> Vec<TaskRecord> {
    all_pages(store, &ListQuery::owner(owner.clone()), 1000).await
}

fn ids(records: &[TaskRecord]) -> Vec<TaskId> {
    records.iter().map(|r| r.id).collect()
}

/// The listing of `query` equals the full listing filtered by `query.matches`.
async fn answers_exactly(store: &S, query: &ListQuery, what: &str) {
    let expected: Vec<TaskId> = everything(store, &query.owner)
        .await
        .into_iter()
        .filter(|r| query.matches(r))
        .map(|r| r.id)
        .collect();
    let got = ids(&all_pages(store, query, 3).await);
    assert_eq!(got, expected, "{what}: {query:?}");
}

/// Each filter alone and combined, for one owner and for everyone, with paging.
pub async fn every_filter_answers_what_matches_admits(store: S, _clock: C) {
    let key = ring();
    let mut made: BTreeMap<&str, Vec<TaskId>> = BTreeMap::new();
    for user in ["alice", "bob"] {
        let tasks: Vec<NewTask> = (0..12).map(|i| task(user, i, &key)).collect();
        let done = store.enqueue(tasks).await.expect("enqueue");
        made.insert(user, done.iter().map(|e| e.id).collect());
    }
    // Some run and end each way, one waiting task is cancelled.
    let claimed = claim_from(&store, &QUEUES, 10).await;
    let outcomes = claimed.iter().enumerate().map(|(i, c)| Completion {
        lease: c.lease,
        outcome: match i % 3 {
            0 => Outcome::Success(args(serde_json::json!(i))),
            1 => Outcome::Failed(error("boom", false)),
            _ => Outcome::Retry {
                error: error("flaky", true),
                delay: Duration::from_secs(60),
            },
        },
        report: StatusUpdate::default(),
    });
    store.complete(outcomes.collect()).await.expect("complete");
    let _ = claim_from(&store, &QUEUES, 2).await;
    let waiting = made["alice"][11];
    store.cancel(waiting, &actor()).await.expect("cancel");

    let alice = OwnerFilter::Owner(owner("alice"));
    let created = |i: usize| {
        let id = made["alice"][i];
        chrono::DateTime::from_timestamp_millis(id.created_ms()).expect("time")
    };
    for who in [alice.clone(), OwnerFilter::Any] {
        let base = ListQuery::owner(who.clone());
        let mut queries = Vec::new();
        for s in TaskState::ALL {
            queries.push(ListQuery {
                status: Some(s),
                ..base.clone()
            });
        }
        for n in NAMES {
            queries.push(ListQuery {
                name: Some(n.into()),
                ..base.clone()
            });
            queries.push(ListQuery {
                name: Some(n.into()),
                status: Some(TaskState::Pending),
                ..base.clone()
            });
        }
        for q in QUEUES {
            queries.push(ListQuery {
                queue: Some(q.into()),
                ..base.clone()
            });
            queries.push(ListQuery {
                queue: Some(q.into()),
                name: Some(NAMES[0].into()),
                status: Some(TaskState::Success),
                ..base.clone()
            });
        }
        for search in [
            "corr-alice-1".to_string(),
            "req-alice-4".into(),
            "corr-bob-2".into(),
            made["bob"][3].to_string(),
            made["alice"][5].to_string().to_uppercase(),
            "nothing-like-it".into(),
        ] {
            queries.push(ListQuery {
                search: Some(search.clone()),
                ..base.clone()
            });
            queries.push(ListQuery {
                search: Some(search),
                status: Some(TaskState::Pending),
                ..base.clone()
            });
        }
        queries.push(ListQuery {
            created_after: Some(created(3)),
            created_before: Some(created(9)),
            ..base.clone()
        });
        queries.push(ListQuery {
            created_after: Some(created(2)),
            status: Some(TaskState::Pending),
            queue: Some(QUEUES[1].into()),
            ..base.clone()
        });
        queries.push(ListQuery {
            created_after: Some(created(9)),
            created_before: Some(created(3)),
            ..base.clone()
        });
        for q in &queries {
            answers_exactly(&store, q, "a filtered listing").await;
        }
    }
    // Nothing of bob's reaches alice, whichever filter or search finds it.
    for search in ["corr-bob-1", "req-bob-2"]
        .map(String::from)
        .into_iter()
        .chain([made["bob"][0].to_string()])
    {
        let q = ListQuery {
            search: Some(search),
            ..ListQuery::owner(alice.clone())
        };
        assert!(all_pages(&store, &q, 50).await.is_empty(), "{q:?}");
    }
    let mut mine = made["alice"].clone();
    mine.sort_unstable_by_key(|id| std::cmp::Reverse(*id));
    assert_eq!(ids(&everything(&store, &alice).await), mine);
}

/// The counts of `who` equal counting its full listing, and the queues' lines counting
/// everyone's listing per queue.
async fn counts_agree(store: &S, who: &[OwnerFilter], when: &str) {
    for o in who {
        let listed = StateCounts::of(&everything(store, o).await);
        let counted = store.counts(o).await.expect("counts");
        assert_eq!(counted, listed, "{when}: counts of {o:?}");
    }
    let all = everything(store, &OwnerFilter::Any).await;
    let mut per_queue: BTreeMap<String, Vec<TaskRecord>> = BTreeMap::new();
    for r in all {
        per_queue.entry(r.queue.clone()).or_default().push(r);
    }
    let busy = |q: &QueueCounts| q.waiting + q.running + q.failed > 0;
    let expected: Vec<QueueCounts> = per_queue
        .iter()
        .map(|(q, rs)| QueueCounts::from_counts(q.clone(), &StateCounts::of(rs)))
        .filter(busy)
        .collect();
    // A queue with nothing waiting, running or failed may or may not have a line.
    let mut got = store.queues().await.expect("queues");
    got.retain(busy);
    assert_eq!(got, expected, "{when}: queues");
}

/// One user's share of the concurrent run: enqueue, claim from both queues (anyone's tasks),
/// end each claim a different way, cancel waiting and running tasks, retry failed ones.
async fn churn(store: S, user: String, key: SealKeyRing) {
    for round in 0..6 {
        let mut batch: Vec<NewTask> = (0..8).map(|i| task(&user, round * 8 + i, &key)).collect();
        batch[1].delay = Some(Duration::from_secs(3600));
        let mine: Vec<TaskId> = store
            .enqueue(batch)
            .await
            .expect("enqueue")
            .iter()
            .map(|e| e.id)
            .collect();
        let claimed = claim_from(&store, &QUEUES, 5).await;
        let completions = claimed
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 5 != 4) // one in five is left to the reaper
            .map(|(i, c)| Completion {
                lease: c.lease,
                outcome: match (i + round) % 5 {
                    0 => Outcome::Success(args(serde_json::json!(null))),
                    1 => Outcome::Failed(error("boom", false)),
                    2 => Outcome::Retry {
                        error: error("flaky", true),
                        delay: Duration::from_secs(5),
                    },
                    3 => Outcome::Released,
                    _ => Outcome::Cancelled,
                },
                report: StatusUpdate::default(),
            })
            .collect();
        if let Some(c) = claimed.get(1) {
            store.cancel(c.lease.id, &actor()).await.expect("cancel");
        }
        store.complete(completions).await.expect("complete");
        store.cancel(mine[0], &actor()).await.expect("cancel");
        store.cancel(mine[7], &actor()).await.expect("cancel");
        store.retry(mine[0], &actor()).await.expect("retry");
        // Every other round, the claims ended earlier are retried by hand (those that may).
        if round % 2 == 0 {
            for c in &claimed {
                store.retry(c.lease.id, &actor()).await.expect("retry");
            }
        }
        store.reap().await.expect("reap");
    }
}

/// Counters stay exact while several users enqueue, claim, complete, cancel, retry, reap and
/// purge at once, and after time moves leases, retries and expiry along.
pub async fn counts_stay_exact_under_concurrency(store: S, clock: C) {
    const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
    let key = ring();
    let runs: Vec<_> = USERS
        .iter()
        .map(|u| tokio::spawn(churn(store.clone(), u.to_string(), key.clone())))
        .collect();
    for run in runs {
        run.await.expect("a user's run");
    }
    let who: Vec<OwnerFilter> = USERS
        .iter()
        .map(|u| OwnerFilter::Owner(owner(u)))
        .chain([OwnerFilter::Any, OwnerFilter::Owner(owner("nobody"))])
        .collect();
    counts_agree(&store, &who, "after the concurrent run").await;
    let total = store.counts(&OwnerFilter::Any).await.expect("counts");
    assert!(total.total() > 0 && total.success > 0 && total.failed > 0);

    // Lapsed leases are reaped; due retries run and succeed.
    clock.advance(LEASE + Duration::from_secs(10));
    store.reap().await.expect("reap");
    loop {
        let claimed = claim_from(&store, &QUEUES, 50).await;
        if claimed.is_empty() {
            break;
        }
        let done = claimed.iter().map(|c| Completion {
            lease: c.lease,
            outcome: Outcome::Success(args(serde_json::json!(1))),
            report: StatusUpdate::default(),
        });
        store.complete(done.collect()).await.expect("complete");
    }
    counts_agree(&store, &who, "after reaping and draining").await;

    // Expired records are purged, and leave the counters.
    clock.advance(Duration::from_secs(25 * 3600));
    while store.purge_expired().await.expect("purge") > 0 {}
    counts_agree(&store, &who, "after the purge").await;
    let left = store.counts(&OwnerFilter::Any).await.expect("counts");
    assert_eq!(left.success + left.failed + left.cancelled, 0, "{left:?}");
    assert!(
        left.scheduled > 0,
        "delayed tasks are still waiting: {left:?}"
    );
}
