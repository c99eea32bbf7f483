//! Unit tests of the Alertmanager sink: fallbacks, refused batches, bounds and the clock.

use std::collections::HashMap;

use super::*;
use crate::alert::delivery::tests::{context, embedded_store, sink};
use crate::alert::tests::transition;
use crate::alert::Directory;
use crate::alert::SinkTask;
use crate::model::Status;
use prometheus_client::metrics::counter::Counter;

#[tokio::test]
async fn changes_alertmanager_does_not_take_go_to_the_fallback_and_their_resolve_follows() {
    let directory_path = tempfile::tempdir().unwrap();
    let store = embedded_store(&directory_path).await;
    let sinks = Directory::default();
    let mut backup_config = sink(100);
    backup_config.name = "oncall-mail".into();
    let (_backup, backup_handle, mut backup) = SinkTask::new(
        backup_config,
        &context(store.clone(), Metrics::default(), sinks.clone()),
    );
    let _ = sinks.set(HashMap::from([("oncall-mail".to_owned(), backup_handle)]));
    let config = AlertmanagerConfig {
        name: "alertmanager-0".into(),
        url: reqwest::Url::parse("http://127.0.0.1:9").unwrap(),
        resend_interval: Duration::from_secs(60),
        timeout: Duration::from_secs(1),
        min_severity: Severity::Warning,
        feeds: vec![],
        fallback: vec!["oncall-mail".into()],
        fallback_after: Duration::ZERO,
        system: true,
    };
    let mut sink = AlertmanagerSink::new(
        config,
        false,
        &context(store.clone(), Metrics::default(), sinks.clone()),
    );
    let mut received = || {
        let mut statuses = Vec::new();
        while let Ok(envelope) = backup.try_recv() {
            statuses.push(envelope.notification.status.as_str());
        }
        statuses
    };

    // Alertmanager is down: the page falls back after fallback_after (zero here).
    let page = Transition {
        key: "acme".into(),
        ..transition(Status::Ok, Status::Critical, Some(1))
    };
    sink.apply(Notice::Changed(page.clone()), 0);
    sink.fall_back(false).await;
    assert_eq!(received(), ["critical"]);

    // Alertmanager is back and takes the resolve, which still follows to the fallback.
    sink.config.fallback_after = Duration::from_secs(3600);
    let resolve = Transition {
        from: Status::Critical,
        to: Status::Ok,
        ..page.clone()
    };
    sink.apply(Notice::Changed(resolve), 0);
    sink.accepted().await;
    assert_eq!(received(), ["ok"], "the fallback's incident closes too");
    assert_eq!(sink.fallbacks.open_incidents(), 0);

    // A change Alertmanager takes in time never reaches the fallback.
    sink.apply(Notice::Changed(page), 0);
    sink.fall_back(false).await;
    sink.accepted().await;
    assert!(received().is_empty());
    assert!(sink.unaccepted.is_empty());
}

/// An Alertmanager sink at `url` with no routing and no fallback.
async fn plain_sink(url: &str, directory: &tempfile::TempDir) -> AlertmanagerSink {
    let config = AlertmanagerConfig {
        name: "alertmanager-0".into(),
        url: reqwest::Url::parse(url).unwrap(),
        resend_interval: Duration::from_secs(60),
        timeout: Duration::from_secs(5),
        min_severity: Severity::Warning,
        feeds: vec![],
        fallback: vec![],
        fallback_after: Duration::from_secs(120),
        system: true,
    };
    AlertmanagerSink::new(
        config,
        false,
        &context(
            embedded_store(directory).await,
            Metrics::default(),
            Directory::default(),
        ),
    )
}

#[tokio::test]
async fn one_refused_alert_does_not_drop_the_others_of_its_batch() {
    // An Alertmanager that refuses any batch holding an alert labelled `feed="bad"`.
    let received: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/api/v2/alerts",
        axum::routing::post(move |axum::Json(batch): axum::Json<Vec<Value>>| {
            let kept = kept.clone();
            async move {
                if batch.iter().any(|alert| alert["labels"]["feed"] == "bad") {
                    return axum::http::StatusCode::BAD_REQUEST;
                }
                kept.lock().unwrap().extend(batch);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let directory = tempfile::tempdir().unwrap();
    let mut sink = plain_sink(&format!("http://{address}"), &directory).await;
    for feed in ["bad", "good"] {
        sink.apply(
            Notice::System(crate::alert::SystemAlert {
                alertname: crate::alert::FEED_BLIND,
                severity: Severity::Critical,
                labels: vec![("feed", feed.into())],
                summary: String::new(),
                firing: true,
                since_ms: 0,
            }),
            0,
        );
    }
    assert!(matches!(sink.attempt(0).await, Delivery::Permanent { .. }));
    assert_eq!(sink.isolate(0).await, 1);
    assert!(sink.pending.is_empty());
    let received = received.lock().unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["labels"]["feed"], "good");
}

#[tokio::test]
async fn changes_waiting_for_a_long_dead_alertmanager_are_bounded() {
    let directory = tempfile::tempdir().unwrap();
    let mut sink = plain_sink("http://127.0.0.1:9", &directory).await;
    let change =
        Notification::from_transition(&transition(Status::Ok, Status::Critical, Some(0))).unwrap();
    for index in 0..MAX_UNACCEPTED + 5 {
        let fell_back = index % 2 == 1;
        sink.unaccepted
            .push((Instant::now(), change.clone(), fell_back));
    }
    sink.bound_unaccepted();
    assert_eq!(sink.unaccepted.len(), MAX_UNACCEPTED);
    assert!(
        !sink.unaccepted[0].2 && !sink.unaccepted[2].2,
        "the ones already handed to the fallbacks went first"
    );
}

#[tokio::test]
async fn starts_at_and_ends_at_follow_the_sink_clock() {
    const NOW_MS: i64 = 1_577_836_800_000; // 2020-01-01T00:00:00Z, far from the real now
    let (sender, mut batches) = tokio::sync::mpsc::unbounded_channel::<Vec<Value>>();
    let app = axum::Router::new().route(
        "/api/v2/alerts",
        axum::routing::post(move |axum::Json(batch): axum::Json<Vec<Value>>| {
            let _ = sender.send(batch);
            async { axum::http::StatusCode::OK }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let directory = tempfile::tempdir().unwrap();
    let mut sink_context = context(
        embedded_store(&directory).await,
        Metrics::default(),
        Directory::default(),
    );
    sink_context.clock = Arc::new(crate::clock::ManualClock::new(NOW_MS));
    let config = AlertmanagerConfig {
        name: "alertmanager-0".into(),
        url: reqwest::Url::parse(&format!("http://{address}")).unwrap(),
        resend_interval: Duration::from_secs(60),
        timeout: Duration::from_secs(5),
        min_severity: Severity::Warning,
        feeds: vec![],
        fallback: vec![],
        fallback_after: Duration::from_secs(120),
        system: true,
    };
    let mut sink = AlertmanagerSink::new(config, true, &sink_context);
    let (_notices, mut inbox) =
        crate::alert::inbox::channel::<Notice, Coalesced>("alertmanager-0", 8, Counter::default());
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move { sink.run(&mut inbox, &stop).await });
    let batch = tokio::time::timeout(Duration::from_secs(10), batches.recv())
        .await
        .expect("the watchdog is sent at once")
        .unwrap();
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(batch[0]["labels"]["alertname"], WATCHDOG);
    assert_eq!(batch[0]["startsAt"], "2020-01-01T00:00:00.000Z");
    assert_eq!(
        batch[0]["endsAt"], "2020-01-01T00:04:00.000Z",
        "four resend intervals after the clock's now"
    );
}

#[tokio::test]
async fn notices_over_the_channel_bound_are_coalesced_per_alert_and_end_in_the_right_state() {
    let directory = tempfile::tempdir().unwrap();
    let mut sink = plain_sink("http://127.0.0.1:9", &directory).await;
    let overflows = Counter::default();
    let (sender, mut inbox) =
        crate::alert::inbox::channel::<Notice, Coalesced>("alertmanager-0", 1, overflows.clone());
    let series = |key: &str, from, to| {
        Notice::Changed(Transition {
            key: key.into(),
            ..transition(from, to, Some(0))
        })
    };
    use crate::alert::inbox::Sent;
    assert_eq!(
        sender.send(series("acme", Status::Ok, Status::Warning)),
        Sent::Queued
    );
    // The sink is wedged: these coalesce; acme's two become warning → ok.
    for notice in [
        series("acme", Status::Warning, Status::Critical),
        series("acme", Status::Critical, Status::Ok),
        series("globex", Status::Ok, Status::Critical),
    ] {
        assert_eq!(sender.send(notice), Sent::Overflowed, "never waits");
    }
    assert_eq!(overflows.get(), 3);

    let Received::Item(first) = inbox.recv().await else {
        panic!("what was in the channel comes first");
    };
    sink.apply(first, 0);
    let Received::Overflow(rest, coalesced) = inbox.recv().await else {
        panic!("then what overflowed");
    };
    sink.apply_all(rest, coalesced);

    let firing: Vec<(String, String)> = sink
        .firing
        .keys()
        .map(|labels| (labels["key"].clone(), labels["severity"].clone()))
        .collect();
    assert_eq!(
        firing,
        [("globex".to_owned(), "critical".to_owned())],
        "acme's warning was resolved, not left firing behind a coalesced critical"
    );
    let acme_warning = sink
        .pending
        .iter()
        .find(|(labels, _)| labels["key"] == "acme" && labels["severity"] == "warning")
        .map(|(_, alert)| alert)
        .expect("acme's warning goes out");
    assert!(acme_warning.get("endsAt").is_some(), "as a resolve");
}

#[tokio::test]
async fn the_resolve_sent_because_an_alert_escalated_says_so() {
    let directory = tempfile::tempdir().unwrap();
    let mut sink = plain_sink("http://127.0.0.1:9", &directory).await;
    sink.apply(
        Notice::Changed(transition(Status::Ok, Status::Warning, Some(0))),
        0,
    );
    sink.apply(
        Notice::Changed(transition(Status::Warning, Status::Critical, Some(0))),
        1_000,
    );
    let resolved = sink
        .pending
        .iter()
        .find(|(labels, _)| labels["severity"] == "warning")
        .map(|(_, alert)| alert)
        .expect("the warning is resolved");
    let summary = resolved["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("escalated to critical: "),
        "not 'fresh again': {summary}"
    );
    sink.apply(
        Notice::Changed(transition(Status::Critical, Status::Ok, Some(0))),
        2_000,
    );
    let resolved = sink
        .pending
        .iter()
        .find(|(labels, _)| labels["severity"] == "critical")
        .map(|(_, alert)| alert)
        .expect("the critical is resolved");
    assert!(!resolved["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains("escalated"));
}
