//! The WebSocket handshake of every dialect, in one fixed order:
//!
//! 1. a GET with the upgrade headers (`Upgrade: websocket`,
//!    `Connection: upgrade`, `Sec-WebSocket-Version: 13`, a key), else 426;
//! 2. the gateway is not shutting down, else 503;
//! 3. the listener's `Origin` allowlist, else 403;
//! 4. the client address's handshake rate and open connections on this
//!    listener (`runtime::ip`), else 429 with `Retry-After`;
//! 5. the dialect's own checks (`admit`: its path parameters, query,
//!    Origin, per-IP slots, a source it needs), each with its status;
//! 6. one of `server.max_connections` permits, else 503 with `Retry-After`;
//! 7. 101, and the connection's driver runs as a tracked task.
//!
//! Done over poem's raw upgrade so the driver owns a tokio-tungstenite
//! stream: frames stay shared `Utf8Bytes` end to end, and buffer sizes and
//! frame limits are ours to set.

use std::{sync::Arc, time::Duration};

use poem::{
    Request, Response,
    http::{HeaderValue, Method, StatusCode, header},
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        handshake::derive_accept_key,
        protocol::{Role, WebSocketConfig},
    },
};
use tracing::Instrument;

use super::{
    driver::{Conn, Driver, Handler, Rules},
    ip::{IpLimits, IpRefusal},
};
use crate::gateway::Gateway;

/// Per-connection read buffer. tungstenite allocates it up front and
/// zero-fills all of it before the first read, so every idle connection keeps
/// it resident: its default (128 KiB) would dominate, and even 4 KiB was
/// 40 % of an idle quotes connection. Client frames are small (subscribe
/// and pong frames well under 512 bytes, an auth frame with its JWT one to
/// three reads); a larger frame grows the buffer to its length (up to
/// tungstenite's frame cap) while it is read, in reads of this size.
const READ_BUFFER: usize = 512;

/// Bytes the writer gathers before writing to the socket; frames queued for a
/// connection leave in writes of up to this size.
const WRITE_BUFFER: usize = 64 * 1024;

/// What one listener admits before any dialect check: the `Origin`
/// allowlist and the per-address limits.
pub struct Policy {
    pub ip: Arc<IpLimits>,
    /// `Origin` values allowed; `*` allows any.
    pub origins: Vec<String>,
    /// The setting that holds `origins`, named in the refusal.
    pub origins_key: &'static str,
}

impl Policy {
    /// 403 `origin_not_allowed` for a browser whose `Origin` is not
    /// allowed; None otherwise (also without an `Origin` header).
    fn check_origin(&self, request: &Request) -> Option<Response> {
        let origin = request.headers().get(header::ORIGIN)?;
        let origin = origin.to_str().unwrap_or_default();
        if self.origins.iter().any(|o| o == "*" || o == origin) {
            return None;
        }
        Some(json_error(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            &format!(
                "this Origin may not open a WebSocket on this listener; add it to {}",
                self.origins_key
            ),
        ))
    }
}

/// What a dialect endpoint's handlers share: the rules of its connections,
/// its listener's policy, and the dialect's own `state`.
pub struct Edge<T> {
    pub rules: Arc<Rules>,
    pub policy: Arc<Policy>,
    pub state: T,
}

impl<T> Edge<T> {
    /// `upgrade` with this endpoint's policy and rules: `admit` runs the
    /// dialect's own checks and returns what makes its handler.
    pub fn upgrade<H, M, F>(&self, request: &Request, gateway: &Arc<Gateway>, admit: F) -> Response
    where
        H: Handler,
        M: FnOnce(&Conn<'_>) -> H + Send + 'static,
        F: FnOnce(&T) -> Result<M, Refused>,
    {
        upgrade(request, gateway, &self.policy, || {
            Ok((self.rules.clone(), admit(&self.state)?))
        })
    }
}

/// A dialect's refusal of a handshake: the response to send instead of 101.
pub struct Refused(Box<Response>);

impl From<Response> for Refused {
    fn from(response: Response) -> Self {
        Self(Box::new(response))
    }
}

/// Upgrades `request` to a WebSocket served by `driver::run` with what
/// `admit` returns (the dialect's rules, and what makes its handler once
/// the connection is open), or answers with the
/// first check that fails (see the module's doc).
pub fn upgrade<H, M, F>(
    request: &Request,
    gateway: &Arc<Gateway>,
    policy: &Policy,
    admit: F,
) -> Response
where
    H: Handler,
    M: FnOnce(&Conn<'_>) -> H + Send + 'static,
    F: FnOnce() -> Result<(Arc<Rules>, M), Refused>,
{
    let Some(key) = handshake_key(request) else {
        let response = json_error(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "this is a WebSocket endpoint: connect with a WebSocket client (GET with Upgrade: websocket, Sec-WebSocket-Version: 13)",
        );
        return with_header(
            response,
            header::UPGRADE,
            HeaderValue::from_static("websocket"),
        );
    };
    if gateway.shutdown.is_cancelled() {
        gateway.stats.handshake_refused("shutting_down");
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the gateway is shutting down; reconnect to another instance or retry shortly",
        );
    }
    if let Some(refused) = policy.check_origin(request) {
        gateway.stats.handshake_refused("origin_not_allowed");
        return refused;
    }
    let ip = &policy.ip;
    let slot = match ip.client_ip(request).map(|addr| ip.admit(addr)) {
        Some(Ok(slot)) => Some(slot),
        // No peer address (not a TCP connection): nothing to count.
        None => None,
        Some(Err(refusal)) => return ip_refused(gateway, ip, refusal),
    };
    let (rules, make) = match admit() {
        Ok(admitted) => admitted,
        Err(Refused(response)) => return *response,
    };
    let Ok(permit) = gateway.connections.clone().try_acquire_owned() else {
        gateway.stats.handshake_refused("connection_limit");
        let message = format!(
            "the gateway holds its maximum of {} connections; retry later",
            gateway.config.server.max_connections
        );
        let response = json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "connection_limit",
            &message,
        );
        return with_header(response, header::RETRY_AFTER, HeaderValue::from_static("1"));
    };
    let Ok(on_upgrade) = request.take_upgrade() else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "upgrade_failed",
            "the connection cannot be upgraded",
        );
    };
    // The driver enforces `max_frame_bytes` on whole frames, so it can
    // answer with the dialect's error frame and a clean 1009 close.
    // tungstenite's own cap (twice that) bounds memory against frames far
    // past the limit; those get the same answer, read no further.
    let max_frame = rules.max_frame_bytes.saturating_mul(2);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(WRITE_BUFFER * 16)
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame));
    // The HTTP layer hands the connection over once the 101 is written; a
    // client that does not read it is bounded like one that sends no
    // headers.
    let handover = Duration::from_millis(gateway.config.server.header_timeout_ms);
    let task_gateway = gateway.clone();
    let span = tracing::info_span!("ws", dialect = rules.dialect.name());
    // Two tasks in turn: this short one waits for the upgrade, then starts
    // the connection's own, which holds only the driver (a task keeps room
    // for everything its future ever held, for its whole life).
    gateway.tasks.spawn(async move {
        let hold = (permit, slot);
        let Ok(Ok(upgraded)) = tokio::time::timeout(handover, on_upgrade).await else {
            return;
        };
        let socket = WebSocketStream::from_raw_socket(upgraded, Role::Server, Some(config)).await;
        let driver = Driver::new(socket, rules);
        let tasks = task_gateway.tasks.clone();
        tasks.spawn(driver.run(task_gateway, make, hold).instrument(span));
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        )
        .finish()
}

/// The 429 of a handshake over its address's limits.
fn ip_refused(gateway: &Gateway, ip: &IpLimits, refusal: IpRefusal) -> Response {
    let (reason, message, retry_after) = match refusal {
        IpRefusal::Open { max } => (
            "ip_connection_limit",
            format!("at most {max} connections per IP address; close one or retry later"),
            1,
        ),
        IpRefusal::Rate {
            per_second,
            retry_after,
        } => (
            "ip_handshake_rate",
            format!(
                "at most {per_second} handshakes per second per IP address; retry after the Retry-After delay"
            ),
            retry_after.as_secs_f64().ceil().max(1.0) as u64,
        ),
    };
    gateway.stats.handshake_refused(reason);
    let response = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        ip.code.unwrap_or(reason),
        &message,
    );
    match HeaderValue::from_str(&retry_after.to_string()) {
        Ok(value) => with_header(response, header::RETRY_AFTER, value),
        Err(_) => response,
    }
}

/// The `Sec-WebSocket-Key` of a valid handshake request.
fn handshake_key(request: &Request) -> Option<HeaderValue> {
    let headers = request.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .map(|v| {
                    v.split(',')
                        .any(|part| part.trim().eq_ignore_ascii_case(token))
                })
                .unwrap_or(false)
        })
    };
    let valid = request.method() == Method::GET
        && has_token(header::UPGRADE, "websocket")
        && has_token(header::CONNECTION, "upgrade")
        && headers.get(header::SEC_WEBSOCKET_VERSION) == Some(&HeaderValue::from_static("13"));
    if !valid {
        return None;
    }
    headers.get(header::SEC_WEBSOCKET_KEY).cloned()
}

/// A JSON `{code, message}` error response.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body)
}

/// `response` with one more header.
pub fn with_header(
    mut response: Response,
    name: header::HeaderName,
    value: HeaderValue,
) -> Response {
    response.headers_mut().insert(name, value);
    response
}

/// Whether `response` is an error status whose body is not JSON yet.
pub(crate) fn is_plain_error(response: &Response) -> bool {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    !is_json && (status.is_client_error() || status.is_server_error())
}

/// poem's plain-text errors (an unparsable body, 404, 405) as the
/// documented JSON `{code, message}`, headers kept.
pub async fn plain_errors_as_json(response: Response) -> Response {
    if !is_plain_error(&response) {
        return response;
    }
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.into_body().into_string().await.unwrap_or_default();
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        s if s.is_server_error() => "internal_error",
        _ => "bad_request",
    };
    let message = match text.is_empty() {
        true => status.canonical_reason().unwrap_or("error").to_lowercase(),
        false => text,
    };
    let mut json = json_error(status, code, &message);
    for (name, value) in &headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json
}
