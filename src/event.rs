//! Normalized events: what sources produce and the hub fans out. Nothing
//! downstream knows where an event came from except through `source`.
//!
//! These are internal types, not wire messages: each dialect's codec turns
//! them into its generated message types.

use std::sync::Arc;

use crate::spec::messages::{
    Channel, NotificationLevel, OrderStatus, OrderType, Side, SystemState,
};

/// An instrument symbol, upper-case, shared cheaply.
pub type Symbol = Arc<str>;

/// A user id (a token's `sub`), shared cheaply.
pub type UserId = Arc<str>;

/// What a topic is keyed by within its channel.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicKey {
    /// Channels with one topic (`system`, `heartbeat`).
    Global,
    Symbol(Symbol),
    User(UserId),
}

/// A channel and a key: the unit of subscription, sequencing and conflation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Topic {
    pub channel: Channel,
    pub key: TopicKey,
}

impl Topic {
    pub fn symbol(channel: Channel, symbol: Symbol) -> Self {
        Self {
            channel,
            key: TopicKey::Symbol(symbol),
        }
    }

    pub fn user(channel: Channel, user: UserId) -> Self {
        Self {
            channel,
            key: TopicKey::User(user),
        }
    }

    pub fn global(channel: Channel) -> Self {
        Self {
            channel,
            key: TopicKey::Global,
        }
    }
}

/// One event: its topic, when it happened, and what it says.
#[derive(Clone, Debug)]
pub struct Event {
    pub topic: Topic,
    pub timestamp: jiff::Timestamp,
    pub payload: Payload,
}

#[derive(Clone, Debug)]
pub enum Payload {
    Tick(Tick),
    Book(BookUpdate),
    Trade(Trade),
    Candle(Candle),
    System(SystemNotice),
    Heartbeat { connections: u64 },
    Account(AccountUpdate),
    Position(PositionUpdate),
    Order(OrderUpdate),
    Notification(Notification),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tick {
    pub price: f64,
    /// The session's open, high and low (the quotes dialect's flat quote).
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub bid: f64,
    pub ask: f64,
    /// Size of the trade that moved the price (adds to the candle's volume).
    pub size: u64,
    /// Volume since the session opened.
    pub volume: u64,
    pub change: f64,
    pub change_percent: f64,
    pub source: Arc<str>,
}

/// One side of a book: (price, size) pairs, best first.
pub type Levels = Vec<(f64, f64)>;

/// Changed levels of one book, and the whole book after the change (for
/// snapshots on subscribe and when a slow reader's update is conflated).
#[derive(Clone, Debug)]
pub struct BookUpdate {
    pub bids: Levels,
    pub asks: Levels,
    pub book: Arc<Book>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Book {
    pub bids: Levels,
    pub asks: Levels,
}

#[derive(Clone, Debug)]
pub struct Trade {
    pub trade_id: u64,
    pub price: f64,
    pub size: f64,
    pub side: Side,
}

/// A 1-minute candle: `time` is the start of its minute.
#[derive(Clone, Debug, PartialEq)]
pub struct Candle {
    pub time: jiff::Timestamp,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: u64,
    pub closed: bool,
}

#[derive(Clone, Debug)]
pub struct SystemNotice {
    pub status: SystemState,
    pub message: String,
}

#[derive(Clone, Debug)]
pub struct AccountUpdate {
    pub currency: String,
    pub balance: f64,
    pub available: f64,
    pub equity: f64,
}

#[derive(Clone, Debug)]
pub struct PositionUpdate {
    pub symbol: Symbol,
    pub quantity: f64,
    pub avg_price: f64,
    pub market_price: f64,
    pub unrealized_pnl: f64,
}

#[derive(Clone, Debug)]
pub struct OrderUpdate {
    pub order_id: String,
    pub symbol: Symbol,
    pub side: Side,
    pub order_type: OrderType,
    pub status: OrderStatus,
    pub quantity: f64,
    pub filled_quantity: f64,
    pub price: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct Notification {
    pub level: NotificationLevel,
    pub title: String,
    pub message: String,
}
