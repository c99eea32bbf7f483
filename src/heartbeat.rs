//! Watching the watchdog: ping an external dead-man's switch (Healthchecks.io style) while
//! freshwatch is healthy, so that when it dies, hangs or goes blind, the outside service pages.
//!
//! Healthy means the evaluation loop ran within three intervals and Kafka answers. When either
//! fails the pings stop (and are counted as withheld), which is the signal.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::HeartbeatConfig;
use crate::metrics::{Metrics, OutcomeLabels};
use crate::source::SourceStatus;

/// What the heartbeat checks before each ping.
pub struct Health {
    pub last_tick_ms: Arc<AtomicI64>,
    pub evaluation_interval: Duration,
    /// Every cluster's source: the heartbeat stops when none answers (one cluster down pages
    /// its own `FreshwatchSourceDown`).
    pub sources: Vec<Arc<SourceStatus>>,
    /// Set while a feed or partition is unseen past its bound: a silence there could not page.
    pub blind: Arc<std::sync::atomic::AtomicBool>,
    /// Set while a watched consumer group cannot be read past its bound.
    pub groups_blind: Arc<std::sync::atomic::AtomicBool>,
    pub clock: SharedClock,
}

impl Health {
    /// `None` when healthy, else why not.
    pub fn problem(&self) -> Option<&'static str> {
        let stale_after_ms =
            3 * i64::try_from(self.evaluation_interval.as_millis()).unwrap_or(i64::MAX);
        if self.clock.now_ms() - self.last_tick_ms.load(Ordering::Relaxed)
            > stale_after_ms.max(3_000)
        {
            return Some("evaluation loop is not running");
        }
        if !self
            .sources
            .iter()
            .any(|source| source.reachable.load(Ordering::Relaxed))
        {
            return Some("kafka is unreachable");
        }
        if self.blind.load(Ordering::Relaxed) {
            return Some("a feed cannot be judged");
        }
        if self.groups_blind.load(Ordering::Relaxed) {
            return Some("a consumer group cannot be read");
        }
        None
    }
}

/// Pings until `shutdown` fires.
pub async fn run(
    config: HeartbeatConfig,
    health: Health,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .build()
        .unwrap_or_default();
    let mut ticker = tokio::time::interval(config.interval);
    let count = |outcome: &'static str| {
        metrics
            .heartbeats
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    };
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if let Some(problem) = health.problem() {
            count("withheld");
            tracing::warn!(problem, "heartbeat withheld: freshwatch is not healthy");
            continue;
        }
        let request = if config.post {
            client.post(config.url.expose())
        } else {
            client.get(config.url.expose())
        };
        match request.send().await {
            Ok(response) if response.status().is_success() => count("sent"),
            Ok(response) => {
                count("failed");
                tracing::warn!(status = %response.status(), "heartbeat ping refused");
            }
            Err(error) => {
                count("failed");
                // The ping URL is a secret of its own (a check's UUID): never logged.
                let error = error.without_url();
                tracing::warn!(%error, "heartbeat ping failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn a_blind_feed_or_group_withholds_the_heartbeat_as_an_unreachable_broker_does() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let source = Arc::new(SourceStatus::default());
        source.reachable.store(true, Ordering::Relaxed);
        let blind = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let groups_blind = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let health = Health {
            last_tick_ms: Arc::new(AtomicI64::new(1_000_000)),
            evaluation_interval: Duration::from_secs(1),
            sources: vec![source.clone()],
            blind: blind.clone(),
            groups_blind: groups_blind.clone(),
            clock: clock.clone(),
        };
        assert_eq!(health.problem(), None);
        blind.store(true, Ordering::Relaxed);
        assert_eq!(health.problem(), Some("a feed cannot be judged"));
        blind.store(false, Ordering::Relaxed);
        groups_blind.store(true, Ordering::Relaxed);
        assert_eq!(health.problem(), Some("a consumer group cannot be read"));
        groups_blind.store(false, Ordering::Relaxed);
        source.reachable.store(false, Ordering::Relaxed);
        assert_eq!(health.problem(), Some("kafka is unreachable"));
        source.reachable.store(true, Ordering::Relaxed);
        clock.advance(Duration::from_secs(10));
        assert_eq!(health.problem(), Some("evaluation loop is not running"));
    }
}
