//! The candles dialect (seed 003) on its own listener: a WebSocket at `/`
//! with rooms keyed `SYMBOL:INTERVAL`, `GET /health` and
//! `GET /health/ws-stats`.
//!
//! A room holds its clients' outboxes. The broadcaster wakes every
//! `candles.update_ms`, and for each room whose candle changed encodes one
//! `update` frame and pushes the shared bytes into every client's outbox,
//! keyed by room and candle start: a slow reader's queued update of a
//! candle is replaced by the newer one (never a closed candle by the next),
//! up to `ws.conflation_slots` keys, past which the client is closed with
//! 4000. When a candle ended since the last round, its final value goes
//! first. `subscribe` reads `initial` from the store (through
//! `CandleBook::history`) on a task of its own, then joins the room if the
//! client still wants it, so a slow store never stalls the connection. The
//! connection itself is run by `runtime::driver`; the codec is
//! `protocol::candles`.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use parking_lot::Mutex;
use poem::{
    EndpointExt, Request, Response, Route, get, handler,
    web::{Data, Json},
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{
    event::Symbol,
    gateway::Gateway,
    hub::{Delivery, Dialect, Outbox, Pushed, TopicId},
    market::candles::{Bar, CandleBook, Resolution},
    protocol::{
        Text,
        candles::{self as codec, Command},
    },
    runtime::{
        driver::{Conn, Handler, Refusal, Rules},
        handshake::{self, Policy},
        registry::{Entry, Registry},
    },
    spec::messages::{CandlesServerFrame, Channel},
};

/// The outbox lane candle updates travel in. Updates conflate per room and
/// candle: a reader that falls behind gets each candle's newest value, and
/// never a closed candle replaced by the next one.
const LANE: Channel = Channel::ChartData;

/// The WebSocket's path.
pub const PATH: &str = "/";

type Room = (Symbol, Resolution);

/// Every room of the dialect, and its statistics.
#[derive(Default)]
pub struct Rooms {
    inner: Mutex<Inner>,
    connections: Arc<Registry>,
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<Room, RoomState>,
    /// Rooms a client subscribed to whose initial bars are being read: it
    /// joins once they are queued, if it still wants the room then.
    pending: HashSet<(u64, Room)>,
    next_id: TopicId,
}

struct RoomState {
    /// Keys the room's frames in outboxes.
    id: TopicId,
    clients: HashMap<u64, Arc<Outbox>>,
    /// The bar the room last sent.
    last: Option<Bar>,
    /// Unix milliseconds of the last update sent.
    last_broadcast: Option<i64>,
}

fn room_key((symbol, resolution): &Room) -> String {
    format!("{symbol}:{}", resolution.name())
}

impl Rooms {
    /// Joins `client` to `room` after queueing `initial`, if the client
    /// still wants the room (it may have unsubscribed or left meanwhile).
    /// Under the rooms' lock, so no update can come before `initial`.
    fn join_if_wanted(&self, room: Room, client: u64, outbox: &Arc<Outbox>, initial: Text) {
        let mut inner = self.inner.lock();
        if !inner.pending.remove(&(client, room.clone())) {
            return;
        }
        if !outbox.push_control(initial) {
            return;
        }
        let Inner { rooms, next_id, .. } = &mut *inner;
        rooms
            .entry(room)
            .or_insert_with(|| {
                let id = *next_id;
                *next_id = next_id.wrapping_add(1);
                RoomState {
                    id,
                    clients: HashMap::new(),
                    last: None,
                    last_broadcast: None,
                }
            })
            .clients
            .insert(client, outbox.clone());
    }

    fn want(&self, room: Room, client: u64) {
        self.inner.lock().pending.insert((client, room));
    }

    fn leave(&self, room: &Room, client: u64) {
        let mut inner = self.inner.lock();
        inner.pending.remove(&(client, room.clone()));
        if let Some(state) = inner.rooms.get_mut(room) {
            state.clients.remove(&client);
            if state.clients.is_empty() {
                inner.rooms.remove(room);
            }
        }
    }

    /// One broadcast round: every room whose candle changed sends it, each
    /// frame encoded once and shared by the room's clients.
    pub fn broadcast(&self, candles: &CandleBook, now: jiff::Timestamp) {
        let now = now.as_millisecond();
        let published = tokio::time::Instant::now();
        let mut inner = self.inner.lock();
        for ((symbol, resolution), state) in inner.rooms.iter_mut() {
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
                // A client whose outbox is full was closed with 4000 by it.
                state.clients.retain(|_, outbox| {
                    outbox.push(Delivery {
                        lane: LANE.index(),
                        key: Some((state.id, bar.time)),
                        frame: &frame,
                        resync: None,
                        published,
                    }) != Pushed::Closed
                });
                state.last = Some(bar);
                state.last_broadcast = Some(now);
            }
        }
        inner.rooms.retain(|_, state| !state.clients.is_empty());
    }

    fn stats(&self, one_minute_candles: u64) -> serde_json::Value {
        let inner = self.inner.lock();
        let rooms = &inner.rooms;
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
            "connections": self.connections.len(),
            "broadcaster": {
                "totalRooms": rooms.len(),
                "totalClients": rooms.values().map(|s| s.clients.len()).sum::<usize>(),
                "rooms": list,
            },
            "aggregator": { "oneMinuteCandlesCount": one_minute_candles },
        })
    }
}

/// Runs the broadcaster until the gateway shuts down.
pub async fn run_broadcaster(gateway: Arc<Gateway>, rooms: Arc<Rooms>) {
    let shutdown = gateway.shutdown.clone();
    let mut timer = tokio::time::interval(Duration::from_millis(gateway.config.candles.update_ms));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = timer.tick() => {}
        }
        rooms.broadcast(&gateway.candles, gateway.clock.now());
    }
}

/// The routes of the candles listener.
pub fn routes(
    gateway: Arc<Gateway>,
    rooms: Arc<Rooms>,
    dialect: Dialect,
    policy: Arc<Policy>,
) -> impl poem::Endpoint {
    Route::new()
        .at(PATH, get(endpoint))
        .at("/health", get(health))
        .at("/health/ws-stats", get(ws_stats))
        .data(Arc::new(Edge {
            rules: Arc::new(Rules::standard(
                &gateway,
                dialect,
                gateway.quotes_outbox_limits.clone(),
            )),
            policy,
            state: rooms,
        }))
        .data(gateway)
}

/// What the listener's handlers share: the rooms.
type Edge = handshake::Edge<Arc<Rooms>>;

#[handler]
fn endpoint(
    request: &Request,
    Data(gateway): Data<&Arc<Gateway>>,
    Data(edge): Data<&Arc<Edge>>,
) -> Response {
    edge.upgrade(request, gateway, |rooms| {
        let rooms = rooms.clone();
        Ok(move |conn: &Conn<'_>| Client::open(conn, rooms))
    })
}

#[handler]
fn health(
    Data(gateway): Data<&Arc<Gateway>>,
    Data(edge): Data<&Arc<Edge>>,
) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "connections": edge.state.connections.len(),
        "timestamp": crate::spec::CandlesTime(gateway.clock.now()).to_string(),
    }))
}

#[handler]
async fn ws_stats(
    Data(gateway): Data<&Arc<Gateway>>,
    Data(edge): Data<&Arc<Edge>>,
) -> Json<serde_json::Value> {
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
    Json(edge.state.stats(u64::try_from(minutes).unwrap_or(0)))
}

/// One candles connection: the rooms it joined or is joining.
struct Client {
    gateway: Arc<Gateway>,
    rooms: Arc<Rooms>,
    outbox: Arc<Outbox>,
    id: u64,
    /// The rooms this client joined or is joining.
    joined: HashSet<Room>,
    /// Cancels the initial-bar reads still running when the client leaves.
    reads: CancellationToken,
    _entry: Entry,
}

impl Client {
    fn open(conn: &Conn<'_>, rooms: Arc<Rooms>) -> Self {
        Self {
            gateway: conn.gateway.clone(),
            _entry: rooms.connections.enter(conn),
            rooms,
            outbox: conn.outbox().clone(),
            id: conn.id(),
            joined: HashSet::new(),
            reads: CancellationToken::new(),
        }
    }

    /// Applies one client frame; returns the reply to queue, if any.
    fn apply(&mut self, text: &str) -> Option<Text> {
        let gateway = &self.gateway;
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
                let room = (symbol, resolution);
                let max = gateway.config.ws.max_subscriptions;
                if !self.joined.contains(&room) && self.joined.len() >= max {
                    return Some(codec::error(format!(
                        "Too many subscriptions: at most {max} per connection"
                    )));
                }
                self.joined.insert(room.clone());
                self.read_initial(room, count);
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
                self.rooms.leave(&room, self.id);
                self.joined.remove(&room);
                None
            }
        }
    }

    /// Reads the room's initial bars off the connection's task, then queues
    /// `initial` and joins the room (if still wanted). A subscribe to a room
    /// already joined reads and sends `initial` again, as the seed does.
    fn read_initial(&self, room: Room, count: usize) {
        let gateway = self.gateway.clone();
        let outbox = self.outbox.clone();
        let client = self.id;
        let reads = self.reads.clone();
        let rooms = self.rooms.clone();
        rooms.leave(&room, client);
        rooms.want(room.clone(), client);
        let task = async move {
            let (symbol, resolution) = &room;
            let now = gateway.clock.now().as_second();
            let end = resolution.bucket(now) + resolution.seconds();
            let history = tokio::select! {
                () = reads.cancelled() => return,
                history = gateway.candles.history(symbol, *resolution, 0, end, count) => history,
            };
            let frame = match history {
                Ok(bars) => codec::encode(&CandlesServerFrame::Initial {
                    symbol: symbol.to_string(),
                    interval: codec::interval(*resolution),
                    bars: bars.iter().map(codec::bar).collect(),
                }),
                Err(error) => {
                    tracing::warn!(%error, "candles history failed");
                    rooms.leave(&room, client);
                    outbox.push_control(codec::error("History is unavailable; retry shortly"));
                    return;
                }
            };
            rooms.join_if_wanted(room, client, &outbox, frame);
        };
        self.gateway.tasks.spawn(task);
    }
}

impl Handler for Client {
    fn on_text(&mut self, conn: &Conn<'_>, text: Text) {
        if let Some(reply) = self.apply(&text) {
            conn.outbox().push_control(reply);
        }
    }

    fn refusal(&mut self, conn: &Conn<'_>, refusal: Refusal) -> Option<Text> {
        Some(codec::error(match refusal {
            Refusal::FrameTooLarge { max, .. } => format!("Message too large (max {max} bytes)"),
            Refusal::RateLimited { .. } => format!(
                "Rate limit exceeded: at most {} messages per second",
                conn.gateway.config.ws.inbound_per_second
            ),
            Refusal::Binary => codec::INVALID_FORMAT.to_owned(),
        }))
    }

    fn on_close(&mut self, _conn: &Conn<'_>) {
        self.reads.cancel();
        for room in &self.joined {
            self.rooms.leave(room, self.id);
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
