//! The read endpoints served for real (on port 0), over a table filled in the test.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::model::Status;
use crate::tracker::Tracker;

/// A table of one split feed, `tenants`, and the HTTP state over it.
struct Served {
    tracker: Arc<Mutex<Tracker>>,
    state: HttpState,
    base: String,
    _directory: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

const NOW_MS: i64 = 1_764_547_200_000;

async fn serve_table(max_concurrent_reads: usize, max_key_series: usize) -> Served {
    let text = r#"
        [kafka]
        brokers = "localhost:9092"
        [[feed]]
        name = "tenants"
        topic = "tenants"
        split_by = "key"
        warn_after = "1m"
        critical_after = "2m"
    "#;
    let config = crate::config::parse(text, std::path::Path::new("test.toml"), &|_| None)
        .expect("valid config");
    let tracker = Arc::new(Mutex::new(Tracker::new(&config.feeds, NOW_MS)));
    let rules: Arc<[FeedRules]> = config.feeds.iter().map(FeedRules::from_config).collect();
    let clock: SharedClock = Arc::new(crate::clock::ManualClock::new(NOW_MS));
    let snapshots = Arc::new(Snapshots::new(tracker.clone()));
    let mut registry = Registry::default();
    let metrics = crate::metrics::Metrics::register(
        &mut registry,
        snapshots.clone(),
        rules.clone(),
        clock.clone(),
        max_key_series,
    );
    let directory = tempfile::tempdir().unwrap();
    let store = crate::state::StateStore::Embedded(
        crate::state::EmbeddedStore::open(directory.path().to_owned())
            .await
            .unwrap(),
    );
    let state = HttpState {
        pipelines: Arc::default(),
        audit_results: Arc::default(),
        snapshots,
        reads: ReadGate::new(NonZeroUsize::new(max_concurrent_reads).unwrap()),
        rules,
        clock: clock.clone(),
        registry: Arc::new(registry),
        readiness: Arc::new(Readiness::new(Arc::default(), false, false)),
        records_consumed: metrics.records_consumed.clone(),
        groups: Arc::default(),
        volume: Arc::default(),
        leadership: crate::ha::Leadership::new("test".into(), true),
        history: Arc::default(),
        silences: crate::silence::SilenceBook::new(crate::silence::Silences::new(), store, clock),
        access: Arc::new(Access {
            admin_token: None,
            read_token: None,
        }),
        reloads: None,
        held_by: crate::knowledge::HeldBy::new(1),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(serve(listener, state.clone(), shutdown.clone()));
    Served {
        tracker,
        state,
        base,
        _directory: directory,
        shutdown,
    }
}

impl Served {
    /// `keys` tenants, `tenant-N` seen `N % 50` seconds ago; the first `alerting` critical.
    fn fill(&self, keys: usize, alerting: usize) {
        let mut tracker = self.tracker.lock().unwrap();
        for index in 0..keys {
            let seen = NOW_MS - (index % 50) as i64 * 1_000;
            let id = tracker
                .observe(0, format!("tenant-{index}").as_bytes(), seen)
                .unwrap();
            let status = if index < alerting {
                Status::Critical
            } else {
                Status::Ok
            };
            tracker.set_status(id, status, seen);
        }
    }

    async fn get(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        self.get_within(path, Duration::from_secs(60)).await
    }

    async fn get_within(
        &self,
        path: &str,
        timeout: Duration,
    ) -> reqwest::Result<reqwest::Response> {
        reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .timeout(timeout)
            .send()
            .await
    }

    async fn text(&self, path: &str) -> String {
        let response = self.get(path).await.expect("answered");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.text().await.unwrap()
    }
}

/// At most `http.max_concurrent_reads` heavy reads run at once; the next waits for a turn
/// (it does not fail) and is served once one is given back. Cheap endpoints never wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_reads_past_the_limit_wait_for_a_turn() {
    let served = serve_table(1, 10_000).await;
    served.fill(100, 0);
    let held = served.state.reads.enter().await;
    for path in [
        "/metrics",
        "/api/v1/feeds",
        "/api/v1/feeds?limit=5",
        "/api/v1/feeds/tenants",
        "/",
        "/feeds/tenants",
    ] {
        let waited = served.get_within(path, Duration::from_millis(500)).await;
        assert!(
            waited.as_ref().is_err_and(reqwest::Error::is_timeout),
            "{path} was served while every read turn was taken: {waited:?}"
        );
    }
    assert_eq!(served.text("/healthz").await, "ok\n");
    drop(held);
    assert!(served
        .text("/metrics")
        .await
        .contains("freshwatch_feed_keys"));
    // The streaming task gives its turn back as it ends, which may be just after the client
    // has read the last byte.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while served.state.reads.available() != 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(served.state.reads.available(), 1, "the turn was given back");
}

/// `?limit=N` returns what the full (streamed) listing has first, in the same order, and the
/// full listing is every row, stalest first, ties broken by key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_read_is_the_head_of_the_full_listing() {
    let served = serve_table(4, 10_000).await;
    let keys = 3 * crate::snapshot::CHUNK + 11;
    served.fill(keys, 7);
    let all: Vec<FeedRow> = serde_json::from_str(&served.text("/api/v1/feeds").await).unwrap();
    assert_eq!(all.len(), keys);
    let mut sorted = all.clone();
    sorted.sort_by(stalest_first);
    assert_eq!(all, sorted, "stalest first");
    assert!(all[..7].iter().all(|row| row.status == "critical"));
    for limit in [1, 10, 500] {
        let head: Vec<FeedRow> =
            serde_json::from_str(&served.text(&format!("/api/v1/feeds?limit={limit}")).await)
                .unwrap();
        assert_eq!(head, all[..limit], "limit {limit}");
    }
    let ok: Vec<FeedRow> =
        serde_json::from_str(&served.text("/api/v1/feeds?status=ok&limit=3").await).unwrap();
    assert_eq!(ok, all[7..10]);
}

/// The keys of a feed past `metrics.max_key_series` are exported per key only when they are
/// not `ok`; the aggregates count them all. Under the bound, every key is exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_past_the_bound_exports_its_alerting_keys_and_the_aggregates() {
    let per_key = |text: &str, family: &str| -> usize {
        text.lines()
            .filter(|line| line.starts_with(&format!("{family}{{")))
            .count()
    };
    let families = [
        "freshwatch_feed_last_seen_timestamp_seconds",
        "freshwatch_feed_staleness_seconds",
        "freshwatch_feed_status",
        "freshwatch_feed_records_total",
    ];

    let over = serve_table(4, 1_000).await;
    over.fill(5_000, 3);
    let text = over.text("/metrics").await;
    for family in families {
        assert_eq!(
            per_key(&text, family),
            3,
            "{family}: the critical keys only"
        );
    }
    assert!(text.contains("freshwatch_feed_status{feed=\"tenants\",key=\"tenant-2\"} 2\n"));
    assert!(
        !text.contains("key=\"tenant-3\""),
        "an ok key is not exported"
    );
    assert!(text.contains("freshwatch_feed_keys_by_status{feed=\"tenants\",status=\"ok\"} 4997\n"));
    assert!(
        text.contains("freshwatch_feed_keys_by_status{feed=\"tenants\",status=\"critical\"} 3\n")
    );
    assert!(
        text.contains("freshwatch_feed_keys_by_status{feed=\"tenants\",status=\"warning\"} 0\n")
    );
    assert!(text.contains("freshwatch_feed_max_staleness_seconds{feed=\"tenants\"} 49.0\n"));
    assert!(text.contains("freshwatch_feed_key_series_limited{feed=\"tenants\"} 1\n"));
    assert!(text.contains("freshwatch_feed_keys{feed=\"tenants\"} 5000\n"));

    let under = serve_table(4, 10_000).await;
    under.fill(5_000, 3);
    let text = under.text("/metrics").await;
    for family in families {
        assert_eq!(per_key(&text, family), 5_000, "{family}: every key");
    }
    assert!(text.contains("freshwatch_feed_key_series_limited{feed=\"tenants\"} 0\n"));
    assert!(text.contains("freshwatch_feed_keys_by_status{feed=\"tenants\",status=\"ok\"} 4997\n"));
}

/// `/metrics` and an unlimited listing stream (chunked, no length known in advance); a limited
/// listing, built whole, does not need to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_table_reads_stream() {
    let served = serve_table(4, 10_000).await;
    served.fill(2_000, 0);
    for path in ["/metrics", "/api/v1/feeds", "/api/v1/feeds/tenants"] {
        let response = served.get(path).await.expect("answered");
        assert!(response.status().is_success(), "{path}");
        assert_eq!(
            response
                .headers()
                .get(header::TRANSFER_ENCODING)
                .map(|value| value.to_str().unwrap().to_owned()),
            Some("chunked".to_owned()),
            "{path} streams"
        );
        assert!(
            response.content_length().is_none(),
            "{path}: {:?}",
            response.headers()
        );
        assert!(response.bytes().await.unwrap().len() > 100_000, "{path}");
    }
}
