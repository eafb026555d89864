//! The USD/COP market-data stream (seed 000) on its own listener
//! (`market_stream.port`, 8082): a WebSocket at `/ws/market-data` and
//! `GET /health`.
//!
//! A connection is a hub subscriber of dialect `Usdcop` on `market_data`, one
//! topic per subscribed symbol: the hub encodes each tick once as a
//! `market_data` frame for all of them. The session answers `subscribe`,
//! `unsubscribe` and `pong`, sends `heartbeat` every `heartbeat_ms`, and
//! enforces the seed's limits: connections per IP (at the handshake),
//! messages per minute and subscriptions per connection. Market events
//! (`system_status`) reach every connection through `Streams::broadcast`;
//! at the close, `Streams::close_all` ends them. The codec is
//! `protocol::usdcop`.

use std::{
    collections::{BTreeSet, HashMap},
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

use governor::Quota;
use parking_lot::Mutex;
use poem::{
    EndpointExt, Request, Response, Route, get, handler,
    web::{Data, Json},
};
use serde_json::json;
use tokio::time::Instant;

use crate::{
    event::{Symbol, TopicKey},
    gateway::Gateway,
    hub::{Dialect, Outbox, Subscriber},
    protocol::{
        CloseReason, Text, close,
        usdcop::{self, Command},
    },
    runtime::{
        driver::{Conn, Handler, Inbound, Liveness, Refusal, Rules},
        handshake::{self, Policy},
        registry::{Entry, Registry},
    },
    spec::messages::{Channel, UsdcopErrorCode},
};

/// The stream's path.
pub const PATH: &str = "/ws/market-data";

/// The open connections of the stream, for market events and the close
/// (the per-IP limit is the runtime's: `runtime::ip`).
#[derive(Default)]
pub struct Streams {
    registry: Arc<Registry>,
    /// The `degraded_service` frame while the health monitor reports an
    /// outage: connections opened meanwhile get it first.
    degraded: Mutex<Option<Text>>,
}

impl Streams {
    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.registry.len()
    }

    /// Queues `frame` to every connection (never conflated).
    pub fn broadcast(&self, frame: &Text) {
        self.registry.broadcast(frame);
    }

    /// Queues `frame` to every connection, then closes each with `reason`.
    pub fn close_all(&self, frame: &Text, reason: CloseReason) {
        self.registry.close_all(Some(frame), reason);
    }
}

/// The listener's routes.
pub fn routes(
    gateway: Arc<Gateway>,
    streams: Arc<Streams>,
    dialect: Dialect,
    policy: Arc<Policy>,
) -> impl poem::Endpoint {
    Route::new()
        .at(PATH, get(endpoint))
        .at("/health", get(health))
        .data(Arc::new(Edge {
            rules: Arc::new(rules(&gateway, dialect)),
            policy,
            state: streams,
        }))
        .data(gateway)
}

/// What the listener's handlers share: the stream's connections.
type Edge = handshake::Edge<Arc<Streams>>;

/// The handshake: 429 beyond `max_connections_per_ip`, otherwise as every
/// dialect (426, 503). A `?token=` that does not verify gets
/// `AUTHENTICATION_FAILED` and close 1008 right after the upgrade.
#[handler]
fn endpoint(
    request: &Request,
    Data(gateway): Data<&Arc<Gateway>>,
    Data(edge): Data<&Arc<Edge>>,
) -> Response {
    edge.upgrade(request, gateway, |streams| {
        let query = request
            .params::<HashMap<String, String>>()
            .unwrap_or_default();
        // A bad token is told in the protocol (browsers cannot read a
        // refused handshake's body): an error frame, then close 1008.
        let refused = query
            .get("token")
            .and_then(|token| gateway.auth.verify(token).err())
            .map(|error| format!("Authentication failed: the token does not verify ({error})"));
        let streams = streams.clone();
        Ok(move |conn: &Conn<'_>| Session::open(conn, streams, refused))
    })
}

/// The seed's limits: `messages_per_minute` (the first frame past it gets
/// `RATE_LIMIT_EXCEEDED` and close 1008) and its heartbeat as the one
/// liveness rule.
fn rules(gateway: &Gateway, dialect: Dialect) -> Rules {
    let config = &gateway.config.market_stream;
    let per_minute = NonZeroU32::new(config.messages_per_minute).unwrap_or(NonZeroU32::MIN);
    Rules {
        inbound: Inbound {
            quota: Quota::per_minute(per_minute),
            close_after: 0,
            window: Duration::from_secs(60),
            close: close::MESSAGE_RATE,
        },
        liveness: Liveness::Dialect,
        ..Rules::standard(gateway, dialect, gateway.quotes_outbox_limits.clone())
    }
}

/// `GET /health` of the stream's listener.
#[handler]
fn health(Data(edge): Data<&Arc<Edge>>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "healthy",
        "service": "websocket-service",
        "version": env!("CARGO_PKG_VERSION"),
        "clients_connected": edge.state.connections(),
    }))
}

/// What one connection holds besides its socket.
struct Session {
    gateway: Arc<Gateway>,
    subscriber: Subscriber,
    symbols: BTreeSet<Symbol>,
    /// Heartbeats sent since the client's last `pong`.
    unanswered: u32,
    next_heartbeat: Instant,
    streams: Arc<Streams>,
    _entry: Entry,
}

impl Handler for Session {
    fn on_text(&mut self, _conn: &Conn<'_>, text: Text) {
        let command = match usdcop::decode(&text) {
            Ok(command) => command,
            Err(message) => {
                self.error(UsdcopErrorCode::InvalidMessage, message);
                return;
            }
        };
        match &command {
            Command::Subscribe(names) => self.subscribe(names),
            Command::Unsubscribe(names) => self.unsubscribe(names),
            Command::Pong => self.unanswered = 0,
        }
    }

    fn refusal(&mut self, _conn: &Conn<'_>, refusal: Refusal) -> Option<Text> {
        let (code, message) = match refusal {
            Refusal::FrameTooLarge { size, max } => (
                UsdcopErrorCode::InvalidMessage,
                format!("Invalid message format: frame of {size} bytes; at most {max}"),
            ),
            Refusal::RateLimited { .. } => (
                UsdcopErrorCode::RateLimitExceeded,
                format!(
                    "more than {} messages per minute; disconnecting",
                    self.gateway.config.market_stream.messages_per_minute
                ),
            ),
            Refusal::Binary => (
                UsdcopErrorCode::InvalidMessage,
                "Invalid message format: binary frames are not part of the protocol; send JSON text"
                    .to_owned(),
            ),
        };
        self.gateway.stats.error_sent(format!("usdcop_{code}"));
        Some(usdcop::error(code, message, self.gateway.clock.now()))
    }

    fn deadline(&self) -> Option<Instant> {
        Some(self.next_heartbeat)
    }

    /// The heartbeat: after `missed_heartbeats` without a `pong`, close
    /// 4002; otherwise the next `heartbeat` frame.
    fn on_deadline(&mut self, conn: &Conn<'_>) {
        let config = &self.gateway.config.market_stream;
        self.next_heartbeat = Instant::now() + heartbeat_every(config);
        if self.unanswered >= config.missed_heartbeats {
            conn.outbox().close(close::HEARTBEAT_TIMEOUT);
            return;
        }
        self.unanswered += 1;
        let count = self.streams.connections() as u64;
        conn.outbox()
            .push_control(usdcop::heartbeat(count, self.gateway.clock.now()));
    }
}

fn heartbeat_every(config: &crate::config::MarketStreamConfig) -> Duration {
    Duration::from_millis(config.heartbeat_ms.max(1))
}

impl Session {
    fn open(conn: &Conn<'_>, streams: Arc<Streams>, refused: Option<String>) -> Self {
        let gateway = conn.gateway;
        let outbox = conn.outbox();
        let session = Self {
            gateway: gateway.clone(),
            subscriber: conn.subscriber.clone(),
            symbols: BTreeSet::new(),
            unanswered: 0,
            next_heartbeat: Instant::now() + heartbeat_every(&gateway.config.market_stream),
            _entry: streams.registry.enter(conn),
            streams,
        };
        if let Some(message) = refused {
            session.error(UsdcopErrorCode::AuthenticationFailed, message);
            outbox.close(close::AUTH_FAILED);
        }
        if let Some(frame) = session.streams.degraded.lock().clone() {
            outbox.push_control(frame);
        }
        session
    }

    fn outbox(&self) -> &Outbox {
        &self.subscriber.outbox
    }

    fn error(&self, code: UsdcopErrorCode, message: impl Into<String>) {
        self.gateway.stats.error_sent(format!("usdcop_{code}"));
        self.outbox()
            .push_control(usdcop::error(code, message, self.gateway.clock.now()));
    }

    fn subscribe(&mut self, names: &[String]) {
        let wanted = canonical(names);
        let new = wanted
            .iter()
            .filter(|name| !self.symbols.iter().any(|s| &**s == name.as_str()))
            .count();
        let max = self.gateway.config.market_stream.max_subscriptions;
        // The limit comes before symbol validation (seed 000).
        if self.symbols.len() + new > max {
            self.error(
                UsdcopErrorCode::RateLimitExceeded,
                format!(
                    "at most {max} subscriptions per connection: {} held, {new} more requested",
                    self.symbols.len()
                ),
            );
            return;
        }
        let mut valid = Vec::new();
        let mut invalid = Vec::new();
        for name in wanted {
            match self.gateway.hub.symbols().get(&name) {
                Some(symbol) => valid.push(symbol),
                None => invalid.push(name),
            }
        }
        if !valid.is_empty() || invalid.is_empty() {
            let names = valid.iter().map(ToString::to_string).collect();
            self.outbox()
                .push_control(usdcop::ack(true, names, self.gateway.clock.now()));
        }
        for name in invalid {
            self.error(
                UsdcopErrorCode::InvalidSymbol,
                format!("Symbol '{name}' is not supported"),
            );
        }
        for symbol in valid {
            if let Some(message) = market_closed(&self.gateway, &symbol) {
                self.error(UsdcopErrorCode::MarketClosed, message);
            }
            if self.symbols.insert(symbol.clone()) {
                self.gateway.hub.subscribe_stream(
                    &self.subscriber,
                    Channel::MarketData,
                    Some(TopicKey::Symbol(symbol)),
                );
            }
        }
        drop_closed_snapshots(&self.gateway, self.outbox());
    }

    fn unsubscribe(&mut self, names: &[String]) {
        let wanted = canonical(names);
        for name in &wanted {
            let held = self
                .symbols
                .iter()
                .find(|s| &***s == name.as_str())
                .cloned();
            if let Some(symbol) = held {
                self.symbols.remove(&symbol);
                self.gateway.hub.unsubscribe_stream(
                    &self.subscriber,
                    Channel::MarketData,
                    Some(TopicKey::Symbol(symbol)),
                );
            }
        }
        self.outbox()
            .push_control(usdcop::ack(false, wanted, self.gateway.clock.now()));
    }
}

/// Upper-case, trimmed, de-duplicated names, in request order.
fn canonical(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let name = name.trim().to_ascii_uppercase();
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Drops the queued snapshots (the last tick the hub holds) of symbols
/// whose market is closed now: nothing realtime is sent outside market hours.
pub(crate) fn drop_closed_snapshots(gateway: &Gateway, outbox: &Outbox) {
    let now = gateway.clock.now();
    gateway
        .hub
        .purge_queued(outbox, Channel::MarketData, |key| match key {
            TopicKey::Symbol(symbol) => !gateway.calendar.schedule(symbol).is_open(now),
            _ => false,
        });
}

/// The `MARKET_CLOSED` text for a symbol whose market is closed now.
fn market_closed(gateway: &Gateway, symbol: &Symbol) -> Option<String> {
    let schedule = gateway.calendar.schedule(symbol);
    let now = gateway.clock.now();
    if schedule.is_open(now) {
        return None;
    }
    let next = schedule
        .next_open(now)
        .map(|z| z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())?;
    Some(format!(
        "Market is closed for {symbol}; next session starts {next}"
    ))
}

/// A market event of the stream's calendar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MarketEvent {
    /// Five minutes before the open.
    Opening,
    /// The open (nothing is sent; the orchestrator starts collecting).
    Open,
    /// Five minutes before the close.
    Closing,
    /// The close: every connection is told and closed.
    Closed,
}

/// The next event of `schedule` after `now`, and when it happens.
fn next_event(
    schedule: &crate::calendar::Schedule,
    now: jiff::Timestamp,
) -> Option<(jiff::Timestamp, MarketEvent)> {
    let window = crate::calendar::CLOSING_WINDOW;
    let info = schedule.session(now);
    if info.market_open {
        let close = info.current_session_end?.timestamp();
        let closing = close - window;
        return Some(match now < closing {
            true => (closing, MarketEvent::Closing),
            false => (close, MarketEvent::Closed),
        });
    }
    let open = schedule.next_open(now)?.timestamp();
    let opening = open - window;
    Some(match now < opening {
        true => (opening, MarketEvent::Opening),
        false => (open, MarketEvent::Open),
    })
}

/// Sends the calendar's `system_status` frames to every stream connection
/// (`market_opening`, `market_closing`, `market_closed`, then the close),
/// and `degraded_service` when the store or a configured Redis goes down.
pub async fn run_market_events(gateway: Arc<Gateway>, streams: Arc<Streams>) {
    let shutdown = gateway.shutdown.clone();
    use crate::spec::{
        UsdcopTime,
        messages::{UsdcopStatus, UsdcopStatusDetails},
    };
    let orchestrator = gateway.orchestrator.clone();
    let clock = orchestrator.clock().clone();
    let mut degraded = false;
    loop {
        let now = clock.now();
        let next = next_event(orchestrator.schedule(), now);
        let wake = async {
            match next {
                Some((at, _)) => clock.sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = wake => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                // The health monitor's turn.
                let down = gateway.writer.stats().is_down()
                    || gateway.broker.as_ref().is_some_and(|b| !b.connected());
                if down && !degraded {
                    let frame = usdcop::system_status(
                        UsdcopStatus::DegradedService,
                        "Reduced functionality: the store or Redis is unreachable; data keeps flowing from the gateway's own sources",
                        None,
                        clock.now(),
                    );
                    streams.broadcast(&frame);
                    *streams.degraded.lock() = Some(frame);
                } else if !down && degraded {
                    *streams.degraded.lock() = None;
                }
                degraded = down;
                continue;
            }
        }
        let Some((at, event)) = next else {
            continue;
        };
        let now = clock.now();
        if now < at {
            continue;
        }
        let seconds =
            |t: jiff::Timestamp| u64::try_from(t.duration_since(now).as_secs().max(0)).ok();
        match event {
            MarketEvent::Opening => {
                let open = at + crate::calendar::CLOSING_WINDOW;
                streams.broadcast(&usdcop::system_status(
                    UsdcopStatus::MarketOpening,
                    "Market opening in 5 minutes",
                    Some(UsdcopStatusDetails {
                        market_open_time: Some(UsdcopTime(open)),
                        seconds_until_open: seconds(open),
                        ..Default::default()
                    }),
                    now,
                ));
            }
            MarketEvent::Open => {}
            MarketEvent::Closing => {
                let close = at + crate::calendar::CLOSING_WINDOW;
                streams.broadcast(&usdcop::system_status(
                    UsdcopStatus::MarketClosing,
                    "Market closing in 5 minutes",
                    Some(UsdcopStatusDetails {
                        market_close_time: Some(UsdcopTime(close)),
                        seconds_until_close: seconds(close),
                        ..Default::default()
                    }),
                    now,
                ));
            }
            MarketEvent::Closed => {
                let next_open = orchestrator
                    .schedule()
                    .next_open(now)
                    .map(|z| UsdcopTime(z.timestamp()));
                let frame = usdcop::system_status(
                    UsdcopStatus::MarketClosed,
                    "Market closed, disconnecting",
                    Some(UsdcopStatusDetails {
                        next_session_start: next_open,
                        ..Default::default()
                    }),
                    now,
                );
                streams.close_all(&frame, close::MARKET_CLOSED);
            }
        }
        // Past this event: the next round looks for the one after.
    }
}
