//! The Redis broker (on when `redis.url` / `REDIS_URL` is set): fan-out
//! between gateway instances, external publishers, and the latest-quote
//! cache.
//!
//! Origin tagging. Every event a local source produces goes to the local hub
//! at once and, through `Relay`, onto a bounded queue that a publisher task
//! writes to Redis in pipelined batches, tagged with this instance's
//! `origin`. A subscriber task reads every tickgate channel; messages of its
//! own origin are skipped (already delivered), the others are validated
//! against their asyncapi.yaml schema and fed to the core through
//! `Ingest::local_only`. So each client gets each event once, local clients
//! never wait for Redis, and an outage only stops the exchange between
//! instances: both tasks reconnect with backoff, and `connected` tells the
//! rest of the gateway (health, the quotes dialect).
//!
//! The channels and their formats are the `redis*` channels of
//! asyncapi.yaml; `codec.rs` converts between them and events.
//! `connection.rs` is the connection to Redis (one server or a cluster:
//! clients, command connections, `ping`, the `connected` state),
//! `publisher.rs` the relay of local events to Redis and its task, and
//! `subscriber.rs` the task that reads Redis and feeds the core. This file
//! holds `Broker` and its construction.

mod codec;
mod connection;
mod publisher;
mod subscriber;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use self::connection::Backend;
use crate::{
    config::RedisConfig,
    event::{Book, Symbol},
    sources::Ingest,
};

pub use codec::{Inbound, Invalid, SchemaError, decode};

/// Largest message accepted from Redis.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The names of the Redis channels and keys, with the configured prefix.
#[derive(Clone, Debug)]
pub struct Names {
    pub quotes: String,
    pub trades: String,
    pub orderbook: String,
    pub private: String,
    pub latest: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Self {
            quotes: format!("{prefix}quotes.realtime"),
            trades: format!("{prefix}tickgate.trades"),
            orderbook: format!("{prefix}tickgate.orderbook"),
            private: format!("{prefix}tickgate.private"),
            latest: format!("{prefix}quotes.latest"),
        }
    }

    fn channels(&self) -> [&str; 4] {
        [&self.quotes, &self.trades, &self.orderbook, &self.private]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid redis.url or redis.cluster_nodes: {0}")]
    Url(#[from] redis::RedisError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

/// Counters of one broker (also exported as Prometheus metrics).
#[derive(Debug, Default)]
pub struct BrokerStats {
    received: AtomicU64,
    invalid: AtomicU64,
    own: AtomicU64,
    published: AtomicU64,
    relay_dropped: AtomicU64,
    reconnects: AtomicU64,
}

impl BrokerStats {
    /// Valid messages from other instances or publishers, fed to the core.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
    /// Messages rejected by validation.
    pub fn invalid(&self) -> u64 {
        self.invalid.load(Ordering::Relaxed)
    }
    /// This instance's own messages, skipped.
    pub fn own(&self) -> u64 {
        self.own.load(Ordering::Relaxed)
    }
    /// Messages this instance published.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
    /// Events not published because the queue was full or Redis was down.
    pub fn relay_dropped(&self) -> u64 {
        self.relay_dropped.load(Ordering::Relaxed)
    }
    /// Connections re-established after a loss.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }
}

pub struct Broker {
    backend: Backend,
    origin: String,
    names: Names,
    outgoing: mpsc::Sender<(String, String)>,
    outgoing_rx: Mutex<Option<mpsc::Receiver<(String, String)>>>,
    connected: watch::Sender<bool>,
    /// Newest quote JSON per ticker, not yet written to the cache.
    latest: Mutex<HashMap<Symbol, String>>,
    /// Books of symbols fed through Redis.
    books: Mutex<HashMap<Symbol, Book>>,
    stats: BrokerStats,
    /// When an invalid message was last logged: milliseconds since
    /// `started` on tokio's monotonic clock (`subscriber::NEVER_LOGGED`
    /// before the first).
    last_invalid_log: AtomicU64,
    /// When the broker was made: the origin of `last_invalid_log`.
    started: tokio::time::Instant,
}

impl Broker {
    /// A broker for `config`: `redis.cluster_nodes` when set, else
    /// `redis.url` (not connected until `spawn`). None when neither is set.
    ///
    /// The schemas Redis messages are validated against are compiled first,
    /// with or without Redis: they are built into the binary, so a broken
    /// one is a defect of the build, reported at the first start.
    ///
    /// # Errors
    /// A schema Redis messages are validated against that is missing or does
    /// not compile (`SchemaError`), or an unusable URL.
    pub fn from_config(config: &RedisConfig) -> Result<Option<Arc<Self>>, BrokerError> {
        codec::check_schemas()?;
        let backend = if !config.cluster_nodes.is_empty() {
            let nodes = config
                .cluster_nodes
                .iter()
                .map(|node| redis::IntoConnectionInfo::into_connection_info(node.as_str()))
                .collect::<Result<Vec<_>, _>>()?;
            Backend::Cluster(nodes)
        } else if let Some(url) = &config.url {
            Backend::Single(redis::Client::open(url.as_str())?)
        } else {
            return Ok(None);
        };
        let (outgoing, rx) = mpsc::channel(publisher::QUEUE);
        let origin = format!("{:016x}", rand::rng().random::<u64>());
        Ok(Some(Arc::new(Self {
            backend,
            origin,
            names: Names::new(&config.prefix),
            outgoing,
            outgoing_rx: Mutex::new(Some(rx)),
            connected: watch::channel(false).0,
            latest: Mutex::new(HashMap::new()),
            books: Mutex::new(HashMap::new()),
            stats: BrokerStats::default(),
            last_invalid_log: AtomicU64::new(subscriber::NEVER_LOGGED),
            started: tokio::time::Instant::now(),
        })))
    }

    /// This instance's origin tag.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    pub fn stats(&self) -> &BrokerStats {
        &self.stats
    }

    /// Starts the publisher and the subscriber on `tasks`; both stop with
    /// `shutdown`.
    pub fn spawn(
        self: &Arc<Self>,
        ingest: Ingest,
        tasks: &tokio_util::task::TaskTracker,
        shutdown: CancellationToken,
    ) {
        if let Some(rx) = self.outgoing_rx.lock().take() {
            tasks.spawn(self.clone().publish_loop(rx, shutdown.clone()));
        }
        tasks.spawn(self.clone().subscribe_loop(ingest.local_only(), shutdown));
    }
}

/// A broker for the machine's Redis (127.0.0.1:6379), not started: for the
/// unit tests of the broker's parts.
#[cfg(test)]
fn test_broker() -> Arc<Broker> {
    let config = RedisConfig {
        url: Some("redis://127.0.0.1:6379".into()),
        cluster_nodes: Vec::new(),
        prefix: String::new(),
    };
    #[allow(clippy::expect_used)]
    Broker::from_config(&config)
        .expect("a valid URL")
        .expect("a broker")
}
