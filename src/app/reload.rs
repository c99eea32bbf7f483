//! Reload without restart: SIGHUP or `POST /-/reload` (admin token) re-read the config file, as
//! Prometheus does.
//!
//! A valid file stops the running pipeline in order (consuming, a last evaluation and flush,
//! the sinks drained, the lease released) and starts it again from the new config in the same
//! process, on the same listener (requests queue meanwhile) and the same open state store. So
//! feeds, groups, sinks and thresholds that were added, removed or changed take effect, and no
//! state, alert or outbox entry is lost: the new pipeline restores them as a restart would,
//! without paging again. An invalid file keeps the running config: the error is logged and the
//! reload answered 400 with the message `check-config` gives. What the running process holds
//! open cannot change at a reload: `kafka.brokers`, `kafka.group_id`, the state store and
//! `http.listen` are refused there, and need a restart.
//!
//! Reload never stops what works: the running pipeline is stopped only once the state store
//! the new one restores from answers. A store that does not answer within `state.open_timeout`
//! refuses the reload (400, or a logged refusal for SIGHUP) and the running pipeline goes on
//! judging and paging from memory. The new consumer is made only after the old one closed:
//! under static membership (`kafka.instance_id`) two consumers with one name would fence each
//! other, and the one replaced rejoins under its name without a rebalance. Shutdown (SIGTERM) is heard in every phase, waiting for
//! the store at first start included, and ends the process within [`super::SHUTDOWN_GRACE`].

use std::path::{Path, PathBuf};

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};

use super::*;

/// Asks the process for a reload; the answer is `Err(message)` when the file is refused.
pub type ReloadSender = mpsc::Sender<oneshot::Sender<Result<(), String>>>;

/// `freshwatch_config_last_reload_successful` and `..._success_timestamp_seconds`, kept across
/// the pipeline's restarts.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    successful: Gauge,
    success_timestamp_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl ReloadStatus {
    fn new(now_ms: i64) -> ReloadStatus {
        let status = ReloadStatus::default();
        status.succeeded(now_ms);
        status
    }

    fn succeeded(&self, now_ms: i64) {
        self.successful.set(1);
        self.success_timestamp_seconds.set(now_ms as f64 / 1000.0);
    }

    fn failed(&self) {
        self.successful.set(0);
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "freshwatch_config_last_reload_successful",
            "1 when the last reload of the config file succeeded (or none was asked for)",
            self.successful.clone(),
        );
        registry.register(
            "freshwatch_config_last_reload_success_timestamp_seconds",
            "When the config was last loaded successfully, unix seconds",
            self.success_timestamp_seconds.clone(),
        );
    }
}

/// What a reload cannot change, with why.
pub fn refuse_change(running: &Config, new: &Config) -> Result<(), String> {
    let restart = "restart freshwatch to apply it: the running process holds it open";
    if running.kafka.brokers != new.kafka.brokers {
        return Err(format!("kafka.brokers changed; {restart}"));
    }
    if running.kafka.group_id != new.kafka.group_id {
        return Err(format!("kafka.group_id changed; {restart}"));
    }
    // Each cluster's consumers are held open too: its name, brokers and group stay.
    let clusters = |config: &Config| -> Vec<(String, String, String)> {
        config
            .clusters
            .iter()
            .map(|cluster| {
                (
                    cluster.name.to_string(),
                    cluster.kafka.brokers.clone(),
                    cluster.kafka.group_id.clone(),
                )
            })
            .collect()
    };
    if clusters(running) != clusters(new) {
        return Err(format!(
            "the [[cluster]] tables' names, brokers or group_id changed; {restart}"
        ));
    }
    let store = |config: &Config| match &config.state.backend {
        StateBackend::Redis { url } => vec!["redis".to_owned(), url.expose().to_owned()],
        StateBackend::RedisCluster { nodes } => std::iter::once("cluster".to_owned())
            .chain(nodes.iter().map(|node| node.expose().to_owned()))
            .collect(),
        StateBackend::Embedded { path } => vec!["embedded".to_owned(), path.display().to_string()],
    };
    if store(running) != store(new) || running.state.key_prefix != new.state.key_prefix {
        return Err(format!("the state store changed; {restart}"));
    }
    if running.http.listen != new.http.listen {
        return Err(format!("http.listen changed; {restart}"));
    }
    Ok(())
}

/// Reads and checks the file for a reload.
fn prepare(path: &Path, running: &Config) -> Result<Config, String> {
    let new = crate::config::load(path).map_err(|error| error.to_string())?;
    refuse_change(running, &new)?;
    Ok(new)
}

/// Why the process stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("cannot listen on {address}: {error}")]
    Bind {
        address: SocketAddr,
        error: std::io::Error,
    },
}

/// Waits until `store` answers, for at most `timeout`: a reload stops the running pipeline
/// only after this. The error is the refusal's message.
async fn store_answers(store: &StateStore, timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = String::from("no answer");
    loop {
        match tokio::time::timeout_at(deadline, store.ping()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => last_error = error.to_string(),
            Err(_) => break,
        }
        let retry_at = tokio::time::Instant::now() + Duration::from_millis(200);
        if retry_at >= deadline {
            break;
        }
        tokio::time::sleep_until(retry_at).await;
    }
    Err(format!(
        "the {} state store did not answer within state.open_timeout ({}; {last_error}): the running pipeline goes on; reload again once it answers",
        store.kind(),
        humantime::format_duration(timeout)
    ))
}

/// Waits for a stopping pipeline, at most [`super::SHUTDOWN_GRACE`]: what it did not finish
/// by then (a flush to a store that does not answer) is given up so the process can exit.
async fn stopped_within_grace(
    stopped: impl std::future::Future<Output = Result<(), RunError>>,
) -> Result<(), RunError> {
    match tokio::time::timeout(super::SHUTDOWN_GRACE, stopped).await {
        Ok(result) => result,
        Err(_) => {
            tracing::error!(grace = ?super::SHUTDOWN_GRACE, "the pipeline did not stop within the shutdown grace; exiting without it");
            Ok(())
        }
    }
}

/// `freshwatch run`: the pipeline from `config` (read from `path`) until `shutdown`, started
/// again on every accepted reload.
pub async fn serve(
    path: PathBuf,
    mut config: Config,
    clock: SharedClock,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let address = config.http.listen;
    let bind_error = |error| ServeError::Bind { address, error };
    let listener = std::net::TcpListener::bind(address).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let status = ReloadStatus::new(clock.now_ms());
    let (sender, mut requests) = mpsc::channel(4);
    let mut hangups = hangup_signals();
    let mut store = None;
    let mut last_good: Option<Config> = None;
    loop {
        // A child of `shutdown`: SIGTERM reaches a pipeline still waiting for its store.
        let instance = shutdown.child_token();
        let options = StartOptions {
            listener: Some(listener.try_clone().map_err(bind_error)?),
            store: store.clone(),
            reloads: Some(sender.clone()),
            reload_status: Some(status.clone()),
        };
        let started = tokio::select! {
            biased;
            // Shutdown while starting (waiting for Redis): nothing runs yet, nothing to stop.
            _ = shutdown.cancelled() => return Ok(()),
            started = start_with(config.clone(), clock.clone(), instance.clone(), options) => started,
        };
        let running = match started {
            Ok(running) => running,
            Err(_) if shutdown.is_cancelled() => return Ok(()),
            // The new config passed validation but did not start (a Kafka property librdkafka
            // refuses): back to the one that ran.
            Err(error) if last_good.is_some() => {
                tracing::error!(%error, "the reloaded config did not start; going back to the previous one");
                status.failed();
                config = last_good.take().unwrap_or(config);
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        if last_good.is_some() {
            status.succeeded(clock.now_ms());
            tracing::info!(feeds = config.feeds.len(), "config reloaded");
        }
        let running_store = running.store.clone();
        store = Some(running_store.clone());
        let mut stopped = std::pin::pin!(running.wait());
        let next = loop {
            let reply = tokio::select! {
                _ = shutdown.cancelled() => {
                    instance.cancel();
                    return Ok(stopped_within_grace(&mut stopped).await?);
                }
                result = &mut stopped => return Ok(result?),
                Some(reply) = requests.recv() => Some(reply),
                Some(()) = hangups.recv() => None,
            };
            // The file first, then whether the store the new pipeline restores from answers;
            // the running pipeline goes on meanwhile, and stops only when both hold.
            let checked = match prepare(&path, &config) {
                Ok(next) => {
                    let timeout = next.state.open_timeout;
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => {
                            instance.cancel();
                            return Ok(stopped_within_grace(&mut stopped).await?);
                        }
                        answered = store_answers(&running_store, timeout) => answered.map(|()| next),
                    }
                }
                Err(message) => Err(message),
            };
            match checked {
                Ok(next) => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(()));
                    }
                    break next;
                }
                Err(message) => {
                    tracing::error!(error = %message, path = %path.display(), "config reload refused; the running config stays");
                    status.failed();
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(message));
                    }
                }
            }
        };
        tracing::info!("reloading: stopping the pipeline to start it with the new config");
        instance.cancel();
        // Stopped in full (its sinks drained) before the next starts; SIGTERM meanwhile bounds it.
        tokio::select! {
            result = &mut stopped => result?,
            _ = shutdown.cancelled() => return Ok(stopped_within_grace(&mut stopped).await?),
        }
        last_good = Some(std::mem::replace(&mut config, next));
    }
}

/// SIGHUP, as a stream; never fires where there is none.
fn hangup_signals() -> mpsc::Receiver<()> {
    let (sender, receiver) = mpsc::channel(1);
    #[cfg(unix)]
    if let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                if sender.send(()).await.is_err() {
                    break;
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop(sender);
    receiver
}
