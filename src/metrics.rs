//! Counters of one gateway: exact per-instance numbers for
//! `GET /api/v1/ws/stats`, mirrored into the process-wide Prometheus recorder
//! behind `GET /metrics`. The connection and fan-out counters are updated
//! here; the broker and the store writer record their own series (named in
//! docs/http.md), and `Stats::zero_series` makes every documented series
//! exist from the first scrape.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// How often the Prometheus recorder drains its histogram samples into
/// buckets. Between drains every recorded sample is held in memory.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Exact counters of one gateway instance.
#[derive(Debug)]
pub struct Stats {
    /// Handles to the metrics the writers update for every batch, looked up
    /// once instead of by name on every call.
    hot: HotMetrics,
    connections: AtomicU64,
    connections_total: AtomicU64,
    handshakes_refused: AtomicU64,
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    conflated: AtomicU64,
    dropped: AtomicU64,
    events_published: AtomicU64,
    errors_sent: AtomicU64,
}

#[derive(Debug)]
struct HotMetrics {
    frames_out: Counter,
    latency: Histogram,
    batch: Histogram,
}

impl Default for Stats {
    fn default() -> Self {
        // Handles bind to the recorder installed when they are made.
        prometheus();
        Self {
            hot: HotMetrics {
                frames_out: counter!("tickgate_frames_out_total"),
                latency: histogram!("tickgate_publish_to_send_seconds"),
                batch: histogram!("tickgate_writer_batch_frames"),
            },
            connections: AtomicU64::default(),
            connections_total: AtomicU64::default(),
            handshakes_refused: AtomicU64::default(),
            frames_in: AtomicU64::default(),
            frames_out: AtomicU64::default(),
            conflated: AtomicU64::default(),
            dropped: AtomicU64::default(),
            events_published: AtomicU64::default(),
            errors_sent: AtomicU64::default(),
        }
    }
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub connections: u64,
    pub connections_total: u64,
    pub handshakes_refused: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    pub conflated: u64,
    pub dropped: u64,
    pub events_published: u64,
    pub errors_sent: u64,
}

impl Stats {
    pub fn connection_opened(&self) {
        let open = self.connections.fetch_add(1, Relaxed) + 1;
        self.connections_total.fetch_add(1, Relaxed);
        counter!("tickgate_connections_total").increment(1);
        gauge!("tickgate_connections").set(open as f64);
    }

    pub fn connection_closed(&self) {
        let open = self.connections.fetch_sub(1, Relaxed).saturating_sub(1);
        gauge!("tickgate_connections").set(open as f64);
    }

    pub fn handshake_refused(&self, reason: &'static str) {
        self.handshakes_refused.fetch_add(1, Relaxed);
        counter!("tickgate_handshakes_refused_total", "reason" => reason).increment(1);
    }

    pub fn frame_in(&self) {
        self.frames_in.fetch_add(1, Relaxed);
        counter!("tickgate_frames_in_total").increment(1);
    }

    pub fn frames_out(&self, frames: u64) {
        self.frames_out.fetch_add(frames, Relaxed);
        self.hot.frames_out.increment(frames);
    }

    pub fn conflated(&self, frames: u64) {
        self.conflated.fetch_add(frames, Relaxed);
        counter!("tickgate_frames_conflated_total").increment(frames);
    }

    /// Frames discarded because their connection closed with them still
    /// queued (a slow consumer, a client's close, shutdown).
    pub fn dropped(&self, frames: u64) {
        if frames > 0 {
            self.dropped.fetch_add(frames, Relaxed);
            counter!("tickgate_frames_dropped_total").increment(frames);
        }
    }

    pub fn event_published(&self, channel: &'static str) {
        self.events_published.fetch_add(1, Relaxed);
        counter!("tickgate_events_published_total", "channel" => channel).increment(1);
    }

    pub fn error_sent(&self, code: String) {
        self.errors_sent.fetch_add(1, Relaxed);
        counter!("tickgate_error_frames_total", "code" => code).increment(1);
    }

    pub fn disconnect(&self, code: u16) {
        counter!("tickgate_disconnects_total", "code" => code.to_string()).increment(1);
    }

    /// Time from an event entering the hub to its frame being written.
    pub fn delivery_latency(&self, seconds: f64) {
        self.hot.latency.record(seconds);
    }

    pub fn queue_depth(&self, frames: usize) {
        self.hot.batch.record(frames as f64);
    }

    pub fn subscriptions(&self, channel: &'static str, subscribers: usize) {
        gauge!("tickgate_subscribers", "channel" => channel).set(subscribers as f64);
    }

    /// Makes every series `/metrics` documents exist, zero-valued, so the
    /// first scrape shows them all (a dashboard or alert on a series that
    /// has not happened yet would otherwise see no data): each labelled
    /// family with every label value it can take. `tables` are the store's,
    /// `redis` whether Redis is configured (its series exist only then).
    pub fn zero_series(&self, tables: &[&'static str], redis: bool) {
        gauge!("tickgate_connections").set(0.0);
        for name in [
            "tickgate_connections_total",
            "tickgate_frames_in_total",
            "tickgate_frames_conflated_total",
            "tickgate_frames_dropped_total",
            "tickgate_store_write_failures_total",
        ] {
            counter!(name).increment(0);
        }
        self.hot.frames_out.increment(0);
        for reason in [
            "connection_limit",
            "ip_connection_limit",
            "ip_handshake_rate",
            "origin_not_allowed",
            "shutting_down",
        ] {
            counter!("tickgate_handshakes_refused_total", "reason" => reason).increment(0);
        }
        for channel in crate::spec::messages::Channel::ALL {
            counter!("tickgate_events_published_total", "channel" => channel.to_string())
                .increment(0);
            gauge!("tickgate_subscribers", "channel" => channel.to_string()).set(0.0);
        }
        for code in error_codes() {
            counter!("tickgate_error_frames_total", "code" => code).increment(0);
        }
        for code in crate::protocol::close::CODES {
            counter!("tickgate_disconnects_total", "code" => code.to_string()).increment(0);
        }
        for table in tables {
            counter!("tickgate_store_rows_written_total", "table" => *table).increment(0);
            counter!("tickgate_store_rows_dropped_total", "table" => *table).increment(0);
        }
        gauge!("tickgate_store_buffered_rows").set(0.0);
        gauge!("tickgate_store_up").set(0.0);
        if redis {
            gauge!("tickgate_redis_up").set(0.0);
            counter!("tickgate_redis_relay_dropped_total").increment(0);
            counter!("tickgate_redis_reconnects_total").increment(0);
            for channel in REDIS_CHANNELS {
                counter!("tickgate_redis_messages_total", "channel" => channel).increment(0);
                for reason in ["not_json", "schema", "too_large", "symbol"] {
                    counter!(
                        "tickgate_redis_messages_invalid_total",
                        "channel" => channel,
                        "reason" => reason
                    )
                    .increment(0);
                }
            }
        }
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Relaxed)
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            connections: self.connections.load(Relaxed),
            connections_total: self.connections_total.load(Relaxed),
            handshakes_refused: self.handshakes_refused.load(Relaxed),
            frames_in: self.frames_in.load(Relaxed),
            frames_out: self.frames_out.load(Relaxed),
            conflated: self.conflated.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            events_published: self.events_published.load(Relaxed),
            errors_sent: self.errors_sent.load(Relaxed),
        }
    }
}

/// The `channel` labels of the Redis series.
const REDIS_CHANNELS: [&str; 5] = [
    "quotes.realtime",
    "tickgate.trades",
    "tickgate.orderbook",
    "tickgate.private",
    "other",
];

/// Every `code` label of `tickgate_error_frames_total`: the v1 error codes
/// and the market-data stream's (prefixed `usdcop_`), from asyncapi.yaml.
fn error_codes() -> Vec<String> {
    let doc: serde_json::Value =
        serde_json::from_str(crate::spec::ASYNCAPI_JSON).unwrap_or_default();
    let schemas = &doc["components"]["schemas"];
    let names = |schema: &str, prefix: &str| -> Vec<String> {
        schemas[schema]["enum"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|code| code.as_str().map(|code| format!("{prefix}{code}")))
            .collect()
    };
    let mut codes = names("ErrorCode", "");
    codes.extend(names("UsdcopErrorCode", "usdcop_"));
    codes
}

/// Drains the recorder's histogram samples into their buckets every
/// `UPKEEP_INTERVAL` until `shutdown`. Without it the samples of every
/// delivery would pile up in memory until someone scraped `/metrics`.
pub async fn upkeep(shutdown: tokio_util::sync::CancellationToken) {
    let mut every = tokio::time::interval(UPKEEP_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => prometheus().run_upkeep(),
            () = shutdown.cancelled() => return,
        }
    }
}

/// The process-wide Prometheus recorder, installed on first use. Several
/// gateways in one process (the tests) share it, so its numbers are process
/// totals; `Stats` keeps the per-instance ones.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(
                    "tickgate_publish_to_send_seconds".into(),
                ),
                &[
                    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5,
                ],
            )
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        "tickgate_writer_batch_frames".into(),
                    ),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
                )
            })
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|error| {
                tracing::error!(%error, "prometheus buckets rejected; using summaries");
                PrometheusBuilder::new().build_recorder()
            });
        let handle = recorder.handle();
        if let Err(error) = metrics::set_global_recorder(recorder) {
            tracing::warn!(%error, "a metrics recorder was already installed");
        }
        handle
    })
}
