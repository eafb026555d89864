//! The state one gateway shares between its listeners, sessions, sources and
//! REST handlers. Built once by `server::run`.

use std::sync::Arc;

use tokio::{sync::Semaphore, time::Instant};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    auth::Authenticator,
    config::Config,
    hub::{Hub, OutboxLimits},
    market::candles::CandleBook,
    metrics::Stats,
    spec::messages::Channel,
    store::{Store, StoreError, Writer, WriterLimits},
};

pub struct Gateway {
    pub config: Arc<Config>,
    pub hub: Arc<Hub>,
    pub auth: Arc<Authenticator>,
    pub stats: Arc<Stats>,
    pub candles: Arc<CandleBook>,
    /// The batched writer to the store (`store.*`).
    pub writer: Arc<Writer>,
    /// The Redis broker, when `redis.url` is set.
    pub broker: Option<Arc<crate::broker::Broker>>,
    /// The time every market rule reads (`clock.*`).
    pub clock: crate::clock::Clock,
    /// Trading sessions per symbol (`calendar.*`).
    pub calendar: Arc<crate::calendar::Calendar>,
    /// When real-time data of calendar-bound symbols is collected.
    pub orchestrator: Arc<crate::orchestrator::Orchestrator>,
    /// The upstream provider's API keys (`TWELVEDATA_API_KEY*`, `upstream.twelvedata.keys`).
    pub keys: Arc<crate::upstream::keys::KeyPool>,
    /// The upstream source's connection state.
    pub upstream: Arc<crate::upstream::UpstreamStatus>,
    /// One permit per open WebSocket connection (`server.max_connections`).
    pub connections: Arc<Semaphore>,
    /// Cancelled when shutdown begins.
    pub shutdown: CancellationToken,
    /// Sessions and sources; shutdown waits for them.
    pub tasks: TaskTracker,
    pub outbox_limits: Arc<OutboxLimits>,
    /// Outbox bounds of quotes connections: no per-channel rate cap (seed
    /// 002 streams every quote), conflation for slow readers.
    pub quotes_outbox_limits: Arc<OutboxLimits>,
    pub started: Instant,
}

impl Gateway {
    /// # Errors
    /// An auth configuration that cannot be used (unreadable key), a store
    /// that cannot be opened, or a client-frame schema that does not compile.
    pub fn new(config: Config) -> Result<Arc<Self>, GatewayError> {
        Self::with_env(config, Vec::new())
    }

    /// A gateway whose API-key pool also reads `env` (the binary passes the
    /// process environment; tests pass nothing).
    ///
    /// # Errors
    /// As `new`.
    pub fn with_env(config: Config, env: Vec<(String, String)>) -> Result<Arc<Self>, GatewayError> {
        // Install the Prometheus recorder before anything records.
        crate::metrics::prometheus();
        crate::protocol::v1::check_schemas()?;
        let stats = Arc::new(Stats::default());
        stats.zero_series(
            &crate::store::TABLES,
            config.redis.url.is_some() || !config.redis.cluster_nodes.is_empty(),
        );
        let hub = Arc::new(Hub::new(&config.channels, stats.clone()));
        let auth = Authenticator::from_config(&config.auth)?;
        let outbox_limits = Arc::new(OutboxLimits {
            control: config.ws.control_queue,
            private: config.ws.private_queue,
            conflation_slots: config.ws.conflation_slots,
            backlog: config.ws.stream_backlog,
            rates: Channel::ALL.map(|c| config.channels.limits(c).rate_per_second),
            conflates: Channel::ALL.map(Channel::conflates),
        });
        let quotes_outbox_limits = Arc::new(OutboxLimits {
            // Stream dialects have no rate cap: the socket and conflation
            // are their only limits.
            rates: [crate::hub::UNCAPPED; crate::spec::CHANNEL_COUNT],
            ..(*outbox_limits).clone()
        });
        let broker = crate::broker::Broker::from_config(&config.redis)?;
        let clock = crate::clock::Clock::from_config(&config.clock)?;
        let keys = Arc::new(crate::upstream::key_pool(&config.upstream.twelvedata, env));
        let calendar = Arc::new(crate::calendar::Calendar::from_config(&config.calendar)?);
        let orchestrator = crate::orchestrator::Orchestrator::new(
            config.orchestrator.clone(),
            clock.clone(),
            calendar.clone(),
        );
        let store = Store::open(&config.store)?;
        let writer = Writer::new(
            store,
            WriterLimits {
                batch_rows: config.store.batch_rows,
                buffer_rows: config.store.buffer_rows,
                flush: std::time::Duration::from_millis(config.store.flush_ms),
                ticks: config.store.ticks,
            },
        );
        Ok(Arc::new(Self {
            connections: Arc::new(Semaphore::new(config.server.max_connections)),
            candles: Arc::new(CandleBook::with_store(
                hub.clone(),
                writer.clone(),
                clock.clone(),
            )),
            writer,
            clock,
            calendar,
            orchestrator,
            keys,
            upstream: Arc::new(crate::upstream::UpstreamStatus::new()),
            broker,
            config: Arc::new(config),
            hub,
            auth,
            stats,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            outbox_limits,
            quotes_outbox_limits,
            started: Instant::now(),
        }))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[error(transparent)]
    Clock(#[from] crate::clock::ClockError),
    #[error(transparent)]
    Calendar(#[from] crate::calendar::CalendarError),
    #[error(transparent)]
    Schema(#[from] crate::protocol::v1::SchemaError),
}

impl Gateway {
    /// Whether the upstream provider's stream is connected.
    pub fn upstream_connected(&self) -> bool {
        self.upstream.snapshot().connected
    }
}
