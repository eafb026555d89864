//! Seed 001's enhanced WebSocket service on its own listener
//! (`enhanced.port`, 8080): `GET /health`, `/status`, `/market/latest`,
//! `/market/session` in the seed's shapes (their OpenAPI document is
//! `openapi.enhanced.yaml`, served at `/openapi.yaml` and `/docs`), and the
//! WebSocket streams `/ws` (the calendar-bound symbols: USDCOP and USDBRL
//! by default) and `/ws/{symbol}` (one of them).
//!
//! A stream connection is a hub subscriber of dialect `Usdcop`, so its
//! `market_data` frames are the bytes the market-data stream (seed 000)
//! sends. The client may send `{"type":"heartbeat"}`; the answer is
//! `heartbeat_response`.

use std::sync::Arc;

use poem::{
    Endpoint, EndpointExt, Request, Response, Route, get, handler,
    http::StatusCode,
    web::{Data, Path},
};
use poem_openapi::{ApiResponse, Object, OpenApi, OpenApiService, payload::Json};

use crate::{
    calendar::{SessionInfo, SessionStatus},
    dialects::rt_orchestrator::{OrchestratorError, local},
    event::{Payload, Symbol, TopicKey},
    gateway::Gateway,
    hub::Dialect,
    market::candles::Resolution,
    orchestrator::State,
    protocol::{Text, enhanced as codec},
    runtime::{
        driver::{Conn, Handler, Refusal, Rules},
        handshake::{self, Policy, json_error},
        registry::{Entry, Registry},
    },
    spec::messages::Channel,
};

/// `connectivity.*` of `/health`.
#[derive(Object, Clone)]
pub struct Connectivity {
    pub connected: bool,
    /// Round trip of a ping, when connected.
    pub response_time_ms: Option<u64>,
    /// False for Redis when no `REDIS_URL` is set.
    pub configured: bool,
}

#[derive(Object, Clone)]
pub struct ConnectivityReport {
    pub database: Connectivity,
    pub redis: Connectivity,
    /// When the probe behind this report ran (RFC 3339, UTC, to the
    /// nanosecond): health requests read
    /// the newest probe, refreshed in the background every
    /// `enhanced.health_probe_ms`; no request opens a connection itself.
    pub checked_at: String,
}

/// Whole-machine usage, read from the OS.
#[derive(Object, Clone)]
pub struct SystemResources {
    pub cpu_percent: f64,
    pub memory_percent: f64,
    /// Of the disk holding the store's data directory.
    pub disk_percent: f64,
}

#[derive(Object)]
pub struct ServiceInfo {
    /// `enhanced_websocket_service`.
    pub name: String,
    /// The orchestrator's state.
    pub status: State,
    pub uptime_seconds: u64,
}

/// `status` of `/health`.
#[derive(poem_openapi::Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum EnhancedHealthStatus {
    Healthy,
    Degraded,
}

/// `status` of a market session.
#[derive(poem_openapi::Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum SessionState {
    Open,
    /// Less than 5 minutes left.
    Closing,
    Closed,
}

/// `GET /health`.
#[derive(Object)]
pub struct EnhancedHealth {
    /// `healthy`, or `degraded` (HTTP 503) while the database or a
    /// configured Redis is unreachable.
    pub status: EnhancedHealthStatus,
    /// `enhanced-websocket-service`.
    pub service: String,
    pub version: String,
    pub service_info: ServiceInfo,
    pub connectivity: ConnectivityReport,
    pub system_resources: SystemResources,
}

#[derive(ApiResponse)]
pub enum EnhancedHealthResponse {
    #[oai(status = 200)]
    Healthy(Json<EnhancedHealth>),
    /// The database, or a configured Redis, is unreachable.
    #[oai(status = 503)]
    Degraded(Json<EnhancedHealth>),
}

/// A market session (`/market/session` and `/status`'s `market_session`).
#[derive(Object)]
pub struct MarketSession {
    /// `open`, `closing` (less than 5 minutes left) or `closed`.
    pub status: SessionState,
    pub market_open: bool,
    /// `America/Bogota`.
    pub timezone: String,
    /// Market time with offset; while open.
    pub current_session_start: Option<String>,
    /// Market time with offset; while open.
    pub current_session_end: Option<String>,
    /// While open.
    pub minutes_until_close: Option<i64>,
    /// Market time with offset: the next session after weekends and holidays.
    pub next_session_start: Option<String>,
    /// Today's holiday, when it is one.
    pub holiday: Option<String>,
}

#[derive(Object)]
pub struct L0Integration {
    pub ready_signal_exists: bool,
    pub data_freshness_hours: Option<f64>,
    pub completeness_percentage: Option<f64>,
    pub is_fresh: bool,
    pub is_complete: bool,
}

#[derive(Object)]
pub struct ApiKeyUsage {
    /// Keys in the pool (0 when none are configured).
    pub total_keys: u64,
    pub current_key_index: Option<u64>,
    pub total_calls: u64,
}

#[derive(Object)]
pub struct CollectionStatus {
    pub active: bool,
    /// Whether the upstream provider's stream is connected.
    pub websocket_connected: bool,
}

/// `GET /status`.
#[derive(Object)]
pub struct ServiceStatus {
    /// The orchestrator's state.
    pub service_status: State,
    pub is_running: bool,
    pub l0_integration: L0Integration,
    pub market_session: MarketSession,
    pub api_key_usage: ApiKeyUsage,
    pub realtime_collection: CollectionStatus,
}

/// `GET /market/latest`.
#[derive(Object)]
pub struct LatestPrice {
    pub symbol: String,
    pub price: f64,
    pub bid: f64,
    pub ask: f64,
    pub spread: f64,
    pub volume: u64,
    /// Market time with offset.
    pub timestamp: String,
    /// Where the price came from (`simulator`, `twelvedata_websocket`, ...,
    /// or `store` for the last stored close).
    pub source: String,
}

#[derive(ApiResponse)]
pub enum LatestResponse {
    #[oai(status = 200)]
    Ok(Json<LatestPrice>),
    /// No price of the symbol is known yet.
    #[oai(status = 404)]
    NotFound(Json<OrchestratorError>),
}

#[derive(poem_openapi::Tags)]
pub enum EnhancedTags {
    /// Seed 001's enhanced WebSocket service.
    Enhanced,
}

pub struct EnhancedApi {
    gateway: Arc<Gateway>,
    /// The newest probe of the database, Redis and the machine.
    probes: tokio::sync::watch::Receiver<Option<Probe>>,
}

/// What `/health` reports of the outside world, as the probe task last
/// saw it.
#[derive(Clone)]
pub struct Probe {
    connectivity: ConnectivityReport,
    resources: SystemResources,
}

/// Probes the database, Redis and the machine every
/// `enhanced.health_probe_ms` until shutdown, for `/health` to read.
async fn run_probes(gateway: Arc<Gateway>, probes: tokio::sync::watch::Sender<Option<Probe>>) {
    let every = std::time::Duration::from_millis(gateway.config.enhanced.health_probe_ms);
    let mut timer = tokio::time::interval(every);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut system = sysinfo::System::new();
    loop {
        tokio::select! {
            () = gateway.shutdown.cancelled() => return,
            _ = timer.tick() => {}
        }
        let connectivity = connectivity(&gateway).await;
        let data_dir = gateway.config.store.data_dir.clone();
        // The disk list is a walk of the mount table: off the runtime.
        let read = tokio::task::spawn_blocking(move || {
            let resources = resources(&mut system, &data_dir);
            (system, resources)
        })
        .await;
        let Ok((back, resources)) = read else {
            return;
        };
        system = back;
        probes.send_replace(Some(Probe {
            connectivity,
            resources,
        }));
    }
}

async fn connectivity(gateway: &Gateway) -> ConnectivityReport {
    let database = match gateway.writer.store().ping().await {
        Ok(elapsed) => Connectivity {
            connected: true,
            response_time_ms: Some(elapsed.as_millis() as u64),
            configured: true,
        },
        Err(_) => Connectivity {
            connected: false,
            response_time_ms: None,
            configured: true,
        },
    };
    let redis = match &gateway.broker {
        Some(broker) => {
            let ping = broker.ping().await;
            Connectivity {
                connected: ping.is_some(),
                response_time_ms: ping.map(|d| d.as_millis() as u64),
                configured: true,
            }
        }
        None => Connectivity {
            connected: false,
            response_time_ms: None,
            configured: false,
        },
    };
    ConnectivityReport {
        database,
        redis,
        checked_at: gateway.clock.now().to_string(),
    }
}

#[OpenApi]
impl EnhancedApi {
    /// Comprehensive health check
    ///
    /// The service's state, the database's and Redis's connectivity with
    /// their response times, and CPU, memory and disk usage read from the
    /// OS. 503 while the database, or a configured Redis, is unreachable.
    #[oai(
        path = "/health",
        method = "get",
        tag = "EnhancedTags::Enhanced",
        operation_id = "getEnhancedHealth"
    )]
    async fn health(&self) -> EnhancedHealthResponse {
        let gateway = &self.gateway;
        let mut probes = self.probes.clone();
        // Only before the first probe has finished (the first seconds of a
        // start) does a request wait, and not for long.
        let probe = match tokio::time::timeout(
            std::time::Duration::from_secs(5),
            probes.wait_for(Option::is_some),
        )
        .await
        {
            Ok(Ok(probe)) => probe.clone(),
            _ => None,
        };
        let (connectivity, resources) = match probe {
            Some(probe) => (probe.connectivity, probe.resources),
            None => (
                ConnectivityReport {
                    database: Connectivity {
                        connected: false,
                        response_time_ms: None,
                        configured: true,
                    },
                    redis: Connectivity {
                        connected: false,
                        response_time_ms: None,
                        configured: gateway.broker.is_some(),
                    },
                    checked_at: gateway.clock.now().to_string(),
                },
                SystemResources {
                    cpu_percent: 0.0,
                    memory_percent: 0.0,
                    disk_percent: 0.0,
                },
            ),
        };
        let (database, redis) = (&connectivity.database, &connectivity.redis);
        let healthy = database.connected && (!redis.configured || redis.connected);
        let body = EnhancedHealth {
            status: match healthy {
                true => EnhancedHealthStatus::Healthy,
                false => EnhancedHealthStatus::Degraded,
            },
            service: "enhanced-websocket-service".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            service_info: ServiceInfo {
                name: "enhanced_websocket_service".into(),
                status: gateway.orchestrator.state(),
                uptime_seconds: gateway.started.elapsed().as_secs(),
            },
            connectivity,
            system_resources: resources,
        };
        match healthy {
            true => EnhancedHealthResponse::Healthy(Json(body)),
            false => EnhancedHealthResponse::Degraded(Json(body)),
        }
    }

    /// Detailed service status
    ///
    /// The orchestrator's state, the L0 integration, the market session,
    /// API-key usage and real-time collection.
    #[oai(
        path = "/status",
        method = "get",
        tag = "EnhancedTags::Enhanced",
        operation_id = "getStatus"
    )]
    async fn status(&self) -> Json<ServiceStatus> {
        let gateway = &self.gateway;
        let snapshot = gateway.orchestrator.snapshot();
        let usage = api_key_usage(gateway);
        Json(ServiceStatus {
            service_status: gateway.orchestrator.state(),
            is_running: !gateway.shutdown.is_cancelled(),
            l0_integration: L0Integration {
                ready_signal_exists: snapshot.l0.signal_exists,
                data_freshness_hours: snapshot
                    .data
                    .freshness_hours
                    .map(|h| (h * 100.0).round() / 100.0),
                completeness_percentage: snapshot.data.completeness_percentage,
                is_fresh: snapshot.data.is_fresh,
                is_complete: snapshot.data.is_complete,
            },
            market_session: session(gateway),
            api_key_usage: usage,
            realtime_collection: CollectionStatus {
                active: snapshot.collection.active,
                websocket_connected: gateway.upstream_connected(),
            },
        })
    }

    /// Latest price
    ///
    /// The newest price of the orchestrated symbol (USDCOP), also while the
    /// market is closed: then its last stored close.
    #[oai(
        path = "/market/latest",
        method = "get",
        tag = "EnhancedTags::Enhanced",
        operation_id = "getMarketLatest"
    )]
    async fn latest(&self) -> LatestResponse {
        let gateway = &self.gateway;
        let symbol = gateway.orchestrator.symbol().clone();
        let schedule = gateway.orchestrator.schedule();
        let topic = TopicKey::Symbol(symbol.clone());
        if let Some(event) = gateway.hub.last_event(Channel::MarketData, &topic)
            && let Payload::Tick(tick) = &event.payload
        {
            return LatestResponse::Ok(Json(LatestPrice {
                symbol: symbol.to_string(),
                price: tick.price,
                bid: tick.bid,
                ask: tick.ask,
                spread: ((tick.ask - tick.bid) * 1e6).round() / 1e6,
                volume: tick.volume,
                timestamp: local(event.timestamp, schedule),
                source: tick.source.to_string(),
            }));
        }
        let now_s = gateway.clock.now().as_second();
        match gateway
            .candles
            .history(&symbol, Resolution::M1, 0, now_s + 60, 1)
            .await
            .ok()
            .and_then(|bars| bars.last().copied())
        {
            Some(bar) => LatestResponse::Ok(Json(LatestPrice {
                symbol: symbol.to_string(),
                price: bar.close,
                bid: bar.close,
                ask: bar.close,
                spread: 0.0,
                volume: bar.volume,
                timestamp: local(
                    jiff::Timestamp::from_second(bar.time + 60).unwrap_or_default(),
                    schedule,
                ),
                source: "store".into(),
            })),
            None => LatestResponse::NotFound(Json(OrchestratorError {
                code: "no_data".into(),
                message: format!("no price of {symbol} is known yet"),
            })),
        }
    }

    /// Market session
    ///
    /// `open`, `closing` or `closed`, the current session's bounds and the
    /// next session's start (after weekends and Colombian holidays), in
    /// market time with its offset.
    #[oai(
        path = "/market/session",
        method = "get",
        tag = "EnhancedTags::Enhanced",
        operation_id = "getMarketSession"
    )]
    async fn market_session(&self) -> Json<MarketSession> {
        Json(session(&self.gateway))
    }
}

/// The machine's CPU, memory and the data directory's disk usage.
fn resources(system: &mut sysinfo::System, data_dir: &std::path::Path) -> SystemResources {
    system.refresh_cpu_usage();
    system.refresh_memory();
    let memory = match system.total_memory() {
        0 => 0.0,
        total => system.used_memory() as f64 * 100.0 / total as f64,
    };
    let cpu = f64::from(system.global_cpu_usage());
    let data_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| "/".into());
    let disks = sysinfo::Disks::new_with_refreshed_list();
    let disk = disks
        .list()
        .iter()
        .filter(|d| data_dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map_or(0.0, |d| match d.total_space() {
            0 => 0.0,
            total => (total - d.available_space()) as f64 * 100.0 / total as f64,
        });
    let round = |v: f64| (v * 10.0).round() / 10.0;
    SystemResources {
        cpu_percent: round(cpu),
        memory_percent: round(memory),
        disk_percent: round(disk),
    }
}

/// The API-key pool's usage, as `/status` reports it.
fn api_key_usage(gateway: &Gateway) -> ApiKeyUsage {
    let usage = gateway.keys.usage();
    ApiKeyUsage {
        total_keys: usage.total_keys as u64,
        current_key_index: usage.current_key_index.map(|i| i as u64),
        total_calls: usage.total_calls,
    }
}

/// The orchestrated symbol's session now, in the seed's shape.
fn session(gateway: &Gateway) -> MarketSession {
    let orchestrator = &gateway.orchestrator;
    let info: SessionInfo = orchestrator.schedule().session(orchestrator.clock().now());
    let zoned = |z: Option<jiff::Zoned>| z.map(|z| z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string());
    MarketSession {
        status: match info.status {
            SessionStatus::Open => SessionState::Open,
            SessionStatus::Closing => SessionState::Closing,
            SessionStatus::Closed => SessionState::Closed,
        },
        market_open: info.market_open,
        timezone: info.timezone,
        current_session_start: zoned(info.current_session_start),
        current_session_end: zoned(info.current_session_end),
        minutes_until_close: info.minutes_until_close,
        next_session_start: zoned(info.next_session_start),
        holiday: info.holiday.map(str::to_owned),
    }
}

/// The OpenAPI service of seed 001's REST endpoints.
pub fn openapi_service(
    gateway: Arc<Gateway>,
    probes: tokio::sync::watch::Receiver<Option<Probe>>,
) -> OpenApiService<EnhancedApi, ()> {
    OpenApiService::new(
        EnhancedApi { gateway, probes },
        "tickgate enhanced WebSocket service API (seed 001)",
        "4.0.0",
    )
    .description(
        "The REST endpoints of seed 001's enhanced WebSocket service, served by tickgate on \
         port 8080 beside its WebSocket streams /ws and /ws/{symbol} (described in \
         asyncapi.yaml, channel `enhanced`).",
    )
    .server("http://127.0.0.1:8080")
}

/// The OpenAPI document (committed as `openapi.enhanced.yaml`).
pub fn openapi_yaml(gateway: Arc<Gateway>) -> String {
    let (_, probes) = tokio::sync::watch::channel(None);
    openapi_service(gateway, probes).spec_yaml()
}

/// The streams' paths: every calendar-bound symbol, and one of them.
pub const PATHS: [&str; 2] = ["/ws", "/ws/:symbol"];

/// The listener's routes.
///
/// Starts the task that probes what `/health` reports.
pub fn routes(gateway: Arc<Gateway>, dialect: Dialect, policy: Arc<Policy>) -> impl Endpoint {
    let (probe, probes) = tokio::sync::watch::channel(None);
    gateway.tasks.spawn(run_probes(gateway.clone(), probe));
    let service = openapi_service(gateway.clone(), probes);
    let edge = Arc::new(Edge {
        rules: Arc::new(Rules::standard(
            &gateway,
            dialect,
            gateway.quotes_outbox_limits.clone(),
        )),
        policy,
        state: Arc::default(),
    });
    Route::new()
        .at(PATHS[0], get(stream_all))
        .at(PATHS[1], get(stream_symbol))
        .at("/openapi.yaml", service.spec_endpoint_yaml())
        .at("/openapi.json", service.spec_endpoint())
        .nest("/docs", service.swagger_ui())
        .nest("/", service)
        .data(gateway)
        .data(edge)
        .around(|endpoint, request| async move {
            let response = endpoint.get_response(request).await;
            Ok(crate::runtime::handshake::plain_errors_as_json(response).await)
        })
}

/// `/ws`: the USD/COP system's symbols (the calendar-bound ones,
/// `calendar.symbols`).
#[handler]
fn stream_all(
    request: &Request,
    Data(gateway): Data<&Arc<Gateway>>,
    Data(edge): Data<&Arc<Edge>>,
) -> Response {
    edge.upgrade(request, gateway, |clients| {
        let symbols: Vec<Symbol> = gateway
            .calendar
            .symbols()
            .filter_map(|(name, _)| gateway.hub.symbols().insert(name).ok())
            .collect();
        Ok(admitted(clients.clone(), symbols))
    })
}

/// `/ws/{symbol}`: one of the calendar-bound symbols, else 404.
#[handler]
fn stream_symbol(
    request: &Request,
    Path(symbol): Path<String>,
    Data(gateway): Data<&Arc<Gateway>>,
    Data(edge): Data<&Arc<Edge>>,
) -> Response {
    edge.upgrade(request, gateway, |clients| {
        let bound = gateway
            .calendar
            .symbols()
            .find(|(name, _)| name.eq_ignore_ascii_case(&symbol))
            .and_then(|(name, _)| gateway.hub.symbols().insert(name).ok());
        let Some(symbol) = bound else {
            let names: Vec<&str> = gateway.calendar.symbols().map(|(name, _)| name).collect();
            return Err(json_error(
                StatusCode::NOT_FOUND,
                "unknown_symbol",
                &format!(
                    "symbol {:?} is not streamed here; the streamed symbols are {}",
                    symbol.chars().take(32).collect::<String>(),
                    names.join(", ")
                ),
            )
            .into());
        };
        Ok(admitted(clients.clone(), vec![symbol]))
    })
}

/// What the listener's stream handlers share: the streams' open
/// connections (`clients_connected`).
type Edge = handshake::Edge<Arc<Registry>>;

fn admitted(
    clients: Arc<Registry>,
    symbols: Vec<Symbol>,
) -> impl FnOnce(&Conn<'_>) -> Stream + Send + 'static {
    move |conn: &Conn<'_>| Stream::open(conn, clients, symbols)
}

/// One stream connection. The client may send `{"type":"heartbeat"}`; the
/// answer is `heartbeat_response`.
struct Stream {
    clients: Arc<Registry>,
    _entry: Entry,
}

impl Stream {
    fn open(conn: &Conn<'_>, clients: Arc<Registry>, symbols: Vec<Symbol>) -> Self {
        let gateway = conn.gateway;
        let entry = clients.enter(conn);
        for symbol in symbols {
            gateway.hub.subscribe_stream(
                conn.subscriber,
                Channel::MarketData,
                Some(TopicKey::Symbol(symbol)),
            );
        }
        crate::dialects::market_stream::drop_closed_snapshots(gateway, conn.outbox());
        Self {
            clients,
            _entry: entry,
        }
    }
}

impl Handler for Stream {
    fn on_text(&mut self, conn: &Conn<'_>, text: Text) {
        let gateway = conn.gateway;
        let now = gateway.clock.now();
        let reply = match codec::decode(&text) {
            Ok(codec::Command::Heartbeat) => {
                let orchestrator = &gateway.orchestrator;
                let info = orchestrator.schedule().session(orchestrator.clock().now());
                codec::heartbeat_response(
                    &codec::Status {
                        service: orchestrator.state(),
                        market: info.status,
                        market_open: info.market_open,
                        clients_connected: self.clients.len() as u64,
                    },
                    now,
                )
            }
            Err(message) => codec::error(message, now),
        };
        conn.outbox().push_control(reply);
    }

    fn refusal(&mut self, conn: &Conn<'_>, refusal: Refusal) -> Option<Text> {
        let message = match refusal {
            Refusal::FrameTooLarge { size, max } => {
                format!("Invalid message format: frame of {size} bytes; at most {max}")
            }
            Refusal::RateLimited { .. } => {
                let ws = &conn.gateway.config.ws;
                format!(
                    "Rate limit exceeded: at most {} messages per second (burst {})",
                    ws.inbound_per_second, ws.inbound_burst
                )
            }
            Refusal::Binary => "Invalid message format: send JSON text frames".to_owned(),
        };
        Some(codec::error(message, conn.gateway.clock.now()))
    }
}
