//! The candles dialect (seed 003) on its own listener: a WebSocket at `/`
//! with rooms keyed `SYMBOL:INTERVAL`, `GET /health` and
//! `GET /health/ws-stats`.
//!
//! A room holds its clients' outbound queues. The broadcaster wakes every
//! `candles.update_ms`, and for each room whose candle changed encodes one
//! `update` frame and hands the shared bytes to every client of the room;
//! when a candle ended since the last round, its final value goes first.
//! `subscribe` answers `initial` from the store (through
//! `CandleBook::history`). The codec is `protocol::candles`.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use poem::{
    EndpointExt, Request, Response, Route, get, handler,
    web::{Data, Json},
};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{
    Message,
    protocol::{CloseFrame, frame::coding::CloseCode},
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    event::Symbol,
    gateway::Gateway,
    market::candles::{Bar, CandleBook, Resolution},
    protocol::{
        CloseReason, Text,
        candles::{self as codec, Command},
        close,
    },
    session::upgrade::{Socket, accept},
    spec::messages::CandlesServerFrame,
};

/// Frames queued for one client; a client that lets more pile up is closed
/// with 4000 (updates come at most once per second per room, so only a
/// reader that stopped reading gets there).
const QUEUE: usize = 64;

type Room = (Symbol, Resolution);

/// Every room of the dialect, and its statistics.
pub struct Rooms {
    rooms: Mutex<HashMap<Room, RoomState>>,
    next_client: AtomicU64,
    connections: AtomicU64,
}

/// A client of a room: its queue, and the token that ends its session when
/// the queue overflows.
struct Client {
    queue: mpsc::Sender<Text>,
    evicted: CancellationToken,
}

#[derive(Default)]
struct RoomState {
    clients: HashMap<u64, Client>,
    /// The bar the room last sent.
    last: Option<Bar>,
    /// Unix milliseconds of the last update sent.
    last_broadcast: Option<i64>,
}

impl Default for Rooms {
    fn default() -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(1),
            connections: AtomicU64::new(0),
        }
    }
}

fn room_key((symbol, resolution): &Room) -> String {
    format!("{symbol}:{}", resolution.name())
}

impl Rooms {
    fn join(&self, room: Room, id: u64, client: Client) {
        self.rooms
            .lock()
            .entry(room)
            .or_default()
            .clients
            .insert(id, client);
    }

    fn leave(&self, room: &Room, client: u64) {
        let mut rooms = self.rooms.lock();
        if let Some(state) = rooms.get_mut(room) {
            state.clients.remove(&client);
            if state.clients.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// One broadcast round: every room whose candle changed sends it.
    pub fn broadcast(&self, candles: &CandleBook) {
        let now = jiff::Timestamp::now().as_millisecond();
        let mut rooms = self.rooms.lock();
        for ((symbol, resolution), state) in rooms.iter_mut() {
            let (open, closed) = candles.latest(symbol, *resolution);
            let mut frames = Vec::new();
            // A candle ended since the last round: its final value first.
            if let (Some(last), Some(closed)) = (state.last, closed)
                && closed.time == last.time
                && closed != last
                && open.is_none_or(|open| open.time != last.time)
            {
                frames.push(closed);
            }
            if let Some(open) = open
                && state.last != Some(open)
            {
                frames.push(open);
            }
            for bar in frames {
                let frame = codec::encode(&CandlesServerFrame::Update {
                    symbol: symbol.to_string(),
                    interval: codec::interval(*resolution),
                    bar: codec::bar(&bar),
                });
                // Full queue: the client stopped reading; its session ends
                // the connection with 4000.
                state.clients.retain(|_, client| {
                    let sent = client.queue.try_send(frame.clone()).is_ok();
                    if !sent {
                        client.evicted.cancel();
                    }
                    sent
                });
                state.last = Some(bar);
                state.last_broadcast = Some(now);
            }
        }
        rooms.retain(|_, state| !state.clients.is_empty());
    }

    fn stats(&self, one_minute_candles: u64) -> serde_json::Value {
        let rooms = self.rooms.lock();
        let ordered: BTreeMap<String, &RoomState> = rooms
            .iter()
            .map(|(room, state)| (room_key(room), state))
            .collect();
        let list: Vec<serde_json::Value> = ordered
            .iter()
            .map(|(key, state)| {
                json!({
                    "key": key,
                    "clientCount": state.clients.len(),
                    "hasCandle": state.last.is_some(),
                    "lastBroadcast": state.last_broadcast,
                })
            })
            .collect();
        json!({
            "connections": self.connections.load(Ordering::Relaxed),
            "broadcaster": {
                "totalRooms": rooms.len(),
                "totalClients": rooms.values().map(|s| s.clients.len()).sum::<usize>(),
                "rooms": list,
            },
            "aggregator": { "oneMinuteCandlesCount": one_minute_candles },
        })
    }
}

/// Runs the broadcaster until `shutdown`.
pub async fn run_broadcaster(gateway: Arc<Gateway>, shutdown: CancellationToken) {
    let mut timer = tokio::time::interval(Duration::from_millis(gateway.config.candles.update_ms));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = timer.tick() => {}
        }
        gateway.candle_rooms.broadcast(&gateway.candles);
    }
}

/// The routes of the candles listener.
pub fn routes(gateway: Arc<Gateway>) -> impl poem::Endpoint {
    Route::new()
        .at("/", get(endpoint))
        .at("/health", get(health))
        .at("/health/ws-stats", get(ws_stats))
        .data(gateway)
}

#[handler]
fn endpoint(request: &Request, Data(gateway): Data<&Arc<Gateway>>) -> Response {
    accept(request, gateway, serve)
}

#[handler]
fn health(Data(gateway): Data<&Arc<Gateway>>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "connections": gateway.candle_rooms.connections.load(Ordering::Relaxed),
        "timestamp": crate::spec::CandlesTime(jiff::Timestamp::now()).to_string(),
    }))
}

#[handler]
async fn ws_stats(Data(gateway): Data<&Arc<Gateway>>) -> Json<serde_json::Value> {
    let mut minutes = 0;
    for name in &gateway.config.candles.symbols {
        if let Some(symbol) = gateway.hub.symbols().get(name) {
            minutes += gateway
                .writer
                .store()
                .count_bars(&symbol, Resolution::M1)
                .await
                .unwrap_or(0);
        }
    }
    Json(
        gateway
            .candle_rooms
            .stats(u64::try_from(minutes).unwrap_or(0)),
    )
}

/// One candles connection until it closes.
async fn serve(gateway: Arc<Gateway>, socket: Socket) {
    let client = gateway
        .candle_rooms
        .next_client
        .fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("candles", conn = client);
    session(gateway, socket, client).instrument(span).await;
}

async fn session(gateway: Arc<Gateway>, socket: Socket, client: u64) {
    let rooms = &gateway.candle_rooms;
    rooms.connections.fetch_add(1, Ordering::Relaxed);
    gateway.stats.connection_opened();
    let evicted = CancellationToken::new();
    let (mut sink, mut stream) = socket.split();
    let (queue, mut outbound) = mpsc::channel::<Text>(QUEUE);
    let mut joined: HashSet<Room> = HashSet::new();
    let ws = &gateway.config.ws;
    let limiter: DefaultDirectRateLimiter = RateLimiter::direct(
        Quota::per_second(NonZeroU32::new(ws.inbound_per_second).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(ws.inbound_burst).unwrap_or(NonZeroU32::MIN)),
    );
    let idle = Duration::from_millis(ws.idle_timeout_ms);
    let mut ping = tokio::time::interval(Duration::from_millis(ws.ping_interval_ms));
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    let reason: Option<CloseReason> = loop {
        tokio::select! {
            () = gateway.shutdown.cancelled() => break Some(close::GOING_AWAY),
            () = evicted.cancelled() => break Some(close::SLOW_CONSUMER),
            frame = outbound.recv() => {
                let Some(frame) = frame else { break None };
                if sink.feed(Message::Text(frame)).await.is_err() {
                    break None;
                }
                // Send everything else that is ready in the same flush.
                while let Ok(frame) = outbound.try_recv() {
                    if sink.feed(Message::Text(frame)).await.is_err() {
                        break;
                    }
                }
                if sink.flush().await.is_err() {
                    break None;
                }
                gateway.stats.frames_out(1);
            }
            _ = ping.tick() => {
                if last_heard.elapsed() >= idle {
                    break Some(close::HEARTBEAT_TIMEOUT);
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break None;
                }
            }
            message = stream.next() => {
                let Some(Ok(message)) = message else { break None };
                last_heard = tokio::time::Instant::now();
                let text = match message {
                    Message::Text(text) => text,
                    Message::Binary(_) => {
                        let _ = queue.try_send(codec::error(codec::INVALID_FORMAT));
                        continue;
                    }
                    Message::Close(_) => break None,
                    _ => continue,
                };
                gateway.stats.frame_in();
                if text.len() > ws.max_frame_bytes {
                    let _ = sink.send(Message::Text(codec::error(format!("Message too large (max {} bytes)", ws.max_frame_bytes)))).await;
                    break Some(close::FRAME_TOO_LARGE);
                }
                if limiter.check().is_err() {
                    let _ = queue.try_send(codec::error(format!("Rate limit exceeded: at most {} messages per second", ws.inbound_per_second)));
                    continue;
                }
                let reply = apply(&gateway, client, &queue, &evicted, &mut joined, &text).await;
                if let Some(reply) = reply
                    && queue.try_send(reply).is_err()
                {
                    break Some(close::SLOW_CONSUMER);
                }
            }
        }
    };
    for room in &joined {
        rooms.leave(room, client);
    }
    if let Some(reason) = reason {
        gateway.stats.disconnect(reason.code);
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::from(reason.code),
                reason: reason.reason.into(),
            })))
            .await;
    }
    let _ = sink.close().await;
    rooms.connections.fetch_sub(1, Ordering::Relaxed);
    gateway.stats.connection_closed();
}

/// Applies one client frame; returns the reply to queue, if any.
async fn apply(
    gateway: &Gateway,
    client: u64,
    queue: &mpsc::Sender<Text>,
    evicted: &CancellationToken,
    joined: &mut HashSet<Room>,
    text: &str,
) -> Option<Text> {
    let config = &gateway.config.candles;
    let command = match codec::decode(text) {
        Ok(command) => command,
        Err(message) => return Some(codec::error(message)),
    };
    match command {
        Command::Ping => Some(codec::encode(&CandlesServerFrame::Pong)),
        Command::Subscribe {
            symbol,
            resolution,
            initial_bars,
        } => {
            let Some(symbol) = supported(gateway, &symbol) else {
                return Some(codec::error(codec::invalid_symbol(
                    &symbol,
                    &config.symbols,
                )));
            };
            let count = match initial_bars {
                None => config.default_initial_bars,
                Some(n) if n >= 1 => usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .min(config.max_initial_bars),
                Some(n) => {
                    return Some(codec::error(format!(
                        "Invalid initialBars: {n}. Must be at least 1 (at most {} are sent)",
                        config.max_initial_bars
                    )));
                }
            };
            let room = (symbol.clone(), resolution);
            if !joined.contains(&room) && joined.len() >= gateway.config.ws.max_subscriptions {
                return Some(codec::error(format!(
                    "Too many subscriptions: at most {} per connection",
                    gateway.config.ws.max_subscriptions
                )));
            }
            let end = resolution.bucket(jiff::Timestamp::now().as_second()) + resolution.seconds();
            let bars = match gateway
                .candles
                .history(&symbol, resolution, 0, end, count)
                .await
            {
                Ok(bars) => bars,
                Err(error) => {
                    tracing::warn!(%error, "candles history failed");
                    return Some(codec::error("History is unavailable; retry shortly"));
                }
            };
            let initial = codec::encode(&CandlesServerFrame::Initial {
                symbol: symbol.to_string(),
                interval: codec::interval(resolution),
                bars: bars.iter().map(codec::bar).collect(),
            });
            // Initial first, then the room's updates.
            if queue.try_send(initial).is_err() {
                return None;
            }
            gateway.candle_rooms.join(
                room.clone(),
                client,
                Client {
                    queue: queue.clone(),
                    evicted: evicted.clone(),
                },
            );
            joined.insert(room);
            None
        }
        Command::Unsubscribe { symbol, resolution } => {
            let Some(symbol) = supported(gateway, &symbol) else {
                return Some(codec::error(codec::invalid_symbol(
                    &symbol,
                    &config.symbols,
                )));
            };
            let room = (symbol, resolution);
            gateway.candle_rooms.leave(&room, client);
            joined.remove(&room);
            None
        }
    }
}

/// The canonical symbol when `name` is one of `candles.symbols`.
fn supported(gateway: &Gateway, name: &str) -> Option<Symbol> {
    gateway
        .config
        .candles
        .symbols
        .iter()
        .find(|s| s.eq_ignore_ascii_case(name))
        .and_then(|s| gateway.hub.symbols().insert(s).ok())
}
