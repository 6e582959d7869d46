//! Isolation through the real binary: users of one tenant, the same user id in other tenants
//! and in none, and an admin, each with tasks, documents and conversations. Nobody sees or touches anybody
//! else's work (get, events, list, cancel, retry, search, conversations, idempotency keys);
//! the admin lists everyone's tasks.

mod common;

use common::{Api, Serve, tempdir};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;

/// One user's work.
struct Owned {
    label: &'static str,
    api: Api,
    /// The marker word of the user's document (only their search may find it).
    marker: String,
    document: String,
    conversation: String,
    /// A failed task (retryable by its owner).
    failed: String,
    /// A task scheduled far ahead (cancellable by its owner), submitted with key `same-key`.
    scheduled: String,
}

impl Owned {
    fn ids(&self) -> [&str; 4] {
        [
            &self.document,
            &self.conversation,
            &self.failed,
            &self.scheduled,
        ]
    }
}

/// Submits one of each kind of work as `api`, and waits for what can finish.
async fn work(label: &'static str, api: Api) -> Owned {
    let marker = format!("marker{label}");
    let document = api
        .ingest(
            &format!("{label}'s notes"),
            &format!("Private notes of {label}.\n\nThe secret word is {marker}."),
        )
        .await;
    let conversation = api
        .persist(
            &format!("session-{label}"),
            &[
                ("user", &format!("hello from {label}")),
                ("assistant", "hi"),
            ],
        )
        .await;
    let shared = api
        .persist("shared-session", &[("user", &format!("{label} was here"))])
        .await;
    let failed = api.ingest("empty", "").await;
    let scheduled = api
        .submit_with(
            "ingest_document",
            json!({"title": "later", "content": format!("{label} later")}),
            json!({"delay_s": 3600, "key": "same-key"}),
        )
        .await;
    assert_eq!(scheduled["deduplicated"], false, "{label}: {scheduled}");
    for id in [&document, &conversation, &shared] {
        assert_eq!(api.wait_done(id).await["status"], "success", "{label}");
    }
    assert_eq!(api.wait_done(&failed).await["status"], "failed");
    Owned {
        label,
        api,
        marker,
        document,
        conversation,
        failed,
        scheduled: scheduled["id"].as_str().expect("id").to_string(),
    }
}

/// Every task id `api` can list.
async fn listed(api: &Api) -> HashSet<String> {
    let (status, page) = api.get("/v1/tasks?limit=1000").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

#[track_caller]
fn not_found(answer: (StatusCode, Value), what: &str) {
    assert_eq!(answer.0, StatusCode::NOT_FOUND, "{what}: {}", answer.1);
    assert_eq!(answer.1["error"]["code"], "not_found", "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_tenants_and_admins_see_exactly_what_is_theirs() {
    let dir = tempdir();
    let server = Serve::start(dir.path(), &[]);
    // The same user id in another tenant, with no tenant, and in a tenant named like the
    // directory of users without one.
    let (alice, bob, alice_elsewhere, alice_alone, alice_underscore, admin) = tokio::join!(
        server.user("alice", Some("acme")),
        server.user("bob", Some("acme")),
        server.user("alice", Some("globex")),
        server.user("alice", None),
        server.user("alice", Some("_")),
        server.admin("root"),
    );
    let (a, b, c, d, e) = tokio::join!(
        work("alice", alice),
        work("bob", bob),
        work("globexalice", alice_elsewhere),
        work("plainalice", alice_alone),
        work("underscorealice", alice_underscore),
    );
    let everyone = [&a, &b, &c, &d, &e];

    for owner in everyone {
        // The owner sees all of their own work.
        let mine = listed(&owner.api).await;
        for id in owner.ids() {
            assert!(mine.contains(id), "{} lists their task {id}", owner.label);
        }
        let (status, found) = owner
            .api
            .get(&format!("/v1/search?q={}", owner.marker))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            found["results"].as_array().map(Vec::len),
            Some(1),
            "{found}"
        );
        assert_eq!(found["results"][0]["task_id"], owner.document.as_str());
        let (status, shared) = owner.api.get("/v1/conversations/shared-session").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            shared["messages"],
            json!([{"seq": 1, "role": "user", "content": format!("{} was here", owner.label),
                    "stored_at": shared["messages"][0]["stored_at"]}]),
            "a session id shared by name is still each user's own"
        );

        for intruder in everyone.iter().filter(|o| o.label != owner.label) {
            let who = format!("{} looking at {}'s work", intruder.label, owner.label);
            let api = &intruder.api;
            for id in owner.ids() {
                not_found(api.get(&format!("/v1/tasks/{id}")).await, &who);
                not_found(api.get(&format!("/v1/tasks/{id}/events")).await, &who);
            }
            not_found(
                api.post_empty(&format!("/v1/tasks/{}/cancel", owner.scheduled))
                    .await,
                &who,
            );
            not_found(
                api.post_empty(&format!("/v1/tasks/{}/retry", owner.failed))
                    .await,
                &who,
            );
            let theirs = listed(api).await;
            for id in owner.ids() {
                assert!(!theirs.contains(id), "{who}: listed {id}");
            }
            let (status, found) = api.get(&format!("/v1/search?q={}", owner.marker)).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(found["results"], json!([]), "{who}");
            not_found(
                api.get(&format!("/v1/conversations/session-{}", owner.label))
                    .await,
                &who,
            );
        }
    }

    // The intruders' attempts changed nothing: the owner's tasks are as they were.
    for owner in everyone {
        assert_eq!(
            owner.api.record(&owner.scheduled).await["status"],
            "scheduled"
        );
        let failed = owner.api.record(&owner.failed).await;
        assert_eq!(
            (failed["status"].as_str(), failed["attempt"].as_u64()),
            (Some("failed"), Some(1))
        );
    }

    // The admin lists and reads everyone's tasks, with their owners.
    let all = listed(&admin).await;
    for owner in everyone {
        for id in owner.ids() {
            assert!(all.contains(id), "the admin lists {}'s {id}", owner.label);
        }
    }
    let record = admin.record(&c.document).await;
    assert_eq!(
        record["owner"],
        json!({"user_id": "alice", "tenant": "globex"})
    );
    assert_eq!(
        a.api.record(&a.document).await["owner"],
        json!({"user_id": "alice", "tenant": "acme"})
    );

    // The owners can do what the intruders could not.
    for owner in everyone {
        let (status, body) = owner
            .api
            .post_empty(&format!("/v1/tasks/{}/cancel", owner.scheduled))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["status"], "cancelled");
        let (status, body) = owner
            .api
            .post_empty(&format!("/v1/tasks/{}/retry", owner.failed))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
}
