//! Running several replicas: exactly one leader evaluates and sends alerts.
//!
//! Leadership is a Redis lease (`{prefix}:leader`, `SET NX PX`) holding `instance:token`, where
//! the token comes from `INCR {prefix}:leader_token`, so it grows with every new leader (a
//! fencing token). The leader renews every third of the lease. A leader that cannot reach Redis
//! leads on from memory (nobody else can take the lease then) and steps down as soon as a renewal
//! shows another replica holds it; status writes are fenced on the token (each feed keeps the
//! highest token that wrote it), so a deposed leader's writes are refused; a refused write makes
//! that replica stand by at once. A Redis that lost its data counts tokens from 1 again: a new
//! term's token is lifted above every token the replica has seen, and a leader that finds the
//! store empty takes the lease again before writing. Partitions are shared
//! through the consumer group, last-seen merges by max in Redis, and alert state and the outbox
//! live in Redis, so a new leader takes over without a lost or duplicated page.
//!
//! With the embedded store there is one instance (redb locks its file): it always leads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::state::RedisStore;

/// This instance's view of leadership.
#[derive(Debug)]
pub struct Leadership {
    instance: String,
    leader: AtomicBool,
    token: AtomicU64,
    /// The highest fencing token this replica has seen: its own terms' and any that refused
    /// its writes. Its next term's token is above it, even from a Redis that lost the counter.
    highest_token: AtomicU64,
    changes: watch::Sender<bool>,
}

impl Leadership {
    pub fn new(instance: String, leader: bool) -> Arc<Leadership> {
        let (changes, _) = watch::channel(leader);
        Arc::new(Leadership {
            instance,
            leader: AtomicBool::new(leader),
            token: AtomicU64::new(0),
            highest_token: AtomicU64::new(0),
            changes,
        })
    }

    /// A single instance that always leads.
    pub fn always() -> Arc<Leadership> {
        Leadership::new("single".into(), true)
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    /// The fencing token of the current term (0 before any).
    pub fn token(&self) -> u64 {
        self.token.load(Ordering::Acquire)
    }

    /// This replica's name (host and pid).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The lease value this instance holds while leading.
    pub fn lease_value(&self) -> String {
        format!("{}:{}", self.instance, self.token())
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.changes.subscribe()
    }

    /// A status write was refused: a leader with the newer token `newest` wrote the feed, so
    /// this replica is no longer the leader, whatever its lease said. It stands by; the lease
    /// loop takes the lease again only once it is free, with a token above `newest`.
    pub fn fenced_off(&self, newest: u64) {
        self.highest_token.fetch_max(newest, Ordering::AcqRel);
        self.set(false, 0);
    }

    fn set(&self, leader: bool, token: u64) {
        self.highest_token.fetch_max(token, Ordering::AcqRel);
        self.token.store(token, Ordering::Release);
        if self.leader.swap(leader, Ordering::AcqRel) != leader {
            let _ = self.changes.send(leader);
            if leader {
                tracing::info!(instance = %self.instance, token, "became leader: evaluating and sending alerts");
            } else {
                tracing::warn!(instance = %self.instance, "no longer leader: standing by");
            }
        }
    }
}

/// A name for this process: host and pid.
pub fn instance_name() -> String {
    let host = crate::config::host_name().unwrap_or_else(|| "host".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Takes the lease if it is free, with a token above every token this replica has seen.
async fn try_lease(
    store: &RedisStore,
    leadership: &Leadership,
    lease_ms: i64,
) -> Result<Option<u64>, crate::state::StateError> {
    let floor = leadership.highest_token.load(Ordering::Acquire);
    store
        .lease_acquire_above(&leadership.instance, lease_ms, floor)
        .await
}

/// The state store was found empty while this replica leads: the lease went with everything
/// else, so it is taken again, with a token above the old term's, before any fenced write.
/// Another replica that took it first leads instead: this one stands by.
pub async fn retake_after_wipe(store: &RedisStore, leadership: &Leadership, lease: Duration) {
    if !leadership.is_leader() {
        return;
    }
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(15_000);
    let old_token = leadership.token();
    match try_lease(store, leadership, lease_ms).await {
        Ok(Some(token)) => {
            tracing::warn!(
                old_token,
                token,
                "the state store lost the leader lease; taken again with a new fencing token"
            );
            leadership.set(true, token);
        }
        Ok(None) => {
            tracing::warn!("the state store lost the leader lease and another replica took it");
            leadership.set(false, 0);
        }
        // The write that follows fails too and is retried; the lease loop takes over.
        Err(error) => {
            tracing::warn!(%error, "cannot take the leader lease again after the state store lost it")
        }
    }
}

/// Holds or seeks the lease until `shutdown` fires; releases it on the way out.
pub async fn run_lease(
    store: RedisStore,
    leadership: Arc<Leadership>,
    lease: Duration,
    shutdown: CancellationToken,
) {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(15_000);
    let mut ticker = tokio::time::interval(lease / 3);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut store_lost = false;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if leadership.is_leader() {
            match store.lease_renew(&leadership.lease_value(), lease_ms).await {
                Ok(true) => {
                    if store_lost {
                        tracing::info!("redis answers again; the leader lease is still ours");
                        store_lost = false;
                    }
                }
                Ok(false) => leadership.set(false, 0),
                Err(error) => {
                    // Keep leading: with Redis down no replica can take the lease, and stepping
                    // down would leave nobody paging. If another replica did take it meanwhile
                    // (a partition, not an outage), the next renewal says so and we step down;
                    // until then a page may go out twice, and the dedup key absorbs it.
                    if !store_lost {
                        tracing::warn!(%error, "cannot renew the leader lease; leading on from memory until redis answers");
                        store_lost = true;
                    }
                }
            }
        } else {
            match try_lease(&store, &leadership, lease_ms).await {
                Ok(Some(token)) => leadership.set(true, token),
                Ok(None) => {}
                Err(error) => tracing::debug!(%error, "cannot try the leader lease"),
            }
        }
    }
    if leadership.is_leader() {
        let _ = store.lease_release(&leadership.lease_value()).await;
        leadership.set(false, 0);
    }
}
