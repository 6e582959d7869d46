//! The complete loop: finished attempts written to the store in batches, through outages, and
//! for one more lease at most once the worker stops.

use super::attempt::Done;
use super::claim::{claim_request, start_claimed};
use super::shared::{Outage, Shared};
use crate::store::{CompleteResult, Completion};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

/// The most writes with claims ([`write_and_claim`]) one worker has in flight: while the store
/// runs one, the next batch gathers and goes out, so a database can work on two at once.
const WRITES_IN_FLIGHT: usize = 2;

/// Finished attempts and their slots, as a batch to write.
type Batch = (Vec<Completion>, Vec<OwnedSemaphorePermit>);

pub(crate) async fn complete_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Done>,
    stop: CancellationToken,
) {
    // Pauses stay well under a lease, so results are written soon after the store is back.
    let mut outage = Outage::new("complete", shared.config.lease / 3);
    let mut batch: Vec<Done> = Vec::with_capacity(256);
    let mut give_up: Option<tokio::time::Instant> = None;
    // Writes with claims under way; each gives its batch back if it failed.
    let mut in_flight: JoinSet<Option<Batch>> = JoinSet::new();
    let combined = shared.store.claims_with_completions();
    loop {
        tokio::select! {
            biased;
            Some(joined) = in_flight.join_next() => {
                let failed = joined.unwrap_or_else(|e| {
                    error!(error = %e, "a write of completions panicked; their leases will lapse");
                    None
                });
                match failed {
                    Some(batch) => write_alone(&shared, batch, &stop, &mut give_up, &mut outage).await,
                    None => outage.ok(),
                }
                continue;
            }
            n = rx.recv_many(&mut batch, 256), if in_flight.len() < WRITES_IN_FLIGHT => if n == 0 { break },
            _ = stop.cancelled(), if give_up.is_none() => {
                // Shutting down: every attempt has ended, so what is queued is all there is.
                give_up = Some(shutdown_deadline(&shared));
                while let Ok(d) = rx.try_recv() {
                    batch.push(d);
                }
            }
        }
        if batch.is_empty() {
            break;
        }
        let written: Batch = batch.drain(..).map(|d| (d.completion, d.permit)).unzip();
        if combined && give_up.is_none() && !stop.is_cancelled() {
            in_flight.spawn(write_and_claim(shared.clone(), written));
            continue;
        }
        write_alone(&shared, written, &stop, &mut give_up, &mut outage).await;
        if give_up.is_some() && rx.is_empty() {
            break;
        }
    }
    while let Some(joined) = in_flight.join_next().await {
        if let Ok(Some(batch)) = joined {
            write_alone(&shared, batch, &stop, &mut give_up, &mut outage).await;
        }
    }
}

/// Writes a batch with [`write_completions`]; then its leases and slots are free.
async fn write_alone(
    shared: &Shared,
    (completions, permits): Batch,
    stop: &CancellationToken,
    give_up: &mut Option<tokio::time::Instant>,
    outage: &mut Outage,
) {
    write_completions(shared, &completions, stop, give_up, outage).await;
    shared.forget(completions.iter().map(|c| c.lease));
    drop(permits);
}

/// Writes finished attempts and, in the same atomic step, claims as many tasks as they free
/// slots (up to a claim batch), which run at once in those slots, unless the worker stopped
/// claiming. On an error nothing was written or claimed, and the batch is given back for
/// [`write_completions`] to retry.
async fn write_and_claim(shared: Arc<Shared>, (completions, permits): Batch) -> Option<Batch> {
    let open = shared.claims_open.read().await;
    // Tasks handed back at a shutdown must not be claimed again in their slots.
    let want = if *open && !shared.stopping.is_cancelled() {
        permits.len().min(shared.config.claim_batch.max(1))
    } else {
        0
    };
    let request = claim_request(&shared.config, want);
    match shared
        .store
        .complete_and_claim(completions.clone(), &request)
        .await
    {
        Ok((results, claimed)) => {
            note_results(&shared, &completions, results);
            shared.forget(completions.iter().map(|c| c.lease));
            start_claimed(&shared, claimed, permits).await;
            None
        }
        Err(e) => {
            debug!(error = %e, "writing completions with a claim failed; writing them alone");
            Some((completions, permits))
        }
    }
}

/// Tells the store's answers to whoever listens, and logs the completions it rejected.
fn note_results(shared: &Shared, completions: &[Completion], results: Vec<CompleteResult>) {
    for (c, r) in completions.iter().zip(results) {
        if let Some(written) = &shared.written {
            written(c.lease, r);
        }
        if r == CompleteResult::Stale {
            warn!(task_id = %c.lease.id, "completion rejected: the lease was lost to a newer attempt");
        }
    }
}

/// How long a stopping worker keeps trying to write results: one lease, after which the leases
/// lapse anyway.
pub(crate) fn shutdown_deadline(shared: &Shared) -> tokio::time::Instant {
    tokio::time::Instant::now() + shared.config.lease
}

/// Writes finished attempts. While the worker runs, a store that cannot be reached is retried
/// until it answers (if a lease lapses meanwhile, the store rejects that completion as stale and
/// the newer attempt wins); once it stops, for one more lease at most. A completion the store
/// refuses for good (not an outage) is written alone, so it cannot hold up the others, and
/// given up on: its lease lapses and the task runs again.
pub(crate) async fn write_completions(
    shared: &Shared,
    completions: &[Completion],
    stop: &CancellationToken,
    give_up: &mut Option<tokio::time::Instant>,
    outage: &mut Outage,
) {
    loop {
        let error = match shared.store.complete(completions.to_vec()).await {
            Ok(results) => {
                outage.ok();
                note_results(shared, completions, results);
                return;
            }
            Err(e) => e,
        };
        if !error.is_unavailable() {
            for c in completions {
                if let Err(e) = shared.store.complete(vec![c.clone()]).await {
                    error!(
                        task_id = %c.lease.id,
                        error = %e,
                        "the store refused this attempt's result; its lease will lapse and the task run again"
                    );
                }
            }
            return;
        }
        if stop.is_cancelled() && give_up.is_none() {
            *give_up = Some(shutdown_deadline(shared));
        }
        if give_up.is_some_and(|at| tokio::time::Instant::now() >= at) {
            error!(
                error = %error,
                tasks = completions.len(),
                "stopping without writing these results; their leases will lapse and the tasks run again"
            );
            return;
        }
        // A shutdown cuts the running pause short once; after that, pauses run to the end.
        let cut = if give_up.is_none() {
            stop.clone()
        } else {
            CancellationToken::new()
        };
        outage.failed(&error, &cut).await;
    }
}
