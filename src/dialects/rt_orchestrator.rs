//! The RT orchestrator's REST API (seed 000) on its own listener
//! (`rt_orchestrator.port`, 8085): health, market status, the L0 pipeline
//! dependency, force-start and API-key rotation, each in the seed's shape,
//! with its own OpenAPI document (`openapi.rt-orchestrator.yaml`, served at
//! `/openapi.yaml` and `/docs`).
//!
//! Every response carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
//! `X-RateLimit-Reset` (epoch seconds); a client over
//! `rt_orchestrator.requests_per_minute` gets 429.

use std::{net::IpAddr, num::NonZeroU32, sync::Arc};

use governor::{
    Quota, RateLimiter,
    clock::{Clock as _, DefaultClock},
    middleware::StateInformationMiddleware,
    state::keyed::DefaultKeyedStateStore,
};
use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response, Route,
    http::{HeaderValue, StatusCode},
    web::RemoteAddr,
};
use poem_openapi::{ApiResponse, Object, OpenApi, OpenApiService, payload::Json};

use crate::{
    calendar::Schedule,
    dialects::market_stream::Streams,
    gateway::Gateway,
    orchestrator::{ForceStartError, ForceStarted, State},
    runtime::handshake::json_error,
};

/// Times the way seed 000 writes them: UTC with `Z`, to the second.
pub fn utc(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Times in the market's zone with its offset (`2025-10-22T10:30:00-05:00`).
pub fn local(at: jiff::Timestamp, schedule: &Schedule) -> String {
    let zone = match schedule {
        Schedule::Weekly(session) => session.tz.clone(),
        Schedule::AlwaysOpen => jiff::tz::TimeZone::UTC,
    };
    at.to_zoned(zone)
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// `status` of the orchestrator's `/health`.
#[derive(poem_openapi::Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Serving (also while waiting for L0 or outside market hours): 200.
    Healthy,
    /// The orchestrator is initializing: 503.
    Starting,
    /// The store, or a configured Redis, is down: 503.
    Degraded,
}

/// `GET /health`.
#[derive(Object)]
pub struct OrchestratorHealth {
    /// `healthy` while serving (also while waiting for L0 or outside market
    /// hours); `starting` or `degraded` with HTTP 503.
    pub status: HealthStatus,
    /// Always `rt-orchestrator`.
    pub service: String,
    pub version: String,
    /// Whether the market is open now.
    pub market_hours_active: bool,
    /// Whether the L0 ready signal was seen.
    pub l0_pipeline_completed: bool,
    /// Whether real-time data is being collected.
    pub realtime_collection_active: bool,
    /// Clients of the market-data stream (port 8082).
    pub websocket_clients_connected: u64,
    pub uptime_seconds: u64,
    /// Time of the newest collected price (UTC), if any.
    pub last_data_timestamp: Option<String>,
    /// The orchestrator's state.
    pub orchestrator_state: State,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// Serving.
    #[oai(status = 200)]
    Healthy(Json<OrchestratorHealth>),
    /// Starting, or a dependency (the store, Redis when configured) is down.
    #[oai(status = 503)]
    Unavailable(Json<OrchestratorHealth>),
}

/// Market hours, local time.
#[derive(Object)]
pub struct MarketHours {
    /// `08:00`.
    pub open: String,
    /// `12:55`.
    pub close: String,
}

#[derive(Object)]
pub struct L0PipelineStatus {
    pub completed: bool,
    /// When L0 completed, market time with offset.
    pub completed_at: Option<String>,
    /// 5-minute bars of the last 24 hours found in the store at the last check.
    pub records_processed: u64,
    /// The newest stored bar (UTC).
    pub last_timestamp: Option<String>,
}

#[derive(Object)]
pub struct RealtimeCollection {
    pub active: bool,
    /// Market time with offset.
    pub started_at: Option<String>,
    /// Prices collected since the service started.
    pub data_points_collected: u64,
    /// The newest collected price (UTC).
    pub last_update: Option<String>,
}

/// `GET /api/market-status`.
#[derive(Object)]
pub struct MarketStatus {
    pub market_open: bool,
    /// Now, market time with offset.
    pub current_time: String,
    /// `America/Bogota`.
    pub timezone: String,
    pub market_hours: MarketHours,
    pub l0_pipeline_status: L0PipelineStatus,
    pub realtime_collection: RealtimeCollection,
}

/// `GET /api/pipeline-dependency`.
#[derive(Object)]
pub struct PipelineDependency {
    /// The L0 ready signal was seen.
    pub l0_completed: bool,
    /// UTC.
    pub completed_at: Option<String>,
    /// Seconds waited for L0 (so far, while waiting).
    pub wait_duration_seconds: i64,
    /// L0 did not complete within `orchestrator.l0_timeout_s` (or
    /// force-start skipped it): collecting on the stored history.
    pub fallback_mode: bool,
    /// Whether stored history exists.
    pub historical_data_available: bool,
}

/// `POST /api/force-start` body.
#[derive(Object)]
pub struct ForceStartRequest {
    /// Why (recorded in `system_health`).
    #[oai(validator(max_length = 1000))]
    pub reason: String,
    /// Who asks (recorded); the client address when omitted.
    #[oai(validator(max_length = 200))]
    pub requested_by: Option<String>,
}

#[derive(Object)]
pub struct ForceStartBody {
    /// `force_started`, or `already_started` on a repeat call.
    pub status: String,
    pub message: String,
    pub warning: String,
    /// When collection started (UTC); the original start on a repeat call.
    pub started_at: String,
}

/// An error body: `{code, message}`.
#[derive(Object)]
pub struct OrchestratorError {
    pub code: String,
    pub message: String,
}

#[derive(ApiResponse)]
pub enum ForceStartResponse {
    /// Collection started, or was already running.
    #[oai(status = 200)]
    Started(Json<ForceStartBody>),
    /// The body is not the documented JSON.
    #[oai(status = 400)]
    BadRequest(Json<OrchestratorError>),
    /// The market is closed: force-start never overrides market hours.
    #[oai(status = 409)]
    MarketClosed(Json<OrchestratorError>),
}

/// `POST /api/rotate-api-keys` answer.
#[derive(Object)]
pub struct Rotation {
    /// `rotated`.
    pub status: String,
    pub previous_key_index: u64,
    pub current_key_index: u64,
    /// Credits left on the new key, when the provider said.
    pub remaining_credits: Option<u64>,
    /// When the provider resets the new key's credits (UTC), when known.
    pub next_reset: Option<String>,
}

#[derive(ApiResponse)]
pub enum RotateResponse {
    /// Rotated to the next usable key.
    #[oai(status = 200)]
    Rotated(Json<Rotation>),
    /// Fewer than two keys configured, or none usable now.
    #[oai(status = 409)]
    Conflict(Json<OrchestratorError>),
}

#[derive(poem_openapi::Tags)]
pub enum OrchestratorTags {
    /// The RT orchestrator (seed 000).
    Orchestrator,
}

/// The statuses an operator may announce.
#[derive(poem_openapi::Enum, Debug, Clone, Copy)]
#[oai(rename_all = "snake_case")]
pub enum OperatorStatus {
    MaintenanceMode,
    DegradedService,
}

/// `POST /api/system-status` body.
#[derive(Object)]
pub struct Announcement {
    pub status: OperatorStatus,
    /// The text clients show.
    #[oai(validator(max_length = 500))]
    pub message: String,
}

/// `POST /api/system-status` answer.
#[derive(Object)]
pub struct Announced {
    /// `sent`.
    pub status: String,
    /// Stream clients it was queued to.
    pub clients: u64,
}

pub struct OrchestratorApi {
    gateway: Arc<Gateway>,
    /// The market-data stream's connections (8082), which operator
    /// announcements reach.
    streams: Arc<Streams>,
}

#[OpenApi]
impl OrchestratorApi {
    /// Health of the orchestrator
    ///
    /// 200 `healthy` while serving, also while waiting for L0 or outside
    /// market hours; 503 while starting or while the store (or Redis, when
    /// configured) is down.
    #[oai(
        path = "/health",
        method = "get",
        tag = "OrchestratorTags::Orchestrator",
        operation_id = "getOrchestratorHealth"
    )]
    async fn health(&self) -> HealthResponse {
        let gateway = &self.gateway;
        let orchestrator = &gateway.orchestrator;
        let snapshot = orchestrator.snapshot();
        let now = orchestrator.clock().now();
        let store_down = gateway.writer.stats().is_down();
        let redis_down = gateway.broker.as_ref().is_some_and(|b| !b.connected());
        let status = match (snapshot.state, store_down || redis_down) {
            (State::Initializing, _) => HealthStatus::Starting,
            (_, true) => HealthStatus::Degraded,
            _ => HealthStatus::Healthy,
        };
        let body = OrchestratorHealth {
            status,
            service: "rt-orchestrator".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            market_hours_active: orchestrator.schedule().is_open(now),
            l0_pipeline_completed: snapshot.l0.completed,
            realtime_collection_active: snapshot.collection.active,
            websocket_clients_connected: self.streams.connections() as u64,
            uptime_seconds: gateway.started.elapsed().as_secs(),
            last_data_timestamp: snapshot.collection.last_update.map(utc),
            orchestrator_state: snapshot.state,
        };
        match status {
            HealthStatus::Healthy => HealthResponse::Healthy(Json(body)),
            HealthStatus::Starting | HealthStatus::Degraded => {
                HealthResponse::Unavailable(Json(body))
            }
        }
    }

    /// Market status
    ///
    /// Whether the market is open now (market time with its offset), its
    /// hours, the L0 pipeline's status and real-time collection.
    #[oai(
        path = "/api/market-status",
        method = "get",
        tag = "OrchestratorTags::Orchestrator",
        operation_id = "getMarketStatus"
    )]
    async fn market_status(&self) -> Json<MarketStatus> {
        let orchestrator = &self.gateway.orchestrator;
        let schedule = orchestrator.schedule();
        let now = orchestrator.clock().now();
        let snapshot = orchestrator.snapshot();
        let (open, close) = match schedule {
            Schedule::Weekly(session) => (
                session.open.strftime("%H:%M").to_string(),
                session.close.strftime("%H:%M").to_string(),
            ),
            Schedule::AlwaysOpen => ("00:00".into(), "24:00".into()),
        };
        Json(MarketStatus {
            market_open: schedule.is_open(now),
            current_time: local(now, schedule),
            timezone: schedule.session(now).timezone,
            market_hours: MarketHours { open, close },
            l0_pipeline_status: L0PipelineStatus {
                completed: snapshot.l0.completed,
                completed_at: snapshot.l0.completed_at.map(|t| local(t, schedule)),
                records_processed: snapshot.data.bars_24h,
                last_timestamp: snapshot.data.newest_bar.map(utc),
            },
            realtime_collection: RealtimeCollection {
                active: snapshot.collection.active,
                started_at: snapshot.collection.started_at.map(|t| local(t, schedule)),
                data_points_collected: snapshot.collection.data_points_collected,
                last_update: snapshot.collection.last_update.map(utc),
            },
        })
    }

    /// L0 pipeline dependency
    ///
    /// Whether the L0 ready signal was seen, how long the wait took, and
    /// whether collection fell back to the stored history.
    #[oai(
        path = "/api/pipeline-dependency",
        method = "get",
        tag = "OrchestratorTags::Orchestrator",
        operation_id = "getPipelineDependency"
    )]
    async fn pipeline_dependency(&self) -> Json<PipelineDependency> {
        let snapshot = self.gateway.orchestrator.snapshot();
        Json(PipelineDependency {
            l0_completed: snapshot.l0.completed,
            completed_at: snapshot.l0.completed_at.map(utc),
            wait_duration_seconds: snapshot.l0.wait_duration_seconds,
            fallback_mode: snapshot.l0.fallback_mode,
            historical_data_available: snapshot.data.historical_data_available,
        })
    }

    /// Force start (emergencies)
    ///
    /// Starts real-time collection without waiting for L0, and records who
    /// and why in `system_health`. Never overrides market hours: outside
    /// them the answer is 409. A repeat call while collecting answers 200
    /// with the original `started_at`.
    #[oai(
        path = "/api/force-start",
        method = "post",
        tag = "OrchestratorTags::Orchestrator",
        operation_id = "forceStart"
    )]
    async fn force_start(
        &self,
        remote: &RemoteAddr,
        body: poem_openapi::payload::Json<ForceStartRequest>,
    ) -> ForceStartResponse {
        let requested_by = body
            .0
            .requested_by
            .clone()
            .unwrap_or_else(|| remote.to_string());
        let warning = "This may result in data inconsistencies".to_owned();
        match self.gateway.orchestrator.force_start(
            &body.0.reason,
            &requested_by,
            &self.gateway.writer,
        ) {
            Ok(ForceStarted::Started(forced)) => {
                ForceStartResponse::Started(Json(ForceStartBody {
                    status: "force_started".into(),
                    message: "RT collection started without L0 dependency check".into(),
                    warning,
                    started_at: utc(forced.started_at),
                }))
            }
            Ok(ForceStarted::AlreadyStarted { started_at }) => {
                ForceStartResponse::Started(Json(ForceStartBody {
                    status: "already_started".into(),
                    message: "RT collection is already running".into(),
                    warning,
                    started_at: utc(started_at),
                }))
            }
            Err(error @ ForceStartError::MarketClosed { .. }) => {
                ForceStartResponse::MarketClosed(Json(OrchestratorError {
                    code: "market_closed".into(),
                    message: error.to_string(),
                }))
            }
        }
    }

    /// Announce a system status (operators)
    ///
    /// Sends a `system_status` frame (`maintenance_mode` or
    /// `degraded_service`) with the given message to every client of the
    /// market-data stream (port 8082). Answers how many clients it reached.
    #[oai(
        path = "/api/system-status",
        method = "post",
        tag = "OrchestratorTags::Orchestrator",
        operation_id = "announceSystemStatus"
    )]
    async fn announce(&self, body: poem_openapi::payload::Json<Announcement>) -> Json<Announced> {
        use crate::spec::messages::UsdcopStatus;
        let status = match body.0.status {
            OperatorStatus::MaintenanceMode => UsdcopStatus::MaintenanceMode,
            OperatorStatus::DegradedService => UsdcopStatus::DegradedService,
        };
        let frame = crate::protocol::usdcop::system_status(
            status,
            body.0.message.clone(),
            None,
            self.gateway.clock.now(),
        );
        let streams = &self.streams;
        streams.broadcast(&frame);
        tracing::warn!(status = ?body.0.status, message = %body.0.message, "operator system status");
        Json(Announced {
            status: "sent".into(),
            clients: streams.connections() as u64,
        })
    }

    /// Rotate API keys
    ///
    /// Moves the upstream provider's client to the next usable key of the
    /// pool. 409 when fewer than two keys are configured or none is usable.
    #[oai(
        path = "/api/rotate-api-keys",
        method = "post",
        tag = "OrchestratorTags::Orchestrator",
        operation_id = "rotateApiKeys"
    )]
    async fn rotate_api_keys(&self) -> RotateResponse {
        match rotate(&self.gateway) {
            Ok(rotation) => RotateResponse::Rotated(Json(rotation)),
            Err(message) => RotateResponse::Conflict(Json(OrchestratorError {
                code: "rotation_unavailable".into(),
                message,
            })),
        }
    }
}

/// The OpenAPI service of the RT orchestrator's REST API.
pub fn openapi_service(
    gateway: Arc<Gateway>,
    streams: Arc<Streams>,
) -> OpenApiService<OrchestratorApi, ()> {
    OpenApiService::new(
        OrchestratorApi { gateway, streams },
        "tickgate RT orchestrator API (seed 000)",
        "2.0.0",
    )
    .description(
        "The real-time orchestrator REST API of the USD/COP system (seed 000), served by \
         tickgate on port 8085. Every response carries X-RateLimit-Limit, \
         X-RateLimit-Remaining and X-RateLimit-Reset (epoch seconds); beyond 60 requests \
         per minute per client the answer is 429 with a JSON {code, message} body.",
    )
    .server("http://127.0.0.1:8085")
}

/// The OpenAPI document (committed as `openapi.rt-orchestrator.yaml`).
pub fn openapi_yaml(gateway: Arc<Gateway>) -> String {
    openapi_service(gateway, Arc::default()).spec_yaml()
}

/// Rotates the upstream provider's API key (`POST /api/rotate-api-keys`).
///
/// # Errors
/// The reason there is nothing to rotate to.
fn rotate(gateway: &Gateway) -> Result<Rotation, String> {
    let rotation = gateway
        .keys
        .rotate(jiff::Timestamp::now())
        .map_err(|error| error.to_string())?;
    Ok(Rotation {
        status: "rotated".into(),
        previous_key_index: rotation.previous_key_index as u64,
        current_key_index: rotation.current_key_index as u64,
        remaining_credits: rotation.remaining_credits.map(u64::from),
        next_reset: rotation.next_reset.map(utc),
    })
}

type Limiter =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock, StateInformationMiddleware>;

/// The listener's routes.
pub fn routes(gateway: Arc<Gateway>, streams: Arc<Streams>) -> impl Endpoint {
    let per_minute = gateway.config.rt_orchestrator.requests_per_minute;
    let service = openapi_service(gateway.clone(), streams);
    let app = Route::new()
        .at("/openapi.yaml", service.spec_endpoint_yaml())
        .at("/openapi.json", service.spec_endpoint())
        .nest("/docs", service.swagger_ui())
        .nest("/", service);
    let limit = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    let limiter: Arc<Limiter> = Arc::new(
        RateLimiter::keyed(Quota::per_minute(limit))
            .with_middleware::<StateInformationMiddleware>(),
    );
    app.around(move |endpoint, request| {
        let limiter = limiter.clone();
        async move {
            let response = rate_limited(&endpoint, request, &limiter, limit.get()).await;
            Ok(crate::runtime::handshake::plain_errors_as_json(response).await)
        }
    })
}

/// Answers `request` within the client's budget (or 429), with the
/// `X-RateLimit-*` headers either way.
async fn rate_limited<E: Endpoint>(
    endpoint: &E,
    request: Request,
    limiter: &Limiter,
    limit: u32,
) -> Response {
    let ip = request
        .remote_addr()
        .as_socket_addr()
        .map(std::net::SocketAddr::ip)
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if limiter.len() > 10_000 {
        limiter.retain_recent();
    }
    let now_s = jiff::Timestamp::now().as_second();
    let per_request_s = 60.0 / f64::from(limit);
    let (mut response, remaining, reset) = match limiter.check_key(&ip) {
        Ok(state) => {
            let remaining = state.remaining_burst_capacity();
            let used = f64::from(limit.saturating_sub(remaining));
            let reset = now_s + (used * per_request_s).ceil() as i64;
            (endpoint.get_response(request).await, remaining, reset)
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let message = format!(
                "more than {limit} requests per minute; retry in {} s",
                wait.as_secs() + 1
            );
            let response = json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                &message,
            );
            (response, 0, now_s + wait.as_secs() as i64 + 1)
        }
    };
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", i64::from(limit)),
        ("x-ratelimit-remaining", i64::from(remaining)),
        ("x-ratelimit-reset", reset),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
            headers.insert(name, value);
        }
    }
    response.into_response()
}
