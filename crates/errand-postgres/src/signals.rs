//! Wake-ups, cancellations and status changes, within the process and across processes.
//!
//! A write records its [`Effects`]; [`Effects::notify`] sends them with `NOTIFY` inside the
//! write's transaction (so they are heard only if it commits: one notification per batch of
//! up to [`IDS_PER_PAYLOAD`] ids, not one per task), and [`Signals::apply`] delivers them in
//! this process once it committed. The [`listen`] task hears the other processes' (and other
//! transactions', such as [`crate::SubmitInTx::in_tx`]'s) notifications and delivers them here:
//! work wakes idle workers, cancellations reach `Store::cancellations`, and a status change
//! makes the task's watchers re-read its record.

use crate::error::Result;
use crate::sql::Sql;
use errand_core::TaskId;
use errand_core::events::{CancelBus, Watchers, WorkNotifier};
use sqlx_core::query::query;
use sqlx_postgres::{PgConnection, PgListener, PgPool};
use std::sync::Arc;
use std::time::Duration;

/// The most ids one notification carries (a payload must stay under 8,000 bytes).
pub(crate) const IDS_PER_PAYLOAD: usize = 200;

/// Who sent a notification: a store instance's random id, or [`FOREIGN`].
pub(crate) type Origin = String;

/// The origin of notifications every store instance acts on, the sender's own included:
/// those sent from a caller's transaction ([`crate::SubmitInTx::in_tx`]), which no instance can
/// deliver in-process since it does not see the commit.
pub(crate) const FOREIGN: &str = "-";

/// What a committed write changed, for whoever waits on it.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Work may be claimable.
    pub(crate) work: bool,
    /// Running tasks whose cancellation was requested.
    pub(crate) cancels: Vec<TaskId>,
    /// Tasks whose record changed.
    pub(crate) changed: Vec<TaskId>,
}

impl Effects {
    /// The payloads of wake-ups and cancellations: `w<origin>:` and `c<origin>:<ids>`, ids
    /// comma-separated, at most [`IDS_PER_PAYLOAD`] a payload. (Changes, `s<origin>:<ids>`,
    /// are announced by `sql/notify_changed.sql`, for watched tasks only.)
    fn payloads(&self, origin: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.work {
            out.push(format!("w{origin}:"));
        }
        for chunk in self.cancels.chunks(IDS_PER_PAYLOAD) {
            let ids: Vec<String> = chunk.iter().map(TaskId::to_string).collect();
            out.push(format!("c{origin}:{}", ids.join(",")));
        }
        out
    }

    /// Sends the effects on `channel` from `origin`, inside the transaction open on `conn`.
    pub(crate) async fn notify(
        &self,
        sql: &Sql,
        conn: &mut PgConnection,
        channel: &str,
        origin: &str,
    ) -> Result<()> {
        let payloads = self.payloads(origin);
        if !payloads.is_empty() {
            query(&sql.notify)
                .bind(channel)
                .bind(payloads)
                .execute(&mut *conn)
                .await?;
        }
        if !self.changed.is_empty() {
            let ids: Vec<uuid::Uuid> = self.changed.iter().map(|id| *id.as_uuid()).collect();
            query(&sql.notify_changed)
                .bind(channel)
                .bind(format!("s{origin}:"))
                .bind(ids)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

/// A notification read back.
#[derive(Debug, PartialEq)]
enum Heard {
    Work,
    Cancels(Vec<TaskId>),
    Changed(Vec<TaskId>),
    /// Sent by this instance: already delivered.
    Own,
}

fn parse(payload: &str, own: &str) -> Option<Heard> {
    let kind = payload.chars().next()?;
    let (origin, rest) = payload.get(1..)?.split_once(':')?;
    if origin == own {
        return Some(Heard::Own);
    }
    let ids = || {
        rest.split(',')
            .filter_map(|id| id.parse().ok())
            .collect::<Vec<TaskId>>()
    };
    match kind {
        'w' => Some(Heard::Work),
        'c' => Some(Heard::Cancels(ids())),
        's' => Some(Heard::Changed(ids())),
        _ => None,
    }
}

/// What this process waits on.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    /// Watchers of task records.
    pub(crate) watchers: Arc<Watchers>,
    /// Listeners for cancellations.
    pub(crate) cancels: CancelBus,
    /// Idle workers.
    pub(crate) work: WorkNotifier,
}

impl Signals {
    /// Delivers committed effects in this process; returns the changed tasks somebody here
    /// watches (their records are to be re-read and published).
    pub(crate) fn apply(&self, effects: Effects) -> Vec<TaskId> {
        if effects.work {
            self.work.notify();
        }
        for id in effects.cancels {
            self.cancels.send(id);
        }
        effects
            .changed
            .into_iter()
            .filter(|id| self.watchers.is_watched(*id))
            .collect()
    }
}

/// Something that re-reads records for watchers.
pub(crate) trait Republish: Send + Sync + 'static {
    /// Reads `ids`' records and publishes them to their watchers.
    fn republish(&self, ids: Vec<TaskId>) -> impl Future<Output = ()> + Send;
}

/// Listens on `channel` until the task is aborted, reconnecting after failures; delivers what
/// other senders notified to `signals`. Every (re)connection wakes idle workers, since
/// notifications sent while it was down are lost.
pub(crate) async fn listen<R: Republish>(
    pool: PgPool,
    channel: String,
    own: Origin,
    signals: Arc<Signals>,
    reader: R,
) {
    loop {
        if let Err(e) = listen_once(&pool, &channel, &own, &signals, &reader).await {
            tracing::warn!(error = %e, "postgres listener failed; reconnecting in 1 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen_once<R: Republish>(
    pool: &PgPool,
    channel: &str,
    own: &str,
    signals: &Signals,
    reader: &R,
) -> Result<()> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    loop {
        // Notifications sent while not listening are lost: look for work now.
        signals.work.notify();
        // `None`: the connection dropped, and the next call reconnects.
        while let Some(n) = listener.try_recv().await? {
            match parse(n.payload(), own) {
                Some(Heard::Work) => signals.work.notify(),
                Some(Heard::Cancels(ids)) => {
                    ids.into_iter().for_each(|id| signals.cancels.send(id))
                }
                Some(Heard::Changed(changed)) => {
                    let watched = signals.apply(Effects {
                        changed,
                        ..Effects::default()
                    });
                    if !watched.is_empty() {
                        reader.republish(watched).await;
                    }
                }
                Some(Heard::Own) | None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_own_ones_are_skipped() {
        let ids: Vec<TaskId> = (0..IDS_PER_PAYLOAD + 1).map(|_| TaskId::new()).collect();
        let effects = Effects {
            work: true,
            cancels: ids.clone(),
            changed: ids.clone(),
        };
        let payloads = effects.payloads("abc");
        assert_eq!(payloads.len(), 3, "work and two chunks of cancellations");
        assert!(payloads.iter().all(|p| p.len() < 8000));
        assert_eq!(parse(&payloads[0], "other"), Some(Heard::Work));
        let mut heard = Vec::new();
        for p in &payloads[1..] {
            match parse(p, "other") {
                Some(Heard::Cancels(got)) => heard.extend(got),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(heard, ids);
        let changed = format!("sabc:{},{}", ids[0], ids[1]);
        assert_eq!(
            parse(&changed, "x"),
            Some(Heard::Changed(ids[..2].to_vec()))
        );
        assert_eq!(parse(&payloads[0], "abc"), Some(Heard::Own));
        assert_eq!(parse("", "abc"), None);
        assert_eq!(parse("x-:", "abc"), None);
    }
}
