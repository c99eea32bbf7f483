//! The periodic loops (evaluation, flush, replicas) and the supervised source threads.

use super::*;

/// Evaluates every `interval`; while series wait for knowledge past their crossing (the next
/// statistics), every 100 ms, so a page waits for that knowledge and not for a whole interval.
pub(super) async fn evaluation_loop(
    pipeline: Arc<Pipeline>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let soon = Duration::from_millis(100).min(interval);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        while pipeline.evaluate().await {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(soon) => {}
            }
        }
    }
}

/// Runs `work` every `interval` until `stop` fires; a slow run delays the next, never bursts.
pub(super) async fn every<F, Fut>(interval: Duration, stop: CancellationToken, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = ticker.tick() => work().await,
        }
    }
}

/// With shared state: reloads it every `interval`, and promotes this instance when it wins the
/// lease.
pub(super) async fn replica_loop(
    pipeline: Arc<Pipeline>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leadership = pipeline.leadership.subscribe();
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            // Won (or lost) the lease.
            changed = leadership.changed() => {
                if changed.is_err() {
                    break;
                }
                let leader = *leadership.borrow_and_update();
                pipeline.metrics.leader.set(i64::from(leader));
                if leader {
                    pipeline.promote().await;
                }
            }
            // Merge what the other replicas read, and share how far behind each one is.
            _ = ticker.tick() => {
                let take_statuses = !pipeline.leadership.is_leader();
                if let Err(error) = pipeline.reload(take_statuses).await {
                    tracing::debug!(%error, "shared state reload failed");
                }
                // Whether the peers' reports can arrive is a fact for the knowledge rule.
                let now_ms = pipeline.clock.now_ms();
                match pipeline.share_knowledge().await {
                    Ok(()) => pipeline.clusters.observe_store_success(now_ms),
                    Err(error) => {
                        pipeline.clusters.observe_store_failure(now_ms);
                        tracing::debug!(%error, "knowledge not shared");
                    }
                }
                if let Err(error) = pipeline.silences.reload().await {
                    tracing::debug!(%error, "silences not reloaded");
                }
            }
        }
    }
    if let Some(redis) = pipeline.store.redis() {
        for run in &pipeline.clusters.runs {
            let _ = redis
                .knowledge_forget(run.store_scope(), pipeline.leadership.instance())
                .await;
        }
    }
}

/// Runs `body` on a named thread; if it ends while its stop token has not fired, or panics,
/// says so on `died`. The join handle lets shutdown wait for it.
pub(super) fn supervised<F>(
    name: &str,
    thread: &'static str,
    died: tokio::sync::mpsc::UnboundedSender<RunError>,
    body: F,
) -> std::thread::JoinHandle<()>
where
    F: FnOnce() -> Result<(), String> + Send + 'static,
{
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
            let reason = match outcome {
                Ok(Ok(())) => "it returned".to_owned(),
                Ok(Err(error)) => error,
                Err(panic) => panic
                    .downcast_ref::<&str>()
                    .map(|text| (*text).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "it panicked".to_owned()),
            };
            // After shutdown the receiver is gone or no longer read: nothing to report.
            let _ = died.send(RunError::SourceDied { thread, reason });
        })
        .expect("spawning a thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_source_thread_that_stops_or_panics_is_reported_not_silently_gone() {
        let (died_sender, mut died) = tokio::sync::mpsc::unbounded_channel::<RunError>();
        let failed = supervised("test-failed", "source", died_sender.clone(), || {
            Err("cannot subscribe".to_owned())
        });
        let panicked = supervised("test-panicked", "tail", died_sender, || {
            panic!("statistics callback blew up")
        });
        let _ = failed.join();
        let _ = panicked.join();
        let mut reasons = Vec::new();
        while let Some(RunError::SourceDied { thread, reason }) = died.recv().await {
            reasons.push(format!("{thread}: {reason}"));
        }
        reasons.sort();
        assert_eq!(
            reasons,
            [
                "source: cannot subscribe",
                "tail: statistics callback blew up"
            ]
        );
    }
}
