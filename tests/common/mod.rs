//! Shared helpers for integration tests: real servers on free loopback ports.
//!
//! A missing server binary fails the test with the command that installs it; nothing skips.
#![allow(dead_code)]

pub mod groups;
pub mod markers;
pub mod receiver;
pub mod relay;

use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Finds `name` on PATH (and in /usr/sbin, /usr/bin) or fails naming the install command.
pub fn require_binary(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let candidates = path
        .split(':')
        .map(PathBuf::from)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")]);
    for directory in candidates {
        let candidate = directory.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    // Most binaries the tests use ship in a Debian package of the same name.
    let package = match name {
        "promtool" => "prometheus",
        "redis-cli" => "redis-tools",
        other => other,
    };
    panic!("{name} not found: run `scripts/setup` (or `apt-get install {package}`)");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn freshwatch_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_freshwatch"))
}

fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Polls `check` every 100ms until it is true; panics naming `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A real `redis-server` with an append-only file in a temp dir, so a restart keeps data.
pub struct RedisServer {
    pub port: u16,
    pub url: String,
    directory: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            url: String::new(),
            directory: tempfile::tempdir().unwrap(),
            child: None,
        };
        server.url = format!("redis://127.0.0.1:{}/0", server.port);
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let binary = require_binary("redis-server");
        let log_path = self.directory.path().join("redis.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let child = Command::new(binary)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
            ])
            .arg(self.directory.path())
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--daemonize",
                "no",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping() {
                return;
            }
            if Instant::now() >= deadline {
                panic!("redis-server did not answer PING:\n{}", log_tail(&log_path));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
    }

    /// SIGKILL: the server vanishes mid-flight.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port and directory; the append-only file brings the data back.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts again with nothing: as a Redis without persistence restarts, or a failover to an
    /// empty replica.
    pub fn restart_empty(&mut self) {
        self.kill();
        for entry in std::fs::read_dir(self.directory.path()).unwrap().flatten() {
            if entry.file_name() != "redis.log" {
                let path = entry.path();
                let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
            }
        }
        self.spawn();
    }

    /// SIGSTOP: the server still accepts connections (the kernel does) but answers nothing, as
    /// in a long pause or a network blip. [`RedisServer::thaw`] ends it.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`RedisServer::freeze`].
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("redis-server running");
        let status = Command::new("kill")
            .args([&format!("-{name}"), &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name}");
    }

    /// Runs one command, e.g. `["CLIENT", "PAUSE", "30000", "WRITE"]`.
    pub fn command(&self, args: &[&str]) -> redis::Value {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let mut connection = client.get_connection().unwrap();
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query(&mut connection).unwrap()
    }
}

/// The Tansu binary `scripts/setup` builds into the cache (or `FRESHWATCH_TANSU`); fails naming
/// the command that builds it.
pub fn tansu_binary() -> PathBuf {
    if let Ok(path) = std::env::var("FRESHWATCH_TANSU") {
        return PathBuf::from(path);
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache")
        });
    let cached = cache.join("freshwatch/tansu-0.6.0/bin/tansu");
    if cached.is_file() {
        return cached;
    }
    panic!(
        "tansu not found at {}: run `scripts/setup` (it runs `cargo install tansu --version 0.6.0 --locked --features libsql --root {}`)",
        cached.display(),
        cache.join("freshwatch/tansu-0.6.0").display()
    );
}

/// Tansu, a Kafka-protocol broker in a process of its own, on a free port with a SQLite file, so
/// killing and restarting it keeps its topics, records and committed offsets.
pub struct TansuBroker {
    pub port: u16,
    pub brokers: String,
    directory: tempfile::TempDir,
    child: Option<Child>,
}

impl TansuBroker {
    pub fn start() -> TansuBroker {
        let port = free_port();
        let mut broker = TansuBroker {
            port,
            brokers: format!("127.0.0.1:{port}"),
            directory: tempfile::tempdir().unwrap(),
            child: None,
        };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let log_path = self.directory.path().join("tansu.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(tansu_binary())
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            // Tansu reads the path after `sqlite://` relative to its working directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.directory.path())
            .env("RUST_LOG", "warn,tansu_broker::coordinator=info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("tansu starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen:\n{}",
                log_tail(&log_path)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The broker's log, for failure messages.
    pub fn log(&self) -> String {
        log_tail(&self.directory.path().join("tansu.log"))
    }

    /// Creates a topic with `partitions` partitions through Tansu's own CLI.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        self.create_topic_with(name, partitions, &[]);
    }

    /// Creates a topic with topic configs such as `("retention.ms", "86400000")`.
    pub fn create_topic_with(&self, name: &str, partitions: u32, configs: &[(&str, &str)]) {
        let mut command = Command::new(tansu_binary());
        command
            .args(["topic", "create", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port));
        for (key, value) in configs {
            command.args(["--config", &format!("{key}={value}")]);
        }
        let output = command
            .args(["--partitions", &partitions.to_string(), name])
            .output()
            .expect("tansu topic create runs");
        assert!(
            output.status.success(),
            "tansu topic create {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// SIGKILL: the broker vanishes; its SQLite file stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port and file.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The amnesia scenario, on any broker: feed `quiet`'s only record (already produced, at
/// `silent_since_ms`) pages critical; Redis comes back empty; freshwatch notices and writes its
/// state back; then a `kill -9`, and the silence must still be known from Redis alone (its
/// offset is committed past the record, so Kafka will not tell it again).
pub async fn ten_day_silence_survives_redis_loss(
    redis: &mut RedisServer,
    directory: &std::path::Path,
    config: &str,
    silent_since_ms: i64,
) {
    let mut freshwatch = FreshwatchProcess::start(directory, config);
    freshwatch.wait_ready().await;
    wait_until("quiet critical", Duration::from_secs(60), || async {
        freshwatch.status("quiet", "").await.as_deref() == Some("critical")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart_empty();
    assert_eq!(
        redis.command(&["EXISTS", "freshwatch:{quiet}:last_seen"]),
        redis::Value::Int(0),
        "redis came back empty"
    );
    wait_until(
        "freshwatch notices and writes its state back",
        Duration::from_secs(20),
        || async {
            redis.command(&["HGET", "freshwatch:{quiet}:status", ""]) != redis::Value::Nil
                && freshwatch
                    .metric("freshwatch_state_store_resets_total")
                    .await
                    .is_some_and(|resets| resets >= 1.0)
        },
    )
    .await;
    freshwatch.kill_and_restart();
    freshwatch.wait_ready().await;
    assert_eq!(
        freshwatch.status("quiet", "").await.as_deref(),
        Some("critical"),
        "the ten-day silence is remembered:\n{}",
        freshwatch.log()
    );
    assert_eq!(
        freshwatch.last_seen_ms("quiet", "").await,
        Some(silent_since_ms)
    );
}

/// A producer for scenario tests: small batches, a deep queue.
pub fn producer(brokers: &str) -> rdkafka::producer::BaseProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap()
}

/// Produces one record (`{}` payload) with a CreateTime, and waits until it is acknowledged.
pub fn produce_one(
    producer: &rdkafka::producer::BaseProducer,
    topic: &str,
    key: &str,
    timestamp_ms: i64,
) {
    use rdkafka::producer::Producer;
    producer
        .send(
            rdkafka::producer::BaseRecord::to(topic)
                .key(key)
                .payload("{}")
                .timestamp(timestamp_ms),
        )
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real Prometheus Alertmanager, clustering off.
pub struct Alertmanager {
    pub port: u16,
    pub url: String,
    directory: tempfile::TempDir,
    child: Child,
}

impl Alertmanager {
    pub fn start() -> Alertmanager {
        let binary = require_binary("prometheus-alertmanager");
        let directory = tempfile::tempdir().unwrap();
        let config = directory.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: 'null'\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: 'null'\n",
        )
        .unwrap();
        let port = free_port();
        let log_path = directory.path().join("alertmanager.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                directory.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("alertmanager starts");
        let alertmanager = Alertmanager {
            port,
            url: format!("http://127.0.0.1:{port}"),
            directory,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if http_get_ok(port, "/-/ready") {
                return alertmanager;
            }
            if Instant::now() >= deadline {
                panic!("alertmanager not ready:\n{}", log_tail(&log_path));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every alert Alertmanager holds, as its own API reports them.
    pub async fn alerts(&self) -> Vec<serde_json::Value> {
        let url = format!(
            "{}/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true",
            self.url
        );
        reqwest::get(url).await.unwrap().json().await.unwrap()
    }

    pub async fn alerts_named(&self, alertname: &str) -> Vec<serde_json::Value> {
        self.alerts()
            .await
            .into_iter()
            .filter(|alert| alert["labels"]["alertname"] == alertname)
            .collect()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking `GET path` on loopback that reports a 2xx.
fn http_get_ok(port: u16, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && head[9] == b'2'
}

/// One record for [`kcat_produce`].
#[derive(Debug, Clone)]
pub struct KcatRecord {
    pub key: Option<String>,
    pub value: String,
    pub headers: Vec<(String, String)>,
}

/// Produces records with Debian's `kcat`, an independent client; one kcat run per record so
/// each can carry its own key and headers.
pub fn kcat_produce(brokers: &str, topic: &str, records: &[KcatRecord]) {
    let kcat = require_binary("kcat");
    for record in records {
        assert!(
            !record.value.contains('\n'),
            "kcat values are newline-delimited"
        );
        let mut command = Command::new(&kcat);
        command.args(["-b", brokers, "-t", topic, "-P", "-D", "\n"]);
        let mut line = record.value.clone();
        if let Some(key) = &record.key {
            command.args(["-K", "\t"]);
            line = format!("{key}\t{}", record.value);
        }
        for (name, value) in &record.headers {
            command.args(["-H", &format!("{name}={value}")]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kcat starts");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "kcat failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A local SMTP server (Python's aiosmtpd) that prints every message it receives.
pub struct SmtpServer {
    pub port: u16,
    log: PathBuf,
    _directory: tempfile::TempDir,
    child: Child,
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        let python = require_binary("python3");
        let probe = Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .output()
            .unwrap();
        assert!(
            probe.status.success(),
            "aiosmtpd not installed: run `scripts/setup` (or `python3 -m pip install aiosmtpd`)"
        );
        let directory = tempfile::tempdir().unwrap();
        let log = directory.path().join("smtp.log");
        let port = free_port();
        let child = Command::new(python)
            .args([
                "-u",
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        SmtpServer {
            port,
            log,
            _directory: directory,
            child,
        }
    }

    /// Everything received so far, as aiosmtpd printed it.
    pub fn received(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `freshwatch run` as a separate process, so tests can `kill -9` it.
pub struct FreshwatchProcess {
    pub port: u16,
    pub base_url: String,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl FreshwatchProcess {
    /// Writes `config` (its `[http]` section is added here) to `directory` and starts it.
    pub fn start(directory: &std::path::Path, config: &str) -> FreshwatchProcess {
        FreshwatchProcess::start_with_http(directory, config, "")
    }

    /// Like [`FreshwatchProcess::start`], with more keys in `[http]` (`http_keys`).
    pub fn start_with_http(
        directory: &std::path::Path,
        config: &str,
        http_keys: &str,
    ) -> FreshwatchProcess {
        let port = free_port();
        let path = directory.join("freshwatch.toml");
        std::fs::write(
            &path,
            format!("{config}\n[http]\nlisten = \"127.0.0.1:{port}\"\n{http_keys}\n"),
        )
        .unwrap();
        let mut process = FreshwatchProcess {
            port,
            base_url: format!("http://127.0.0.1:{port}"),
            config: path,
            log: directory.join("freshwatch.log"),
            child: None,
        };
        process.spawn();
        process
    }

    /// This replica's host name: its directory's, kept across restarts.
    fn replica_name(&self) -> String {
        let directory = self.config.parent().and_then(|path| path.file_name());
        format!(
            "fw-{}",
            directory.map_or("replica".into(), |name| name.to_string_lossy())
        )
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(freshwatch_bin())
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info,librdkafka=warn")
            // One replica, one stable name (its static group membership, `kafka.instance_id`'s
            // default), as separate hosts would have: several replicas run on this machine.
            .env("HOSTNAME", self.replica_name())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("freshwatch starts");
        self.child = Some(child);
    }

    /// The config file it runs with (tests rewrite it before a reload).
    pub fn config_path(&self) -> &std::path::Path {
        &self.config
    }

    /// Sends a signal (`"HUP"`, `"TERM"`) to the running process.
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("running");
        let status = Command::new("kill")
            .args([&format!("-{name}"), &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name}");
    }

    /// Waits until `sink` delivered everything (an entry left in its outbox would rightly go
    /// out again after a restart).
    pub async fn wait_outbox_empty(&self, sink: &str) {
        let series = format!("freshwatch_outbox_pending{{sink=\"{sink}\"}}");
        wait_until("the outbox is empty", Duration::from_secs(15), || async {
            self.metric(&series).await == Some(0.0)
        })
        .await;
    }

    /// SIGKILL, then start again with the same config.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM: a graceful stop (leaves the consumer group, flushes state).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts again after [`FreshwatchProcess::stop`] or [`FreshwatchProcess::kill`].
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGTERM, then how long the process took to exit (`None`: still running after `limit`).
    pub fn terminate_within(&mut self, limit: Duration) -> Option<Duration> {
        self.signal("TERM");
        let asked = Instant::now();
        let child = self.child.as_mut().expect("running");
        while asked.elapsed() < limit {
            if matches!(child.try_wait(), Ok(Some(_))) {
                self.child = None;
                return Some(asked.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Whether the process is still alive (it has not exited on its own).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn wait_ready(&self) {
        let url = format!("{}/readyz", self.base_url);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = reqwest::get(&url).await {
                if response.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "freshwatch not ready; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn rows(&self) -> Vec<serde_json::Value> {
        match reqwest::get(format!("{}/api/v1/feeds", self.base_url)).await {
            Ok(response) => response.json().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    pub async fn status(&self, feed: &str, key: &str) -> Option<String> {
        self.rows()
            .await
            .into_iter()
            .find(|row| row["feed"] == feed && row["key"] == key)
            .map(|row| row["status"].as_str().unwrap_or_default().to_owned())
    }

    /// One field of a series' row in `/api/v1/feeds`.
    pub async fn feed_field(
        &self,
        feed: &str,
        key: &str,
        field: &str,
    ) -> Option<serde_json::Value> {
        self.rows()
            .await
            .into_iter()
            .find(|row| row["feed"] == feed && row["key"] == key)
            .map(|row| row[field].clone())
    }

    /// A series' last-seen (unix ms) from the API, `None` until it exists.
    pub async fn last_seen_ms(&self, feed: &str, key: &str) -> Option<i64> {
        let text = self.feed_field(feed, key, "last_seen").await?;
        let parsed = chrono::DateTime::parse_from_rfc3339(text.as_str()?).ok()?;
        Some(parsed.timestamp_millis())
    }

    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = reqwest::get(format!("{}/metrics", self.base_url))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
    }
}

impl Drop for FreshwatchProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A three-node Redis Cluster (no replicas), slots assigned with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<String>,
    _directory: tempfile::TempDir,
    children: Vec<Child>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let server = require_binary("redis-server");
        let cli = require_binary("redis-cli");
        let directory = tempfile::tempdir().unwrap();
        let mut children = Vec::new();
        let mut ports = Vec::new();
        for node in 0..3 {
            let port = free_port();
            let node_dir = directory.path().join(format!("node{node}"));
            std::fs::create_dir_all(&node_dir).unwrap();
            let child = Command::new(&server)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
                .arg(&node_dir)
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .args(["--save", "", "--appendonly", "yes", "--daemonize", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            children.push(child);
            ports.push(port);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in &ports {
            while TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "cluster node {port} did not start"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let addresses: Vec<String> = ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let created = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            created.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in &ports {
            loop {
                let info = Command::new(&cli)
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "cluster not ok on {port}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        RedisCluster {
            nodes: ports
                .iter()
                .map(|port| format!("redis://127.0.0.1:{port}"))
                .collect(),
            _directory: directory,
            children,
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Wall-clock now, unix ms.
/// The config of one of several replicas sharing `group` and a Redis, with short sessions,
/// leases and reloads so takeovers happen in seconds; `feeds` (and sinks) follow it.
pub fn replica_config(brokers: &str, redis_url: &str, group: &str, feeds: &str) -> String {
    format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
[kafka.properties]
"fetch.wait.max.ms" = "50"
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
"statistics.interval.ms" = "200"

[state]
redis_url = "{redis_url}"
flush_interval = "100ms"

[evaluation]
interval = "200ms"
# Seconds-long thresholds: FreshwatchFeedBlind is tests/knowing.rs' subject, not these.
blind_after = "1h"

[ha]
lease = "3s"
reload_interval = "300ms"
{feeds}"#
    )
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The runtime scenario tests block on (the mock cluster stays on the test thread).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
