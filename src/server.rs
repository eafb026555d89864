//! Builds a gateway from its configuration, binds its listener, runs its
//! sources and serves until the shutdown future completes.
//!
//! Shutdown: stop accepting (new handshakes get 503), send every connection a
//! `system_status` frame with status `shutting_down` and close it with 1001,
//! stop the sources, wait for sessions to flush (up to
//! `server.shutdown_grace_ms`), and return.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{
    config::{Config, DEV_JWT_SECRET},
    event::{Event, Payload, Topic},
    gateway::Gateway,
    market, rest,
    runtime::http,
    sources::{Ingest, simulator},
    spec::messages::Channel,
};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "cannot listen on {addr}: {source}; pick another port (--port; candles.port, market_stream.port, rt_orchestrator.port, enhanced.port for the dialects with their own listener) or stop what holds it"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Gateway(#[from] crate::gateway::GatewayError),
    #[error(transparent)]
    Symbol(#[from] crate::hub::InvalidSymbol),
    #[error(transparent)]
    Dialects(#[from] crate::hub::TooManyDialects),
    #[error(transparent)]
    Upstream(#[from] crate::upstream::SpawnError),
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A gateway whose listeners are bound but not yet serving.
pub struct Bound {
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    /// The listeners of the dialects that have their own port, when enabled.
    dialects: Vec<(Listener, tokio::net::TcpListener, SocketAddr)>,
}

pub use crate::dialects::Listener;

async fn listen(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), ServerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Builds the gateway and binds its listener (port 0 picks a free port).
///
/// # Errors
/// The address is taken, or the auth configuration is unusable.
pub async fn bind(config: Config) -> Result<Bound, ServerError> {
    bind_with_env(config, Vec::new()).await
}

/// `bind`, with the API-key pool also reading `env` (`TWELVEDATA_API_KEY*`).
///
/// # Errors
/// As `bind`.
pub async fn bind_with_env(
    config: Config,
    env: Vec<(String, String)>,
) -> Result<Bound, ServerError> {
    check_config(&config)?;
    let addr = SocketAddr::new(config.server.host, config.server.port);
    if config.auth.public_key_file.is_none() && config.auth.jwt_secret == DEV_JWT_SECRET {
        tracing::warn!("using the development JWT secret; set TICKGATE_JWT_SECRET in production");
    }
    let mut dialects = Vec::new();
    for listener in Listener::ALL {
        if let Some(port) = listener.port(&config) {
            let (bound, addr) = listen(SocketAddr::new(config.server.host, port)).await?;
            dialects.push((listener, bound, addr));
        }
    }
    let gateway = Gateway::with_env(config, env)?;
    let (listener, addr) = listen(addr).await?;
    Ok(Bound {
        gateway,
        listener,
        addr,
        dialects,
    })
}

/// The rules of the configuration that need the runtime's modules (the
/// rest are `Config::validate`'s; the clock and the calendar are checked as
/// `Gateway::with_env` builds them).
fn check_config(config: &Config) -> Result<(), ServerError> {
    crate::upstream::check_config(&config.upstream.twelvedata)
        .map_err(|error| ServerError::Config(error.to_string()))?;
    if config.candles.enabled && config.candles.max_initial_bars > market::candles::MAX_BARS {
        return Err(ServerError::Config(format!(
            "candles.max_initial_bars must be at most {} (the most bars one history read returns)",
            market::candles::MAX_BARS
        )));
    }
    Ok(())
}

impl Bound {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Address of a dialect's own listener, when enabled.
    pub fn dialect_addr(&self, which: Listener) -> Option<SocketAddr> {
        self.dialects
            .iter()
            .find(|(listener, _, _)| *listener == which)
            .map(|(_, _, addr)| *addr)
    }

    /// Address of the candles dialect's listener, when enabled.
    pub fn candles_addr(&self) -> Option<SocketAddr> {
        self.dialect_addr(Listener::Candles)
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Serves until `shutdown` completes, then shuts down gracefully.
    ///
    /// # Errors
    /// The simulator's configuration names an invalid symbol, or the
    /// listener fails.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let gateway = self.gateway;
        let config = gateway.config.clone();
        let grace = Duration::from_millis(config.server.shutdown_grace_ms);
        let writer = tokio::spawn(gateway.writer.clone().run(grace));
        prepare_store(&gateway).await?;
        gateway
            .tasks
            .spawn(crate::metrics::upkeep(gateway.shutdown.clone()));
        let mut ingest = Ingest::new(
            gateway.hub.clone(),
            gateway.candles.clone(),
            Some(gateway.writer.clone()),
        )
        .with_gate(gateway.orchestrator.clone());
        gateway.tasks.spawn(
            gateway
                .orchestrator
                .clone()
                .run(gateway.writer.store().clone(), gateway.shutdown.clone()),
        );
        if let Some(broker) = &gateway.broker {
            broker.spawn(ingest.clone(), &gateway.tasks, gateway.shutdown.clone());
            ingest = ingest.with_relay(broker.clone());
        }
        if crate::upstream::spawn(
            &config.upstream.twelvedata,
            gateway.keys.clone(),
            ingest.clone(),
            gateway.orchestrator.gate(),
            gateway.upstream.clone(),
            gateway.shutdown.clone(),
            &gateway.tasks,
        )? {
            gateway
                .orchestrator
                .watch_upstream(gateway.upstream.clone());
        }
        if config.simulator.enabled {
            simulator::spawn(
                &config.simulator,
                ingest.clone(),
                gateway.hub.clone(),
                &gateway.tasks,
                gateway.shutdown.clone(),
            )?;
        }
        gateway.tasks.spawn(market::run_candle_timer(
            gateway.candles.clone(),
            Duration::from_millis(config.simulator.candle_publish_ms),
            gateway.shutdown.clone(),
        ));
        gateway
            .tasks
            .spawn(run_heartbeat(gateway.clone(), gateway.shutdown.clone()));
        gateway.tasks.spawn(run_health_snapshots(
            gateway.clone(),
            gateway.shutdown.clone(),
        ));
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        gateway
            .tasks
            .spawn(run_malloc_trim(gateway.clone(), gateway.shutdown.clone()));

        let enabled: Vec<Listener> = self.dialects.iter().map(|(l, _, _)| *l).collect();
        let mut mounted = crate::dialects::mount(&gateway, &enabled)?;
        let limits = http::Limits::from_config(&config.server);
        let mut dialect_servers = Vec::new();
        for (listener, bound, addr) in self.dialects {
            tracing::info!(%addr, "{}", listener.describe(addr));
            let Some(index) = mounted.listeners.iter().position(|(l, _)| *l == listener) else {
                continue;
            };
            let (_, routes) = mounted.listeners.swap_remove(index);
            let stop = gateway.shutdown.clone();
            dialect_servers.push((
                listener,
                tokio::spawn(http::serve(
                    bound,
                    routes,
                    limits,
                    async move { stop.cancelled().await },
                    grace,
                )),
            ));
        }
        tracing::info!(addr = %self.addr, "tickgate listening; ws://{}/api/v1/ws/v1, docs http://{}/api/v1/docs", self.addr, self.addr);
        let app = rest::routes(gateway.clone(), mounted.main);
        let stop = gateway.shutdown.clone();
        let signal_gateway = gateway.clone();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down");
            begin_shutdown(&signal_gateway);
        };
        http::serve(self.listener, app, limits, signal, grace).await?;
        stop.cancel();
        for (listener, server) in dialect_servers {
            if let Ok(Err(error)) = server.await {
                tracing::error!(%error, ?listener, "a dialect listener failed");
            }
        }
        gateway.tasks.close();
        if tokio::time::timeout(grace, gateway.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some sessions did not finish within the shutdown grace period");
        }
        // Sources have stopped: write the bars in progress and everything
        // buffered, then close the pool.
        gateway.candles.persist();
        gateway
            .writer
            .health(health_row(&gateway, "stopped", None).await);
        gateway.writer.close();
        if let Err(error) = writer.await {
            tracing::error!(%error, "the store writer failed");
        }
        gateway.writer.store().close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Creates the tables, backfills the simulator's history on a first start,
/// and continues the bars in progress from the store. A database that cannot
/// be reached does not stop the gateway: it starts without history, and the
/// writer keeps retrying (and migrates once the database answers).
async fn prepare_store(gateway: &Gateway) -> Result<(), ServerError> {
    let store = gateway.writer.store();
    if let Err(error) = gateway.writer.ensure_migrated().await {
        tracing::error!(%error, kind = store.kind(), "the store is unavailable at start: no backfill and no restored candles; writes are buffered and retried");
        return Ok(());
    }
    let now = gateway.clock.now();
    let config = &gateway.config;
    if config.simulator.enabled {
        // The synthetic history ends at the gateway's clock, so a pinned
        // clock finds history as fresh as a real one would.
        let until = gateway.clock.now();
        match simulator::backfill(&config.simulator, &gateway.hub, store, until).await {
            Ok(symbols) if !symbols.is_empty() => {
                tracing::info!(
                    symbols = symbols.len(),
                    bars = config.simulator.backfill_bars,
                    "backfilled synthetic history"
                );
            }
            Ok(_) => {}
            Err(simulator::BackfillError::Symbol(error)) => return Err(error.into()),
            Err(error) => tracing::error!(%error, "backfill failed"),
        }
    }
    match gateway.candles.restore(now).await {
        Ok(restored) => tracing::info!(
            kind = store.kind(),
            restored,
            "store ready; bars in progress continued"
        ),
        Err(error) => tracing::error!(%error, "cannot restore the bars in progress"),
    }
    gateway
        .writer
        .health(health_row(gateway, "starting", None).await);
    Ok(())
}

/// A `system_health` row describing the gateway now.
async fn health_row(
    gateway: &Gateway,
    status: &str,
    error: Option<String>,
) -> crate::store::HealthRow {
    let ping = gateway.writer.store().ping().await;
    let (response_time_ms, error_message) = match ping {
        Ok(elapsed) => (i32::try_from(elapsed.as_millis()).ok(), error),
        Err(ping_error) => (None, Some(error.unwrap_or_else(|| ping_error.to_string()))),
    };
    crate::store::HealthRow {
        service_name: "tickgate".into(),
        status: status.into(),
        details: serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": gateway.started.elapsed().as_secs(),
            "connections": gateway.stats.connections(),
            "store": gateway.writer.store().kind(),
            "store_buffered_rows": gateway.writer.buffered(),
        }),
        response_time_ms,
        error_message,
    }
}

/// Writes a `system_health` row every minute.
async fn run_health_snapshots(gateway: Arc<Gateway>, shutdown: CancellationToken) {
    let mut timer = tokio::time::interval(Duration::from_secs(60));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = timer.tick() => {}
        }
        let status = if gateway.writer.stats().is_down() {
            "degraded"
        } else {
            "healthy"
        };
        gateway
            .writer
            .health(health_row(&gateway, status, None).await);
    }
}

/// Stops sources and handshakes; every connection's driver sees it, queues
/// its dialect's notice and closes with 1001.
fn begin_shutdown(gateway: &Gateway) {
    gateway.shutdown.cancel();
}

/// Returns glibc malloc's free memory to the OS after many connections
/// closed. glibc shrinks a heap only from its top, so the memory of
/// connections that came and went stayed resident: 1,000 v1 connections
/// churning subscriptions left RSS 41 % over its baseline until
/// `malloc_trim`, which brought it back within 3 %. Checked each second:
/// once the open connections fell by at least 100 and 10 % below their
/// high-water mark since the last trim, and stopped falling (the closing
/// wave is over), trim (on a blocking thread: it walks every arena). Steady
/// churn at a constant count never triggers it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
async fn run_malloc_trim(gateway: Arc<Gateway>, shutdown: CancellationToken) {
    let mut timer = tokio::time::interval(Duration::from_secs(1));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut high, mut last) = (0, 0);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = timer.tick() => {}
        }
        let open = gateway.stats.connections();
        high = high.max(open);
        let settled = open >= last;
        last = open;
        if settled && high >= open + 100 && open * 10 <= high * 9 {
            high = open;
            // SAFETY: malloc_trim only releases free memory; it is
            // thread-safe (it takes each arena's lock).
            let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
        }
    }
}

/// Publishes one `heartbeat` frame per second.
async fn run_heartbeat(gateway: Arc<Gateway>, shutdown: CancellationToken) {
    let mut timer = tokio::time::interval(Duration::from_secs(1));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = timer.tick() => {}
        }
        gateway.hub.publish(Event {
            topic: Topic::global(Channel::Heartbeat),
            timestamp: gateway.clock.now(),
            payload: Payload::Heartbeat {
                connections: gateway.stats.connections(),
            },
        });
    }
}

/// Binds and serves until Ctrl-C or SIGTERM; `env` is where the API-key
/// pool reads `TWELVEDATA_API_KEY*` (the process environment, from `main`).
///
/// # Errors
/// As `bind` and `Bound::run`.
pub async fn run(config: Config, env: Vec<(String, String)>) -> Result<(), ServerError> {
    bind_with_env(config, env)
        .await?
        .run(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
