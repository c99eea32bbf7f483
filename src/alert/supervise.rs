//! Keeps every sink task running.
//!
//! A sink task that panics, or returns while freshwatch is not shutting down, would otherwise
//! leave its sink silent until the next restart. Its supervisor starts it again after a short
//! backoff (so one that dies at once cannot spin), from the state it left: the inbox it had, the
//! queue and alerts it held, and, for a notification sink, the outbox it re-reads. Each restart
//! is logged at ERROR and counted in `freshwatch_sink_task_restarts_total{sink}`.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::task::Poll;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The first wait before a restart; it doubles while the task keeps dying.
pub const FIRST_RESTART_DELAY: Duration = Duration::from_millis(500);
/// The longest wait before a restart.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// A task that ran this long before dying is restarted after the first delay again.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Why a sink task's run ended without a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// `shutdown` fired; the bounded last delivery is done.
    Shutdown,
    /// Every sender is gone: nothing can reach the sink any more.
    InboxClosed,
}

/// A sink task as its supervisor runs it.
pub trait SinkLoop: Send {
    type Inbox: Send;

    /// Delivers until `shutdown` fires or the inbox closes. Called again after a panic, on the
    /// same task and inbox.
    fn run<'a>(
        &'a mut self,
        inbox: &'a mut Self::Inbox,
        shutdown: &'a CancellationToken,
    ) -> impl Future<Output = Ended> + Send + 'a;

    /// Before a restart: take up again what the dead run may have left half done.
    fn restarting(&mut self) {}
}

/// Runs `task` until shutdown, restarting it whenever it dies.
pub async fn supervise<T: SinkLoop>(
    sink: String,
    mut task: T,
    mut inbox: T::Inbox,
    shutdown: CancellationToken,
    restarts: Counter,
) {
    let mut delay = FIRST_RESTART_DELAY;
    loop {
        let started = Instant::now();
        let outcome = catch_panic(task.run(&mut inbox, &shutdown)).await;
        if shutdown.is_cancelled() {
            return;
        }
        let cause = match outcome {
            Ok(Ended::InboxClosed) => {
                tracing::info!(sink = %sink, "sink task stopped: nothing can reach it any more");
                return;
            }
            Ok(Ended::Shutdown) => "returned before shutdown".to_owned(),
            Err(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
        };
        if started.elapsed() >= STABLE_AFTER {
            delay = FIRST_RESTART_DELAY;
        }
        restarts.inc();
        tracing::error!(sink = %sink, cause, restart_in = ?delay, "sink task died; restarting it");
        tokio::select! {
            biased;
            // Shutting down: the next run only makes its bounded last delivery.
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(MAX_RESTART_DELAY);
        task.restarting();
    }
}

/// Runs `future`, turning a panic into an error, so the supervisor keeps what it borrowed.
async fn catch_panic<F: Future>(future: F) -> Result<F::Output, Box<dyn Any + Send>> {
    let mut future = Box::pin(future);
    std::future::poll_fn(move |context| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(context))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    })
    .await
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(message) = panic.downcast_ref::<&str>() {
        return message;
    }
    panic
        .downcast_ref::<String>()
        .map_or("(no message)", String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Panics on its first run, returns early on its second, then runs until shutdown.
    struct Flaky {
        runs: u32,
        restarts_seen: u32,
    }

    impl SinkLoop for Flaky {
        type Inbox = ();

        async fn run(&mut self, _inbox: &mut (), shutdown: &CancellationToken) -> Ended {
            self.runs += 1;
            match self.runs {
                1 => panic!("boom"),
                2 => Ended::Shutdown,
                _ => {
                    shutdown.cancelled().await;
                    Ended::Shutdown
                }
            }
        }

        fn restarting(&mut self) {
            self.restarts_seen += 1;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_panics_or_returns_early_is_restarted_with_a_growing_delay() {
        let restarts = Counter::default();
        let shutdown = CancellationToken::new();
        let started = Instant::now();
        let mut task = Flaky {
            runs: 0,
            restarts_seen: 0,
        };
        let supervisor = async {
            let counted = restarts.clone();
            let running = supervise("hook".into(), &mut task, (), shutdown.clone(), counted);
            running.await;
        };
        let stopper = async {
            while restarts.get() < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            shutdown.cancel();
        };
        tokio::join!(supervisor, stopper);
        assert_eq!(restarts.get(), 2);
        assert_eq!(task.runs, 3, "the third run lasted until shutdown");
        assert_eq!(task.restarts_seen, 2);
        assert!(
            started.elapsed() >= FIRST_RESTART_DELAY * 3,
            "waited 0.5 s, then 1 s: no spinning"
        );
    }

    impl<T: SinkLoop> SinkLoop for &mut T {
        type Inbox = T::Inbox;

        fn run<'a>(
            &'a mut self,
            inbox: &'a mut Self::Inbox,
            shutdown: &'a CancellationToken,
        ) -> impl Future<Output = Ended> + Send + 'a {
            (**self).run(inbox, shutdown)
        }

        fn restarting(&mut self) {
            (**self).restarting();
        }
    }
}
