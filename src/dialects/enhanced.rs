//! Seed 001's enhanced WebSocket service on its own listener
//! (`enhanced.port`, 8080): `GET /health`, `/status`, `/market/latest`,
//! `/market/session` in the seed's shapes (their OpenAPI document is
//! `openapi.enhanced.yaml`, served at `/openapi.yaml` and `/docs`), and the
//! WebSocket streams `/ws` (every symbol) and `/ws/{symbol}`.
//!
//! A stream connection is a hub subscriber of dialect `Usdcop`, so its
//! `market_data` frames are the bytes the market-data stream (seed 000)
//! sends. The client may send `{"type":"heartbeat"}`; the answer is
//! `heartbeat_response`.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use parking_lot::Mutex;
use poem::{
    Endpoint, EndpointExt, Request, Response, Route, get, handler,
    http::StatusCode,
    web::{Data, Path},
};
use poem_openapi::{ApiResponse, Object, OpenApi, OpenApiService, payload::Json};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;
use tracing::Instrument;

use crate::{
    calendar::{SessionInfo, SessionStatus},
    dialects::rt_orchestrator::{OrchestratorError, local},
    event::{Payload, Symbol, TopicKey},
    gateway::Gateway,
    hub::Dialect,
    market::candles::Resolution,
    protocol::{Text, close},
    session::{
        close_stream, open_stream,
        upgrade::{Socket, accept, json_error},
    },
    spec::{
        UsdcopTime,
        messages::{
            Channel, EnhancedClientFrame, EnhancedServerFrame, EnhancedServerStatus,
            EnhancedServerStatusMarketStatus, EnhancedServerStatusServiceStatus,
        },
    },
};

/// `connectivity.*` of `/health`.
#[derive(Object)]
pub struct Connectivity {
    pub connected: bool,
    /// Round trip of a ping, when connected.
    pub response_time_ms: Option<u64>,
    /// False for Redis when no `REDIS_URL` is set.
    pub configured: bool,
}

#[derive(Object)]
pub struct ConnectivityReport {
    pub database: Connectivity,
    pub redis: Connectivity,
}

/// Whole-machine usage, read from the OS.
#[derive(Object)]
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
    pub status: String,
    pub uptime_seconds: u64,
}

/// `GET /health`.
#[derive(Object)]
pub struct EnhancedHealth {
    /// `healthy`, or `degraded` (HTTP 503) while the database or a
    /// configured Redis is unreachable.
    pub status: String,
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
    pub status: String,
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
    pub service_status: String,
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
    system: Mutex<sysinfo::System>,
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
        let healthy = database.connected && (!redis.configured || redis.connected);
        let body = EnhancedHealth {
            status: if healthy { "healthy" } else { "degraded" }.into(),
            service: "enhanced-websocket-service".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            service_info: ServiceInfo {
                name: "enhanced_websocket_service".into(),
                status: state_name(gateway),
                uptime_seconds: gateway.started.elapsed().as_secs(),
            },
            connectivity: ConnectivityReport { database, redis },
            system_resources: self.resources(),
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
        let usage = gateway.api_key_usage();
        Json(ServiceStatus {
            service_status: state_name(gateway),
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
        let now_s = jiff::Timestamp::now().as_second();
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

impl EnhancedApi {
    fn resources(&self) -> SystemResources {
        let mut system = self.system.lock();
        system.refresh_cpu_usage();
        system.refresh_memory();
        let memory = match system.total_memory() {
            0 => 0.0,
            total => system.used_memory() as f64 * 100.0 / total as f64,
        };
        let cpu = f64::from(system.global_cpu_usage());
        drop(system);
        let data_dir = std::fs::canonicalize(&self.gateway.config.store.data_dir)
            .unwrap_or_else(|_| "/".into());
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
}

fn state_name(gateway: &Gateway) -> String {
    serde_json::to_value(gateway.orchestrator.state())
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The orchestrated symbol's session now, in the seed's shape.
fn session(gateway: &Gateway) -> MarketSession {
    let orchestrator = &gateway.orchestrator;
    let info: SessionInfo = orchestrator.schedule().session(orchestrator.clock().now());
    let zoned = |z: Option<jiff::Zoned>| z.map(|z| z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string());
    MarketSession {
        status: match info.status {
            SessionStatus::Open => "open",
            SessionStatus::Closing => "closing",
            SessionStatus::Closed => "closed",
        }
        .into(),
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
pub fn openapi_service(gateway: Arc<Gateway>) -> OpenApiService<EnhancedApi, ()> {
    OpenApiService::new(
        EnhancedApi {
            gateway,
            system: Mutex::new(sysinfo::System::new()),
        },
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
    openapi_service(gateway).spec_yaml()
}

/// The listener's routes.
pub fn routes(gateway: Arc<Gateway>) -> impl Endpoint {
    let service = openapi_service(gateway.clone());
    Route::new()
        .at("/ws", get(stream_all))
        .at("/ws/:symbol", get(stream_symbol))
        .at("/openapi.yaml", service.spec_endpoint_yaml())
        .at("/openapi.json", service.spec_endpoint())
        .nest("/docs", service.swagger_ui())
        .nest("/", service)
        .data(gateway)
        .around(|endpoint, request| async move {
            let response = endpoint.get_response(request).await;
            Ok(crate::session::upgrade::plain_errors_as_json(response).await)
        })
}

#[handler]
fn stream_all(request: &Request, Data(gateway): Data<&Arc<Gateway>>) -> Response {
    accept(request, gateway, |gateway, socket| async move {
        serve(gateway, socket, None)
            .instrument(tracing::info_span!("enhanced"))
            .await;
    })
}

#[handler]
fn stream_symbol(
    request: &Request,
    Path(symbol): Path<String>,
    Data(gateway): Data<&Arc<Gateway>>,
) -> Response {
    let Some(symbol) = gateway.hub.symbols().get(&symbol.to_ascii_uppercase()) else {
        return json_error(
            StatusCode::NOT_FOUND,
            "unknown_symbol",
            &format!("symbol {symbol:?} is not streamed; GET /market/latest names the main one"),
        );
    };
    accept(request, gateway, move |gateway, socket| async move {
        serve(gateway, socket, Some(symbol))
            .instrument(tracing::info_span!("enhanced"))
            .await;
    })
}

async fn serve(gateway: Arc<Gateway>, socket: Socket, symbol: Option<Symbol>) {
    let (mut conn, mut stream) = open_stream(&gateway, socket, Dialect::Usdcop);
    let outbox = conn.outbox.clone();
    gateway
        .enhanced_clients
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    gateway.hub.subscribe_stream(
        &conn.subscriber,
        Channel::MarketData,
        symbol.map(TopicKey::Symbol),
    );
    crate::dialects::market_stream::drop_closed_snapshots(&gateway, &outbox);
    let idle = Duration::from_millis(gateway.config.ws.idle_timeout_ms);
    let max_frame = gateway.config.ws.max_frame_bytes;
    let mut last_seen = Instant::now();
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(Ok(message)) => {
                    last_seen = Instant::now();
                    match message {
                        Message::Text(text) => {
                            gateway.stats.frame_in();
                            if text.len() > max_frame {
                                outbox.push_control(error(&format!("frame of {} bytes; at most {max_frame}", text.len())));
                                outbox.close(close::FRAME_TOO_LARGE);
                                continue;
                            }
                            outbox.push_control(answer(&gateway, &text));
                        }
                        Message::Binary(_) => {
                            gateway.stats.frame_in();
                            outbox.push_control(error("Invalid message format: send JSON text frames"));
                        }
                        Message::Close(_) => break,
                        _ => {}
                    }
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "read failed");
                    break;
                }
                None => break,
            },
            () = sleep_until(last_seen + idle) => {
                outbox.close(close::HEARTBEAT_TIMEOUT);
                last_seen = Instant::now();
            }
            () = conn.writer_stopped() => break,
        }
    }
    gateway
        .enhanced_clients
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    close_stream(&gateway, conn).await;
}

/// The answer to one client text frame.
fn answer(gateway: &Gateway, text: &str) -> Text {
    match serde_json::from_str::<EnhancedClientFrame>(text) {
        // The union has one variant, so typify types it by its tag only.
        Ok(EnhancedClientFrame::Type(kind)) if kind == "heartbeat" => {
            let orchestrator = &gateway.orchestrator;
            let info = orchestrator.schedule().session(orchestrator.clock().now());
            let service_status = serde_json::to_value(orchestrator.state())
                .ok()
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or(EnhancedServerStatusServiceStatus::Error);
            let frame = EnhancedServerFrame::HeartbeatResponse {
                timestamp: UsdcopTime(jiff::Timestamp::now()),
                server_status: EnhancedServerStatus {
                    service_status,
                    market_status: match info.status {
                        SessionStatus::Open => EnhancedServerStatusMarketStatus::Open,
                        SessionStatus::Closing => EnhancedServerStatusMarketStatus::Closing,
                        SessionStatus::Closed => EnhancedServerStatusMarketStatus::Closed,
                    },
                    market_open: info.market_open,
                    clients_connected: gateway
                        .enhanced_clients
                        .load(std::sync::atomic::Ordering::Relaxed),
                },
            };
            serde_json::to_string(&frame).unwrap_or_default().into()
        }
        _ => error(r#"Invalid message format: send {"type": "heartbeat"}"#),
    }
}

fn error(message: &str) -> Text {
    let frame = EnhancedServerFrame::Error {
        message: message.to_owned(),
        timestamp: UsdcopTime(jiff::Timestamp::now()),
    };
    serde_json::to_string(&frame).unwrap_or_default().into()
}
