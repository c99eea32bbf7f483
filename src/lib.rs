//! freshwatch: a data-pipeline freshness watchdog for Kafka.
//!
//! # Layout
//! Records flow one way:
//!
//! ```text
//! source (Kafka) ──▶ extract ──▶ tracker ──▶ evaluate ──▶ alert (Alertmanager, webhook)
//!    │  (statistics, metadata)                  ▲
//!    └────────────────────────▶ knowledge ───────┘
//! groups::watcher (OffsetFetch, ListOffsets) ──▶ groups ──▶ alert
//!                     state (Redis / embedded), http (API, /metrics) read from the side
//! ```
//!
//! - [`config`]: the TOML file, validated into typed config; errors name the key.
//! - [`source`]: the librdkafka consumer thread; applies records to the tracker in batches and
//!   commits offsets only after the state they produced is stored.
//! - [`extract`]: per record, the split value and event time; no allocation on the hot path.
//! - [`tracker`]: the series table, last-seen as a max, and what changed since the last look.
//! - [`knowledge`]: the one home of "can this feed be judged now?": per partition, whether a
//!   live replica has read it to a high watermark observed after the crossing.
//! - [`cadence`]: the one home of "which thresholds does this series get": each series' learned
//!   gap histogram (`thresholds = "learned"`) and the rule that turns it into thresholds.
//! - [`evaluate`]: deadline-driven judging against thresholds, gated by knowledge; emits status
//!   transitions.
//! - [`schedule`]: the one home of "which thresholds are in force now, and when does that
//!   change": a feed's windows (`[[feed.window]]`), quiet times and their boundaries.
//! - [`groups`]: consumer groups watched from outside (lag in time, stalls, the data-loss
//!   countdown), read by their own thread and judged beside the feeds; on plaintext brokers
//!   through a minimal Kafka client of their own (`groups::wire`), else through librdkafka.
//! - [`pipelines`]: `[[pipeline]]`s: which hops a broken one holds, what its page says of
//!   them, hop delays and each pipeline's view.
//! - [`audit`]: the completeness audit between two feed hops: event-time buckets of id
//!   summaries (invertible Bloom lookup tables), counted in the tracker under its lock, closed on
//!   knowledge, judged by the leader (`RecordsMissing`).
//! - [`volume`]: the one home of volume drops: per feed (or key) the record rate over a sliding
//!   window against a fixed `min_rate` or a learned hour-of-week baseline (`FeedVolumeDrop`).
//! - [`alert`]: one task per sink fed by a durable outbox in the state store; retries,
//!   fallbacks, rate limits; never drops silently.
//! - [`state`]: persistence (Redis or redb) so restarts keep every staleness clock running.
//! - [`http`] and [`metrics`]: the API, health, the status page, and Prometheus exposition.
//! - [`history`]: each feed's last transitions, kept for the status page.
//! - [`ha`]: leadership among replicas (a fenced Redis lease).
//! - [`heartbeat`]: pings an external dead-man's switch while freshwatch is healthy.
//! - [`app`]: wires it all and shuts down in order; [`demo`] and [`status`] back the CLI.
//! - [`backtest`]: replays what Kafka still holds through `extract`, `tracker` and `evaluate` on
//!   a simulated clock, and reports the alerts that would have fired; sends and writes nothing.
//! - [`clock`] and [`model`]: time and the shared domain types. `model` is the lower home of
//!   the words several parts speak (statuses, severities, `SystemAlert`, shared alert names):
//!   `groups` and `volume` raise alerts and fill their gauges through `model` and `metrics`,
//!   `alert` sends them, and none of them imports another's internals, so imports point down.
// `deny`, not `forbid`: `groups::admin` alone wraps librdkafka calls rdkafka does not (batched
// committed offsets for thousands of groups through one client), each block with its SAFETY.
#![deny(unsafe_code)]

pub mod alert;
pub mod api_client;
pub mod app;
pub mod audit;
pub mod backtest;
pub mod cadence;
pub mod clock;
pub mod config;
pub mod demo;
pub mod evaluate;
pub mod extract;
pub mod groups;
pub mod ha;
pub mod heartbeat;
pub mod history;
pub mod http;
pub mod knowledge;
pub mod metrics;
pub mod model;
pub mod pipelines;
pub mod rollup;
pub mod schedule;
pub mod silence;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod status;
pub mod tracker;
pub mod volume;
