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

mod codec;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    backoff::Backoff,
    config::RedisConfig,
    event::{Book, Event, Symbol},
    sources::{Ingest, Relay},
};

pub use codec::{Inbound, Invalid, decode};

/// Events queued for publishing; beyond it relays are dropped and counted
/// (local delivery is unaffected).
const QUEUE: usize = 65_536;

/// Most messages one pipeline carries.
const BATCH: usize = 1024;

/// Largest message accepted from Redis.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// How often the latest-quote cache is written.
const LATEST_EVERY: Duration = Duration::from_millis(250);

/// Pauses between reconnects to Redis: 100 ms doubling to 5 s, jittered.
fn reconnect_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
}

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
}

/// One Redis, or a Redis Cluster (sharded pub/sub: `SPUBLISH`/`SSUBSCRIBE`,
/// each channel served by the shard that owns its slot).
enum Backend {
    Single(redis::Client),
    Cluster(Vec<redis::ConnectionInfo>),
}

/// A connection for commands (publishing, the cache).
enum CommandConn {
    Single(redis::aio::MultiplexedConnection),
    /// The cluster connection (the cache), and a connection to the node
    /// that owns each channel's slot (publishing).
    Cluster(
        redis::cluster_async::ClusterConnection,
        HashMap<String, redis::aio::MultiplexedConnection>,
    ),
}

impl CommandConn {
    async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            CommandConn::Single(conn) => cmd.query_async(conn).await,
            CommandConn::Cluster(conn, _) => cmd.query_async(conn).await,
        }
    }

    /// Publishes a batch: one pipeline on one Redis; on a cluster, one
    /// `SPUBLISH` per message, all in flight at once (each goes to the
    /// shard of its channel).
    async fn publish(&mut self, batch: &[(String, String)]) -> redis::RedisResult<()> {
        match self {
            CommandConn::Single(conn) => {
                let mut pipe = redis::pipe();
                for (channel, payload) in batch {
                    pipe.publish(channel, payload).ignore();
                }
                pipe.query_async(conn).await
            }
            CommandConn::Cluster(_, owners) => {
                // One pipeline of SPUBLISH per channel, to its shard.
                let mut pipes: HashMap<&str, redis::Pipeline> = HashMap::new();
                for (channel, payload) in batch {
                    pipes
                        .entry(channel.as_str())
                        .or_insert_with(redis::pipe)
                        .cmd("SPUBLISH")
                        .arg(channel)
                        .arg(payload)
                        .ignore();
                }
                for (channel, pipe) in pipes {
                    let conn = owners.get_mut(channel).ok_or_else(|| {
                        redis::RedisError::from((redis::ErrorKind::Client, "no shard for channel"))
                    })?;
                    let _: () = pipe.query_async(conn).await?;
                }
                Ok(())
            }
        }
    }
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
    last_invalid_log: AtomicU64,
}

impl Broker {
    /// A broker for `config`: `redis.cluster_nodes` when set, else
    /// `redis.url` (not connected until `spawn`). None when neither is set.
    ///
    /// # Errors
    /// An unusable URL.
    pub fn from_config(config: &RedisConfig) -> Result<Option<Arc<Self>>, BrokerError> {
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
        let (outgoing, rx) = mpsc::channel(QUEUE);
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
            last_invalid_log: AtomicU64::new(0),
        })))
    }

    /// Round trip of a `PING` on a fresh connection (within 2 s), or None
    /// when Redis does not answer (health checks).
    pub async fn ping(&self) -> Option<std::time::Duration> {
        let started = std::time::Instant::now();
        let ping = async {
            match &self.backend {
                Backend::Single(client) => {
                    let mut conn = client.get_multiplexed_async_connection().await?;
                    redis::cmd("PING").query_async::<String>(&mut conn).await
                }
                Backend::Cluster(nodes) => {
                    let mut conn = redis::cluster::ClusterClient::new(nodes.clone())?
                        .get_async_connection()
                        .await?;
                    redis::cmd("PING").query_async::<String>(&mut conn).await
                }
            }
        };
        match tokio::time::timeout(std::time::Duration::from_secs(2), ping).await {
            Ok(Ok(_)) => Some(started.elapsed()),
            _ => None,
        }
    }

    /// Whether this broker uses a Redis Cluster (sharded pub/sub).
    pub fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::Cluster(_))
    }

    async fn command_conn(&self) -> redis::RedisResult<CommandConn> {
        match &self.backend {
            Backend::Single(client) => Ok(CommandConn::Single(
                client.get_multiplexed_async_connection().await?,
            )),
            Backend::Cluster(nodes) => {
                let mut conn = redis::cluster::ClusterClient::new(nodes.clone())?
                    .get_async_connection()
                    .await?;
                let mut owners = HashMap::new();
                for channel in self.names.channels() {
                    let node = owner(&mut conn, channel).await?;
                    let node_conn = redis::Client::open(node.as_str())?
                        .get_multiplexed_async_connection()
                        .await?;
                    owners.insert(channel.to_owned(), node_conn);
                }
                Ok(CommandConn::Cluster(conn, owners))
            }
        }
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

    /// Whether the subscription to Redis is up now.
    pub fn connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Follows the connection state (true while subscribed).
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
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

    fn set_connected(&self, up: bool) {
        self.connected.send_if_modified(|state| {
            let changed = *state != up;
            *state = up;
            changed
        });
        metrics::gauge!("tickgate_redis_up").set(if up { 1.0 } else { 0.0 });
    }

    /// Writes queued events to Redis in pipelined batches, and the latest
    /// quotes to their hash, reconnecting with backoff.
    async fn publish_loop(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<(String, String)>,
        shutdown: CancellationToken,
    ) {
        let mut backoff = reconnect_backoff();
        let mut batch: Vec<(String, String)> = Vec::with_capacity(BATCH);
        loop {
            let mut conn = tokio::select! {
                () = shutdown.cancelled() => return,
                conn = self.command_conn() => match conn {
                    Ok(conn) => conn,
                    Err(error) => {
                        tracing::debug!(%error, "redis publisher cannot connect");
                        // What was queued meanwhile is stale for the others.
                        self.drop_queued(&mut rx);
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(backoff.next_delay()) => continue,
                        }
                    }
                },
            };
            backoff.reset();
            let mut latest_timer = tokio::time::interval(LATEST_EVERY);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = latest_timer.tick() => {
                        let fields: Vec<(String, String)> = self
                            .latest
                            .lock()
                            .drain()
                            .map(|(symbol, quote)| (symbol.to_string(), quote))
                            .collect();
                        if fields.is_empty() {
                            continue;
                        }
                        let result: redis::RedisResult<()> = conn
                            .query(redis::cmd("HSET").arg(&self.names.latest).arg(fields))
                            .await;
                        if let Err(error) = result {
                            tracing::debug!(%error, "latest-quote cache write failed");
                            break;
                        }
                    }
                    count = rx.recv_many(&mut batch, BATCH) => {
                        if count == 0 {
                            return;
                        }
                        match conn.publish(&batch).await {
                            Ok(()) => {
                                self.stats.published.fetch_add(count as u64, Ordering::Relaxed);
                                batch.clear();
                            }
                            Err(error) => {
                                tracing::debug!(%error, "redis publish failed");
                                self.count_dropped(batch.len() as u64);
                                batch.clear();
                                break;
                            }
                        }
                    }
                }
            }
        }
    }

    fn drop_queued(&self, rx: &mut mpsc::Receiver<(String, String)>) {
        let mut dropped = 0;
        while rx.try_recv().is_ok() {
            dropped += 1;
        }
        if dropped > 0 {
            self.count_dropped(dropped);
        }
    }

    fn count_dropped(&self, events: u64) {
        self.stats
            .relay_dropped
            .fetch_add(events, Ordering::Relaxed);
        metrics::counter!("tickgate_redis_relay_dropped_total").increment(events);
    }

    /// Subscribes to every channel and feeds what arrives to the core,
    /// resubscribing with backoff after a loss.
    async fn subscribe_loop(self: Arc<Self>, ingest: Ingest, shutdown: CancellationToken) {
        let mut backoff = reconnect_backoff();
        let mut was_up = false;
        loop {
            let subscribed = tokio::select! {
                () = shutdown.cancelled() => return,
                result = self.subscribe() => result,
            };
            match subscribed {
                Ok(mut messages) => {
                    if was_up {
                        self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("tickgate_redis_reconnects_total").increment(1);
                    }
                    was_up = true;
                    backoff.reset();
                    self.set_connected(true);
                    tracing::info!(origin = %self.origin, "subscribed to Redis");
                    self.seed_latest(&ingest).await;
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => {
                                self.set_connected(false);
                                return;
                            }
                            message = messages.next() => match message {
                                Some(message) => {
                                    let channel = message.get_channel_name().to_owned();
                                    self.handle(&channel, message.get_payload_bytes(), &ingest);
                                }
                                None => break,
                            },
                        }
                    }
                    self.set_connected(false);
                    tracing::warn!(
                        "lost the Redis subscription; local sources keep serving; reconnecting"
                    );
                }
                Err(error) => {
                    self.set_connected(false);
                    tracing::debug!(%error, "cannot subscribe to Redis");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    /// Subscribes to every channel; the stream ends when the connection is
    /// lost.
    async fn subscribe(
        &self,
    ) -> redis::RedisResult<futures_util::stream::BoxStream<'static, redis::Msg>> {
        let channels = self.names.channels();
        match &self.backend {
            Backend::Single(client) => {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channels[..]).await?;
                Ok(pubsub.into_on_message().boxed())
            }
            Backend::Cluster(nodes) => {
                // Each channel is served by the shard that owns its slot:
                // one RESP3 connection to that node per shard, SSUBSCRIBE
                // there, messages as pushes. A lost connection, or a slot
                // moving away (`sunsubscribe` from the server), ends the
                // stream and the loop resubscribes from fresh slots.
                let mut conn = redis::cluster::ClusterClient::new(nodes.clone())?
                    .get_async_connection()
                    .await?;
                let (tx, rx) = mpsc::unbounded_channel::<redis::PushInfo>();
                let mut connections = Vec::new();
                // One connection per channel: each carries exactly one
                // SSUBSCRIBE, so its confirmation cannot be mistaken for
                // another command's reply.
                for channel in channels {
                    let node = owner(&mut conn, channel).await?;
                    let mut info = redis::IntoConnectionInfo::into_connection_info(node.as_str())?;
                    let settings = info
                        .redis_settings()
                        .clone()
                        .set_protocol(redis::ProtocolVersion::RESP3);
                    info = info.set_redis_settings(settings);
                    let client = redis::Client::open(info)?;
                    let config = redis::AsyncConnectionConfig::new().set_push_sender(tx.clone());
                    let mut node_conn = client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?;
                    let _: redis::Value = redis::cmd("SSUBSCRIBE")
                        .arg(channel)
                        .query_async(&mut node_conn)
                        .await?;
                    connections.push(node_conn);
                }
                drop(tx);
                let stream = futures_util::stream::unfold(
                    (rx, connections),
                    |(mut rx, connections)| async move {
                        loop {
                            let push = rx.recv().await?;
                            match push.kind {
                                redis::PushKind::Disconnection | redis::PushKind::SUnsubscribe => {
                                    return None;
                                }
                                redis::PushKind::SMessage => {
                                    if let Some(message) = redis::Msg::from_push_info(push) {
                                        return Some((message, (rx, connections)));
                                    }
                                }
                                _ => {}
                            }
                        }
                    },
                );
                Ok(stream.boxed())
            }
        }
    }

    /// Gives the hub the cached latest quote of every ticker it has none of,
    /// so a new subscriber gets the current value at once.
    async fn seed_latest(&self, ingest: &Ingest) {
        let cached: redis::RedisResult<HashMap<String, Vec<u8>>> = async {
            let mut conn = self.command_conn().await?;
            conn.query(redis::cmd("HGETALL").arg(&self.names.latest))
                .await
        }
        .await;
        let cached = match cached {
            Ok(cached) => cached,
            Err(error) => {
                tracing::warn!(%error, "cannot read the latest-quote cache");
                return;
            }
        };
        let mut seeded = 0;
        for payload in cached.values() {
            if let Ok(Inbound::Quote {
                symbol, at, tick, ..
            }) = codec::decode(&self.names.quotes, payload, &self.names)
                && let Ok(symbol) = ingest.symbol(&symbol)
                && ingest.seed_latest(&symbol, at, tick)
            {
                seeded += 1;
            }
        }
        if seeded > 0 {
            tracing::info!(seeded, "latest quotes seeded from the Redis cache");
        }
    }

    /// Validates one message and feeds it to the core.
    fn handle(&self, channel: &str, payload: &[u8], ingest: &Ingest) {
        let inbound = match codec::decode(channel, payload, &self.names) {
            Ok(inbound) => inbound,
            Err(invalid) => return self.invalid(channel, &invalid),
        };
        if inbound.origin() == Some(self.origin.as_str()) {
            self.stats.own.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let result = match inbound {
            Inbound::Quote {
                symbol,
                at,
                tick,
                json,
                ..
            } => ingest.symbol(&symbol).map(|symbol| {
                self.latest.lock().insert(symbol.clone(), json);
                ingest.tick(&symbol, at, tick);
            }),
            Inbound::Trade {
                symbol, at, trade, ..
            } => ingest
                .symbol(&symbol)
                .map(|symbol| ingest.trade(&symbol, at, trade)),
            Inbound::Book {
                symbol,
                at,
                snapshot,
                bids,
                asks,
                ..
            } => ingest.symbol(&symbol).map(|symbol| {
                let update = {
                    let mut books = self.books.lock();
                    let book = books.entry(symbol.clone()).or_default();
                    codec::apply_book(book, snapshot, bids, asks)
                };
                ingest.book(&symbol, at, update);
            }),
            Inbound::Private {
                user,
                channel,
                at,
                payload,
                ..
            } => {
                ingest.private(channel, &user, at, payload);
                Ok(())
            }
        };
        match result {
            Ok(()) => {
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("tickgate_redis_messages_total", "channel" => self.label(channel)).increment(1);
            }
            Err(error) => self.invalid(
                channel,
                &Invalid {
                    reason: "symbol",
                    detail: error.to_string(),
                },
            ),
        }
    }

    fn label(&self, channel: &str) -> &'static str {
        match channel {
            c if c == self.names.quotes => "quotes.realtime",
            c if c == self.names.trades => "tickgate.trades",
            c if c == self.names.orderbook => "tickgate.orderbook",
            c if c == self.names.private => "tickgate.private",
            _ => "other",
        }
    }

    fn invalid(&self, channel: &str, invalid: &Invalid) {
        self.stats.invalid.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(
            "tickgate_redis_messages_invalid_total",
            "channel" => self.label(channel),
            "reason" => invalid.reason
        )
        .increment(1);
        // At most one log line per second: a flood of garbage must not
        // become a flood of logs.
        let now = jiff::Timestamp::now().as_millisecond().unsigned_abs();
        let last = self.last_invalid_log.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .last_invalid_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                channel,
                reason = invalid.reason,
                detail = %invalid.detail,
                invalid_total = self.stats.invalid(),
                "invalid Redis message dropped (tickgate_redis_messages_invalid_total)"
            );
        }
    }
}

impl Relay for Broker {
    fn relay(&self, event: &Event) {
        let Some((channel, payload)) = codec::encode(event, &self.origin, &self.names) else {
            return;
        };
        if channel == self.names.quotes
            && let crate::event::TopicKey::Symbol(symbol) = &event.topic.key
        {
            self.latest.lock().insert(symbol.clone(), payload.clone());
        }
        if !self.connected() {
            self.count_dropped(1);
            return;
        }
        if self.outgoing.try_send((channel, payload)).is_err() {
            self.count_dropped(1);
        }
    }
}

/// The address (`redis://host:port`) of the cluster node that owns
/// `channel`'s slot, from `CLUSTER KEYSLOT` and `CLUSTER SLOTS`.
async fn owner(
    conn: &mut redis::cluster_async::ClusterConnection,
    channel: &str,
) -> redis::RedisResult<String> {
    use redis::Value;
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(channel)
        .query_async(conn)
        .await?;
    let slots: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    if let Value::Array(ranges) = slots {
        for range in ranges {
            let Value::Array(fields) = range else {
                continue;
            };
            if let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
                (fields.first(), fields.get(1), fields.get(2))
                && (*start..=*end).contains(&slot)
                && let (Some(host), Some(Value::Int(port))) = (master.first(), master.get(1))
            {
                let host = match host {
                    Value::BulkString(bytes) => String::from_utf8_lossy(bytes).to_string(),
                    Value::SimpleString(text) => text.clone(),
                    _ => continue,
                };
                return Ok(format!("redis://{host}:{port}"));
            }
        }
    }
    Err(redis::RedisError::from((
        redis::ErrorKind::Client,
        "no cluster node owns the channel's slot",
    )))
}
