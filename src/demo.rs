//! `freshwatch demo`: the whole pipeline with no servers at all.
//!
//! librdkafka's mock cluster runs in-process on a thread of its own (it is not `Send`), with a
//! producer beside it. Three feeds flow; `payments` goes silent after a few seconds and the
//! tenant `initech` never shows up, and the consumer group `demo-billing-loader` reads
//! `demo.orders` for a few seconds, then dies while orders keep flowing (under a 50-second
//! demo retention, so its data-loss countdown runs out within the minute). So within a minute
//! the log shows warnings, then critical alerts, while `http://127.0.0.1:9187/` serves the API and metrics. State goes to a temporary
//! embedded store that is removed at exit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;

use crate::clock::SystemClock;
use crate::config::Config;

/// How the demo's feeds behave.
const SILENT_AFTER: Duration = Duration::from_secs(5);

/// The demo's config, pointed at the mock cluster's `brokers`.
pub fn demo_config(brokers: &str, listen: SocketAddr, state_path: &std::path::Path) -> Config {
    let text = format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "freshwatch-demo"
groups_interval = "1s"

[state]
path = "{state}"

[http]
listen = "{listen}"

[evaluation]
interval = "1s"

[defaults]
warn_after = "10s"
critical_after = "20s"

[[feed]]
name = "orders"
topic = "demo.orders"

[[feed]]
name = "profiles"
topic = "demo.profile-updates"
split_by = {{ json = "/tenant_id" }}
timestamp = {{ json = "/updated_at" }}
expected = ["acme", "globex", "initech"]

[[feed]]
name = "payments"
topic = "demo.payments"
timestamp = {{ header = "ts" }}

[[group]]
group_id = "demo-billing-loader"
topics = ["demo.orders"]
warn_after = "10s"
critical_after = "20s"
stall_after = "5s"
retention = "50s"
loss_warn_before = "45s"
loss_critical_before = "30s"
"#,
        state = state_path.display().to_string().replace('\\', "\\\\"),
    );
    crate::config::parse(&text, std::path::Path::new("<demo>"), &|_| None)
        .expect("the demo config is valid")
}

/// Runs the mock cluster and producer until `stop` fires. Sends the bootstrap servers first.
fn run_cluster(ready: std::sync::mpsc::Sender<Result<String, String>>, stop: CancellationToken) {
    let cluster = match MockCluster::new(1) {
        Ok(cluster) => cluster,
        Err(error) => {
            let _ = ready.send(Err(format!("cannot start the mock cluster: {error}")));
            return;
        }
    };
    for (topic, partitions) in [
        ("demo.orders", 1),
        ("demo.profile-updates", 3),
        ("demo.payments", 1),
    ] {
        if let Err(error) = cluster.create_topic(topic, partitions, 1) {
            let _ = ready.send(Err(format!("cannot create {topic}: {error}")));
            return;
        }
    }
    let brokers = cluster.bootstrap_servers();
    let producer: BaseProducer = match ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
    {
        Ok(producer) => producer,
        Err(error) => {
            let _ = ready.send(Err(format!("cannot create the demo producer: {error}")));
            return;
        }
    };
    // The watched application: reads orders and commits, until it dies.
    let mut loader: Option<rdkafka::consumer::BaseConsumer> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "demo-billing-loader")
        .set("auto.commit.interval.ms", "1000")
        .set("auto.offset.reset", "earliest")
        .create()
        .ok();
    if let Some(loader) = &loader {
        use rdkafka::consumer::Consumer as _;
        let _ = loader.subscribe(&["demo.orders"]);
    }
    let _ = ready.send(Ok(brokers));
    let started = Instant::now();
    let mut sequence = 0u64;
    while !stop.is_cancelled() {
        let now = chrono::Utc::now();
        let order = format!(r#"{{"order_id":{sequence},"amount":42}}"#);
        let _ = producer.send(BaseRecord::<(), _>::to("demo.orders").payload(&order));
        for tenant in ["acme", "globex"] {
            let update = format!(
                r#"{{"tenant_id":"{tenant}","profile_id":"p{sequence}","updated_at":"{}"}}"#,
                now.to_rfc3339()
            );
            let _ = producer.send(
                BaseRecord::to("demo.profile-updates")
                    .key(tenant)
                    .payload(&update),
            );
        }
        if started.elapsed() < SILENT_AFTER {
            let millis = now.timestamp_millis().to_string();
            let headers = OwnedHeaders::new().insert(Header {
                key: "ts",
                value: Some(&millis),
            });
            let _ = producer.send(
                BaseRecord::<(), _>::to("demo.payments")
                    .payload(r#"{"payment":"ok"}"#)
                    .headers(headers),
            );
        } else if sequence % 10 == 0 {
            tracing::info!("demo: payments producer is silent (as planned)");
        }
        producer.poll(Duration::from_millis(0));
        if started.elapsed() < SILENT_AFTER {
            if let Some(loader) = &loader {
                while let Some(Ok(_)) = loader.poll(Duration::from_millis(10)) {}
            }
        } else if loader.take().is_some() {
            tracing::info!("demo: the demo-billing-loader consumer group died (as planned)");
        }
        sequence += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = producer.flush(Duration::from_secs(1));
    drop(cluster);
}

/// Runs the demo until `shutdown` fires.
pub async fn run(listen: SocketAddr, shutdown: CancellationToken) -> anyhow::Result<()> {
    let state_path: PathBuf =
        std::env::temp_dir().join(format!("freshwatch-demo-{}", std::process::id()));
    let cluster_stop = CancellationToken::new();
    let (ready_sender, ready) = std::sync::mpsc::channel();
    let cluster_token = cluster_stop.clone();
    let cluster_thread = std::thread::Builder::new()
        .name("freshwatch-demo-cluster".into())
        .spawn(move || run_cluster(ready_sender, cluster_token))?;
    let brokers = tokio::task::spawn_blocking(move || ready.recv())
        .await?
        .map_err(|_| anyhow::anyhow!("the mock cluster thread stopped"))?
        .map_err(|message| anyhow::anyhow!(message))?;
    tracing::info!(%brokers, "demo: mock Kafka cluster started; payments will go silent after 5s, tenant initech never appears");
    let config = demo_config(&brokers, listen, &state_path);
    let running = crate::app::start(config, Arc::new(SystemClock), shutdown.clone()).await?;
    tracing::info!(
        "demo: open http://{}/api/v1/feeds or run `freshwatch status --url http://{}`",
        running.http_address,
        running.http_address
    );
    let result = running.wait().await;
    cluster_stop.cancel();
    let _ = tokio::task::spawn_blocking(move || cluster_thread.join()).await;
    let _ = std::fs::remove_dir_all(&state_path);
    Ok(result?)
}
