//! Unit tests of the sink task: rate limits, late storing, fallbacks and reminders.

use super::*;
use crate::alert::notification::NotificationStatus;
use crate::config::SinkKind;

/// Sink context on the system clock, always leading.
pub(crate) fn context(store: StateStore, metrics: Metrics, directory: Directory) -> SinkContext {
    SinkContext {
        directory,
        ..SinkContext::new(
            "http://127.0.0.1:9187",
            store,
            crate::ha::Leadership::always(),
            &metrics,
            Arc::new(crate::clock::SystemClock),
        )
    }
}

pub(crate) fn sink(rate_limit: u32) -> SinkConfig {
    SinkConfig {
        name: "hook".into(),
        kind: SinkKind::Webhook {
            url: reqwest::Url::parse("http://127.0.0.1:9/hook").unwrap(),
            secret: None,
        },
        min_severity: Severity::Warning,
        feeds: vec![],
        fallback: vec![],
        fallback_after: Duration::from_secs(120),
        repeat_interval: Duration::from_secs(4 * 3600),
        rate_limit,
        rate_limit_period: Duration::from_secs(3600),
        timeout: Duration::from_secs(1),
        system: true,
        max_queued: 10_000,
    }
}

fn notification(key: &str, status: &str, firing: bool) -> Notification {
    Notification {
        firing,
        alertname: "FeedStale".into(),
        feed: "profiles".into(),
        key: key.into(),
        split: true,
        topic: "t".into(),
        severity: Severity::Critical,
        status: NotificationStatus::parse(status).unwrap(),
        previous_status: None,
        summary: String::new(),
        dedup_key: format!("freshwatch/profiles/{key}"),
        last_seen_ms: None,
        staleness_ms: None,
        warn_after_ms: 0,
        critical_after_ms: 0,
        records: 0,
        changed_at_ms: 0,
        firing_for_ms: None,
        repeat: false,
    }
}

#[tokio::test]
async fn a_flapping_key_over_its_rate_is_coalesced_without_blocking_other_keys() {
    let directory = tempfile::tempdir().unwrap();
    let store = StateStore::Embedded(
        crate::state::EmbeddedStore::open(directory.path().to_owned())
            .await
            .unwrap(),
    );
    let metrics = Metrics::default();
    let (mut task, handle, mut receiver) = SinkTask::new(
        sink(1),
        &context(store.clone(), metrics.clone(), Directory::default()),
    );
    // acme already had its one notification this hour.
    task.accepted(&notification("acme", "critical", true));
    for item in [
        notification("acme", "ok", false),
        notification("acme", "critical", true),
        notification("globex", "critical", true),
    ] {
        handle.enqueue(&store, item).await;
    }
    while let Ok(envelope) = receiver.try_recv() {
        task.push(envelope).await;
    }
    assert_eq!(
        store.outbox_list("hook").await.unwrap().len(),
        3,
        "stored before delivery"
    );
    let next = task.next_eligible().await.unwrap();
    assert_eq!(
        task.queue[next].envelope.notification.key, "globex",
        "other keys are not blocked"
    );
    assert_eq!(
        task.queue.len(),
        2,
        "acme's older entry was superseded by its newest"
    );
    assert_eq!(
        task.queue[0].envelope.notification.status.as_str(),
        "critical"
    );
    let suppressed = metrics
        .notifications_suppressed
        .get_or_create(&crate::metrics::SinkLabels {
            sink: "hook".into(),
        })
        .get();
    assert_eq!(suppressed, 1);
    assert_eq!(
        store.outbox_list("hook").await.unwrap().len(),
        2,
        "the superseded entry left the outbox"
    );
}

pub(crate) async fn embedded_store(directory: &tempfile::TempDir) -> StateStore {
    StateStore::Embedded(
        crate::state::EmbeddedStore::open(directory.path().to_owned())
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn entries_stored_late_are_stored_again_in_queue_order() {
    let directory = tempfile::tempdir().unwrap();
    let store = embedded_store(&directory).await;
    let (mut task, _handle, _receiver) = SinkTask::new(
        sink(100),
        &context(store.clone(), Metrics::default(), Directory::default()),
    );
    // The trigger arrived while the store was down; the resolve after it was stored.
    task.push(Envelope {
        still_firing: false,
        outbox_id: None,
        notification: notification("acme", "critical", true),
    })
    .await;
    let resolve = notification("acme", "ok", false);
    let resolve_id = store
        .outbox_push("hook", &serde_json::to_string(&resolve).unwrap())
        .await
        .unwrap();
    task.push(Envelope {
        still_firing: false,
        outbox_id: Some(resolve_id.clone()),
        notification: resolve,
    })
    .await;

    task.store_unstored().await;

    let replayed: Vec<String> = store
        .outbox_list("hook")
        .await
        .unwrap()
        .into_iter()
        .map(|(_, json)| {
            serde_json::from_str::<Notification>(&json)
                .unwrap()
                .status
                .as_str()
                .to_owned()
        })
        .collect();
    assert_eq!(
        replayed,
        ["critical", "ok"],
        "after a restart the trigger replays before its resolve"
    );
    assert!(task
        .queue
        .iter()
        .all(|queued| queued.envelope.outbox_id.is_some()));
    assert_ne!(
        task.queue[1].envelope.outbox_id.as_deref(),
        Some(resolve_id.as_str()),
        "the resolve was stored again behind the trigger"
    );
}

#[tokio::test(start_paused = true)]
async fn send_times_are_forgotten_after_the_rate_limit_period() {
    let directory = tempfile::tempdir().unwrap();
    let (mut task, _handle, _receiver) = SinkTask::new(
        sink(12),
        &context(
            embedded_store(&directory).await,
            Metrics::default(),
            Directory::default(),
        ),
    );
    for tenant in 0..1000 {
        task.accepted(&notification(
            &format!("tenant-{tenant}"),
            "critical",
            false,
        ));
    }
    assert_eq!(task.sent.len(), 1000);
    task.prune_sent(Instant::now());
    assert_eq!(task.sent.len(), 1000, "still within the period");
    tokio::time::advance(Duration::from_secs(3601)).await;
    task.prune_sent(Instant::now());
    assert!(
        task.sent.is_empty(),
        "bounded by what paged within the period"
    );
}

#[tokio::test(start_paused = true)]
async fn a_transient_error_falls_back_no_earlier_than_fallback_after() {
    let directory = tempfile::tempdir().unwrap();
    let store = embedded_store(&directory).await;
    let sinks = Directory::default();
    // A port nothing listens on: connection refused, a transient error.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut primary_config = sink(100);
    primary_config.kind = SinkKind::PagerDuty {
        url: reqwest::Url::parse(&format!("http://127.0.0.1:{port}/v2/enqueue")).unwrap(),
        routing_key: crate::config::Secret::new("R0UT1NG"),
    };
    primary_config.fallback = vec!["backup".into()];
    primary_config.fallback_after = Duration::from_secs(3);
    let mut backup_config = sink(100);
    backup_config.name = "backup".into();
    let (mut primary, primary_handle, _primary_receiver) = SinkTask::new(
        primary_config,
        &context(store.clone(), Metrics::default(), sinks.clone()),
    );
    let (_backup, backup_handle, mut backup_receiver) = SinkTask::new(
        backup_config,
        &context(store.clone(), Metrics::default(), sinks.clone()),
    );
    let _ = sinks.set(HashMap::from([
        ("hook".to_owned(), primary_handle),
        ("backup".to_owned(), backup_handle),
    ]));
    let page = notification("acme", "critical", true);
    let delivery = primary.transport.send(&page).await;
    assert!(
        matches!(delivery, Delivery::Transient { .. }),
        "connection refused is transient: {delivery:?}"
    );
    primary
        .push(Envelope {
            still_firing: false,
            outbox_id: None,
            notification: page,
        })
        .await;
    for _ in 0..3 {
        primary.fall_back().await;
        assert!(
            backup_receiver.try_recv().is_err(),
            "not before fallback_after"
        );
        tokio::time::advance(Duration::from_millis(999)).await;
    }
    primary.fall_back().await;
    assert!(backup_receiver.try_recv().is_err(), "not at 2.997 s");
    tokio::time::advance(Duration::from_millis(3)).await;
    primary.fall_back().await;
    assert_eq!(backup_receiver.try_recv().unwrap().notification.key, "acme");
}

#[tokio::test]
async fn a_resolve_follows_its_trigger_to_the_fallback_and_a_rejected_entry_falls_back_at_once() {
    let directory = tempfile::tempdir().unwrap();
    let store = embedded_store(&directory).await;
    let metrics = Metrics::default();
    let sinks = Directory::default();
    let mut primary_config = sink(100);
    primary_config.fallback = vec!["backup".into()];
    primary_config.fallback_after = Duration::ZERO;
    let mut backup_config = sink(100);
    backup_config.name = "backup".into();
    let (mut primary, primary_handle, _primary_receiver) = SinkTask::new(
        primary_config,
        &context(store.clone(), metrics.clone(), sinks.clone()),
    );
    let (_backup, backup_handle, mut backup_receiver) = SinkTask::new(
        backup_config,
        &context(store.clone(), metrics.clone(), sinks.clone()),
    );
    let _ = sinks.set(HashMap::from([
        ("hook".to_owned(), primary_handle),
        ("backup".to_owned(), backup_handle),
    ]));

    primary
        .push(Envelope {
            still_firing: false,
            outbox_id: None,
            notification: notification("acme", "critical", true),
        })
        .await;
    primary.fall_back().await;
    primary
        .push(Envelope {
            still_firing: false,
            outbox_id: None,
            notification: notification("acme", "ok", false),
        })
        .await;
    primary
        .push(Envelope {
            still_firing: false,
            outbox_id: None,
            notification: notification("globex", "critical", true),
        })
        .await;
    let mut at_backup = Vec::new();
    while let Ok(envelope) = backup_receiver.try_recv() {
        at_backup.push((
            envelope.notification.key,
            envelope.notification.status.as_str().to_owned(),
        ));
    }
    assert_eq!(
        at_backup,
        [
            ("acme".to_owned(), "critical".to_owned()),
            ("acme".to_owned(), "ok".to_owned()),
        ],
        "the fallback got acme's trigger and then its resolve, and nothing of globex yet"
    );
    assert_eq!(
        primary.fallbacks.open_incidents(),
        0,
        "acme's incident closed"
    );

    // Rejected outright: the fallback gets it without waiting for fallback_after.
    let rejected = notification("initech", "critical", true);
    primary.send_to_fallbacks(&rejected, "was rejected").await;
    let envelope = backup_receiver.try_recv().unwrap();
    assert_eq!(envelope.notification.key, "initech");
}

#[tokio::test]
async fn an_alert_firing_before_a_restart_is_reminded_of_but_not_sent_again() {
    let directory = tempfile::tempdir().unwrap();
    let store = embedded_store(&directory).await;
    let sinks = Directory::default();
    let mut config = sink(100);
    config.repeat_interval = Duration::ZERO;
    let (mut task, handle, mut receiver) = SinkTask::new(
        config,
        &context(store.clone(), Metrics::default(), sinks.clone()),
    );
    let _ = sinks.set(HashMap::from([("hook".to_owned(), handle.clone())]));
    handle.still_firing(notification("acme", "critical", true));
    let envelope = receiver.try_recv().unwrap();
    assert!(envelope.still_firing);
    task.remember_firing(envelope.notification);
    assert!(task.queue.is_empty(), "nothing is sent again at start");

    task.repeat_firing().await;
    let reminder = receiver.try_recv().expect("repeat_interval reminds");
    assert!(!reminder.still_firing);
    assert!(reminder.notification.repeat);
    assert_eq!(reminder.notification.key, "acme");
    assert_eq!(store.outbox_list("hook").await.unwrap().len(), 1);
}

#[tokio::test]
async fn delivery_latency_is_measured_on_the_sink_clock() {
    let directory = tempfile::tempdir().unwrap();
    let metrics = Metrics::default();
    let clock = Arc::new(crate::clock::ManualClock::new(1_000_000));
    let mut sink_context = context(
        embedded_store(&directory).await,
        metrics.clone(),
        Directory::default(),
    );
    sink_context.clock = clock.clone();
    let (mut task, _handle, _receiver) = SinkTask::new(sink(100), &sink_context);
    let mut page = notification("acme", "critical", true);
    page.changed_at_ms = 1_000_000 - 5_000;
    task.accepted(&page);
    clock.advance(Duration::from_secs(60));
    task.accepted(&page);
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register("latency", "", metrics.notification_latency.clone());
    let text = crate::metrics::render(&registry);
    assert!(text.contains("latency_count{sink=\"hook\"} 2\n"), "{text}");
    assert!(
        text.contains("latency_sum{sink=\"hook\"} 70.0\n"),
        "5 s, then 65 s on the manual clock: {text}"
    );
}

#[tokio::test]
async fn a_retry_after_date_is_read_against_the_sink_clock() {
    const NOW_MS: i64 = 1_764_547_200_000; // 2025-12-01T00:00:00Z
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async {
            (
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "Mon, 01 Dec 2025 00:01:30 GMT")],
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut config = sink(100);
    config.kind = SinkKind::Webhook {
        url: reqwest::Url::parse(&format!("http://{address}/hook")).unwrap(),
        secret: None,
    };
    let clock = Arc::new(crate::clock::ManualClock::new(NOW_MS));
    let transport = Transport::new(&config, "http://127.0.0.1:9187", clock);
    let delivery = transport
        .send(&notification("acme", "critical", true))
        .await;
    let Delivery::Transient { retry_after, .. } = delivery else {
        panic!("a 429 is transient: {delivery:?}");
    };
    assert_eq!(retry_after, Some(Duration::from_secs(90)));
}

/// A webhook receiver on a free port: the keys of the notifications it took, in order.
async fn webhook_receiver() -> (reqwest::Url, Arc<std::sync::Mutex<Vec<String>>>) {
    let received: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let kept = kept.clone();
            async move {
                let key = body["key"].as_str().unwrap_or_default().to_owned();
                kept.lock().unwrap().push(key);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = reqwest::Url::parse(&format!("http://{address}/hook")).unwrap();
    (url, received)
}

/// Polls `condition` for up to ten seconds.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn webhook_sink(url: reqwest::Url) -> SinkConfig {
    SinkConfig {
        kind: SinkKind::Webhook { url, secret: None },
        ..sink(100)
    }
}

#[tokio::test]
async fn a_sink_task_that_panics_is_restarted_and_still_delivers_what_it_held() {
    let directory = tempfile::tempdir().unwrap();
    let store = embedded_store(&directory).await;
    let metrics = Metrics::default();
    let (url, received) = webhook_receiver().await;
    let sink_context = context(store.clone(), metrics.clone(), Directory::default());
    let (task, handle, inbox) = SinkTask::new(webhook_sink(url), &sink_context);
    task.panic_before_delivery
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let restarts = super::super::sink_counter(&metrics.sink_task_restarts, "hook");
    let shutdown = CancellationToken::new();
    let supervisor = tokio::spawn(crate::alert::supervise::supervise(
        "hook".into(),
        task,
        inbox,
        shutdown.clone(),
        restarts.clone(),
    ));

    handle
        .enqueue(&store, notification("acme", "critical", true))
        .await;

    eventually("the page is delivered after the restart", || {
        !received.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(restarts.get(), 1, "one panic, one restart");
    assert_eq!(*received.lock().unwrap(), ["acme"], "delivered once");
    shutdown.cancel();
    supervisor.await.unwrap();
    assert!(store.outbox_list("hook").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_full_sink_channel_never_blocks_and_loses_nothing_the_outbox_takes_over() {
    let directory = tempfile::tempdir().unwrap();
    let store = embedded_store(&directory).await;
    let metrics = Metrics::default();
    let (url, received) = webhook_receiver().await;
    let mut sink_context = context(store.clone(), metrics.clone(), Directory::default());
    sink_context.queue_capacity = 2;
    let (mut task, handle, mut inbox) = SinkTask::new(webhook_sink(url), &sink_context);

    // The task is wedged (not running): two fit in the channel, the rest overflow.
    for key in ["k0", "k1", "k2", "k3"] {
        let enqueue = handle.enqueue(&store, notification(key, "critical", true));
        tokio::time::timeout(Duration::from_secs(5), enqueue)
            .await
            .expect("enqueue never waits for the sink task");
    }
    // One the state store could not take: only memory holds it.
    let unstored = Envelope {
        still_firing: false,
        outbox_id: None,
        notification: notification("k4", "critical", true),
    };
    assert_eq!(handle.sender.send(unstored), inbox::Sent::Overflowed);
    let overflows = super::super::sink_counter(&metrics.sink_queue_overflows, "hook");
    assert_eq!(overflows.get(), 3);

    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let running = tokio::spawn(async move { task.run(&mut inbox, &stop).await });
    eventually("all five are delivered", || {
        received.lock().unwrap().len() >= 5
    })
    .await;
    shutdown.cancel();
    running.await.unwrap();
    assert_eq!(
        *received.lock().unwrap(),
        ["k0", "k1", "k2", "k3", "k4"],
        "each once, in order"
    );
    assert!(store.outbox_list("hook").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_503_with_an_absurd_retry_after_holds_the_sink_no_longer_than_the_longest_backoff() {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async {
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "99999999999")],
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let directory = tempfile::tempdir().unwrap();
    let store = embedded_store(&directory).await;
    let url = reqwest::Url::parse(&format!("http://{address}/hook")).unwrap();
    let (mut task, handle, mut inbox) = SinkTask::new(
        webhook_sink(url),
        &context(store.clone(), Metrics::default(), Directory::default()),
    );
    handle
        .enqueue(&store, notification("acme", "critical", true))
        .await;
    handle
        .enqueue(&store, notification("globex", "critical", true))
        .await;
    while let Ok(envelope) = inbox.try_recv() {
        task.push(envelope).await;
    }
    let mut backoff = Backoff::new();
    for attempt in 0..3 {
        let wait = task.deliver_next(&mut backoff).await;
        assert!(
            wait <= Duration::from_secs(60),
            "attempt {attempt}: every key waits {wait:?} behind the 503; 60 s at most"
        );
    }
    assert_eq!(
        task.queue.len(),
        2,
        "nothing dropped: still queued, retried"
    );
}

/// A webhook receiver that answers 503 until `up` is set, then takes notifications: their
/// `key:status`, in order.
async fn flaky_webhook_receiver() -> (
    reqwest::Url,
    Arc<std::sync::atomic::AtomicBool>,
    Arc<std::sync::Mutex<Vec<String>>>,
) {
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let received: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let (is_up, kept) = (up.clone(), received.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let (is_up, kept) = (is_up.clone(), kept.clone());
            async move {
                if !is_up.load(std::sync::atomic::Ordering::SeqCst) {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let key = body["key"].as_str().unwrap_or_default();
                let status = body["feed_status"].as_str().unwrap_or_default();
                kept.lock().unwrap().push(format!("{key}:{status}"));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = reqwest::Url::parse(&format!("http://{address}/hook")).unwrap();
    (url, up, received)
}

#[tokio::test]
async fn a_sink_past_max_queued_keeps_only_the_newest_state_of_each_key_in_memory_and_outbox() {
    let directory = tempfile::tempdir().unwrap();
    let store = embedded_store(&directory).await;
    let metrics = Metrics::default();
    let config = SinkConfig {
        max_queued: 4,
        ..sink(100)
    };
    let (mut task, handle, mut inbox) = SinkTask::new(
        config,
        &context(store.clone(), metrics.clone(), Directory::default()),
    );
    // The sink is down: 3 keys flap 40 times each, while nothing is delivered.
    for round in 0..40 {
        for key in ["acme", "globex", "initech"] {
            let (status, firing) = if round % 2 == 0 {
                ("critical", true)
            } else {
                ("ok", false)
            };
            handle
                .enqueue(&store, notification(key, status, firing))
                .await;
            while let Ok(envelope) = inbox.try_recv() {
                task.receive(envelope).await;
            }
            assert!(
                task.queue.len() <= 4,
                "memory bounded: {}",
                task.queue.len()
            );
            assert!(
                store.outbox_list("hook").await.unwrap().len() <= 4,
                "outbox bounded"
            );
        }
    }
    // globex resolves last and acme fires again last: the newest state of each key is kept.
    handle
        .enqueue(&store, notification("acme", "critical", true))
        .await;
    while let Ok(envelope) = inbox.try_recv() {
        task.receive(envelope).await;
    }
    let kept: Vec<String> = task
        .queue
        .iter()
        .map(|queued| {
            let notification = &queued.envelope.notification;
            format!("{}:{}", notification.key, notification.status.as_str())
        })
        .collect();
    assert_eq!(kept, ["globex:ok", "initech:ok", "acme:critical"]);
    let stored = store.outbox_list("hook").await.unwrap();
    assert_eq!(stored.len(), 3, "the outbox holds what memory holds");
    let coalesced = super::super::sink_counter(&metrics.sink_queue_coalesced, "hook");
    assert_eq!(coalesced.get(), 121 - 3, "every superseded entry counted");
}

#[tokio::test]
async fn a_sink_that_comes_back_after_its_queue_was_coalesced_sends_every_keys_last_state_in_order()
{
    let directory = tempfile::tempdir().unwrap();
    let store = embedded_store(&directory).await;
    let metrics = Metrics::default();
    let (url, up, received) = flaky_webhook_receiver().await;
    let config = SinkConfig {
        max_queued: 10,
        ..webhook_sink(url)
    };
    let sink_context = context(store.clone(), metrics.clone(), Directory::default());
    let (mut task, handle, mut inbox) = SinkTask::new(config, &sink_context);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let running = tokio::spawn(async move { task.run(&mut inbox, &stop).await });

    // Down: 25 keys fire and resolve 12 times, then 5 of them fire again: 605 notifications.
    let keys: Vec<String> = (0..25).map(|index| format!("k{index:02}")).collect();
    for _ in 0..12 {
        for key in &keys {
            handle
                .enqueue(&store, notification(key, "critical", true))
                .await;
            handle.enqueue(&store, notification(key, "ok", false)).await;
        }
    }
    for key in &keys[20..] {
        handle
            .enqueue(&store, notification(key, "critical", true))
            .await;
    }
    let pending = metrics
        .outbox_pending
        .get_or_create(&crate::metrics::SinkLabels {
            sink: "hook".into(),
        })
        .clone();
    eventually("the queue holds one entry per key", || pending.get() == 25).await;
    assert_eq!(
        store.outbox_list("hook").await.unwrap().len(),
        25,
        "the outbox is bounded like memory"
    );
    let coalesced = super::super::sink_counter(&metrics.sink_queue_coalesced, "hook");
    assert_eq!(coalesced.get(), 605 - 25);

    up.store(true, std::sync::atomic::Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(40);
    while received.lock().unwrap().len() < 25 {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the sink to deliver"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    running.await.unwrap();
    let mut expected: Vec<String> = keys[..20].iter().map(|key| format!("{key}:ok")).collect();
    expected.extend(keys[20..].iter().map(|key| format!("{key}:critical")));
    assert_eq!(
        *received.lock().unwrap(),
        expected,
        "the last state of every key, once each, in queue order"
    );
    assert!(store.outbox_list("hook").await.unwrap().is_empty());
}

#[tokio::test]
async fn an_entry_coalesced_away_that_still_comes_through_the_channel_is_not_queued_again() {
    let directory = tempfile::tempdir().unwrap();
    let store = embedded_store(&directory).await;
    let config = SinkConfig {
        max_queued: 1,
        ..sink(100)
    };
    let (mut task, handle, mut inbox) = SinkTask::new(
        config,
        &context(store.clone(), Metrics::default(), Directory::default()),
    );
    handle
        .enqueue(&store, notification("acme", "critical", true))
        .await;
    handle
        .enqueue(&store, notification("acme", "ok", false))
        .await;
    // The task reads the outbox (after an overflow, say) before the channel: the trigger is
    // coalesced away behind its resolve...
    assert!(task.take_up_outbox().await);
    assert_eq!(task.queue.len(), 1);
    // ...and then comes through the channel, late: it must not become the key's newest state.
    while let Ok(envelope) = inbox.try_recv() {
        task.receive(envelope).await;
    }
    let kept: Vec<&str> = task
        .queue
        .iter()
        .map(|queued| queued.envelope.notification.status.as_str())
        .collect();
    assert_eq!(kept, ["ok"], "the resolve stays the last state of acme");
    assert_eq!(store.outbox_list("hook").await.unwrap().len(), 1);
}
