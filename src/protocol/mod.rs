//! Wire dialects: pure `decode(frame) -> command` and `encode(event) -> frame`
//! functions, one module per dialect, no I/O. Only this module and the
//! generated types know byte layouts.

use crate::{event::Event, spec::messages::Channel};

pub mod candles;
pub mod enhanced;
pub mod quotes;
pub mod usdcop;
pub mod v1;

/// A text frame, encoded once and shared by every connection that sends it
/// (cloning is a reference-count increment).
pub type Text = tokio_tungstenite::tungstenite::Utf8Bytes;

/// How one wire dialect encodes the hub's events. Each dialect registers
/// one with the hub (`Hub::dialect`); the hub encodes an event at most once
/// per dialect, and only for dialects that have a subscriber to it.
pub trait Encoder: Send + Sync + 'static {
    /// The frame of `event`, the `seq`th of its topic, or None when the
    /// dialect does not carry it. `first` is true for the first event of a
    /// topic that keeps its newest event (its subscribers got no snapshot).
    fn event(&self, event: &Event, seq: u64, first: bool) -> Option<Text>;

    /// The frame a new subscriber gets for the topic's newest event.
    fn snapshot(&self, event: &Event, seq: u64) -> Option<Text> {
        self.event(event, seq, false)
    }

    /// Whether a queued frame of `channel` that a newer one conflates is
    /// replaced by `resync` (a state the client can apply without the frames
    /// it missed) rather than by the newer frame itself.
    fn resyncs(&self, _channel: Channel) -> bool {
        false
    }

    /// The frame that replaces conflated ones when `resyncs` says so
    /// (None: the newer frame); encoded lazily, once, for every connection
    /// that needs it.
    fn resync(&self, _event: &Event, _seq: u64) -> Option<Text> {
        None
    }
}

/// The encoder of connections the hub never delivers to (a dialect fed by
/// its own broadcaster, like the candles rooms).
pub struct NoEvents;

impl Encoder for NoEvents {
    fn event(&self, _event: &Event, _seq: u64, _first: bool) -> Option<Text> {
        None
    }
}

/// `frame` as JSON text. The generated types have string keys only, so
/// serialization does not fail; if it ever did, the client gets `fallback`
/// (a valid error frame of the dialect), never an empty frame.
pub(crate) fn to_text<T: serde::Serialize>(frame: &T, fallback: &'static str) -> Text {
    match serde_json::to_string(frame) {
        Ok(json) => Text::from(json),
        Err(error) => {
            tracing::error!(%error, "a server frame did not serialize");
            Text::from_static(fallback)
        }
    }
}

/// Why the server closes a connection: a WebSocket close code and a reason
/// under 123 bytes. The set is documented in asyncapi.yaml.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

/// The close codes of asyncapi.yaml.
pub mod close {
    use super::CloseReason;

    /// Every close code the gateway sends (`NORMAL` and `MARKET_CLOSED`
    /// share 1000, `AUTH_FAILED` and `MESSAGE_RATE` 1008).
    pub const CODES: [u16; 10] = [1000, 1001, 1002, 1007, 1008, 1009, 1011, 4000, 4001, 4002];

    /// The server ends a connection for no fault of the client's.
    pub const NORMAL: CloseReason = CloseReason {
        code: 1000,
        reason: "normal closure",
    };
    pub const GOING_AWAY: CloseReason = CloseReason {
        code: 1001,
        reason: "server shutting down",
    };
    /// A frame RFC 6455 forbids: reserved bits or opcodes, an unmasked
    /// client frame, a fragmented or oversized control frame, a
    /// continuation out of sequence.
    pub const PROTOCOL_ERROR: CloseReason = CloseReason {
        code: 1002,
        reason: "protocol error",
    };
    /// A text frame (or close reason) that is not valid UTF-8.
    pub const INVALID_PAYLOAD: CloseReason = CloseReason {
        code: 1007,
        reason: "invalid UTF-8",
    };
    pub const FRAME_TOO_LARGE: CloseReason = CloseReason {
        code: 1009,
        reason: "frame too large",
    };
    pub const INTERNAL_ERROR: CloseReason = CloseReason {
        code: 1011,
        reason: "internal error",
    };
    pub const SLOW_CONSUMER: CloseReason = CloseReason {
        code: 4000,
        reason: "slow consumer",
    };
    pub const RATE_LIMIT_EXCEEDED: CloseReason = CloseReason {
        code: 4001,
        reason: "rate limit exceeded",
    };
    pub const HEARTBEAT_TIMEOUT: CloseReason = CloseReason {
        code: 4002,
        reason: "heartbeat timeout",
    };
    /// The market-data stream (seed 000) at the market's close.
    pub const MARKET_CLOSED: CloseReason = CloseReason {
        code: 1000,
        reason: "market closed",
    };
    /// The market-data stream: a `?token=` that does not verify.
    pub const AUTH_FAILED: CloseReason = CloseReason {
        code: 1008,
        reason: "authentication failed",
    };
    /// The market-data stream: more than `messages_per_minute`.
    pub const MESSAGE_RATE: CloseReason = CloseReason {
        code: 1008,
        reason: "rate limit exceeded",
    };
}
