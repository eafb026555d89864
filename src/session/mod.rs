//! One v1 WebSocket connection: its subscriptions, auth state, inbound rate
//! limit, heartbeat and idle timers, and the writer that drains its outbox.
//!
//! Two tasks per connection. The reader (this module's `run`) decodes
//! client frames and applies them to the hub; the writer (`write_loop`)
//! sends what the outbox releases, coalescing every frame that is ready into
//! one flush, and sends WebSocket pings. They share only the `Outbox`.

pub mod upgrade;

use std::{collections::HashSet, num::NonZeroU32, sync::Arc, time::Duration};

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::{
    self, Message,
    error::CapacityError,
    protocol::{CloseFrame, frame::coding::CloseCode},
};
use tracing::Instrument;

use crate::{
    auth::Identity,
    event::{Symbol, TopicKey},
    gateway::Gateway,
    hub::{HubError, Outbox, Subscriber, Symbols},
    protocol::{
        CloseReason, Text, close,
        v1::{self, ProtocolError},
    },
    spec::{
        Timestamp,
        messages::{
            Channel, ChannelInfo, ConnectionLimits, ErrorCode, HeartbeatSettings, RequestId,
            V1ClientFrame, V1ServerFrame,
        },
    },
};

/// Most frames the writer sends per flush.
const MAX_BATCH: usize = 256;

/// How long a closing connection waits for the client's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Rate-limited frames are counted over windows of this length.
const VIOLATION_WINDOW: Duration = Duration::from_secs(10);

/// A subscription as the connection records it: the channel and the symbol
/// (None for all symbols, and for channels without symbols).
type SubKey = (Channel, Option<Symbol>);

/// Serves one upgraded connection until it closes.
pub async fn run<S>(gateway: Arc<Gateway>, socket: S)
where
    S: Stream<Item = Result<Message, tungstenite::Error>>
        + Sink<Message, Error = tungstenite::Error>
        + Unpin
        + Send
        + 'static,
{
    let outbox = Arc::new(Outbox::new(gateway.outbox_limits.clone()));
    let subscriber = gateway.hub.register(outbox.clone());
    let span = tracing::info_span!("session", conn = subscriber.id);
    serve(gateway, socket, outbox, subscriber)
        .instrument(span)
        .await;
}

async fn serve<S>(gateway: Arc<Gateway>, socket: S, outbox: Arc<Outbox>, subscriber: Subscriber)
where
    S: Stream<Item = Result<Message, tungstenite::Error>>
        + Sink<Message, Error = tungstenite::Error>
        + Unpin
        + Send
        + 'static,
{
    gateway.stats.connection_opened();
    tracing::debug!("connected");
    if gateway.shutdown.is_cancelled() {
        // Upgraded just as shutdown began, after every open connection was
        // told: close this one the same way.
        outbox.close(close::GOING_AWAY);
    }

    let (sink, mut stream) = socket.split();
    outbox.push_control(welcome(&gateway, subscriber.id));
    let ping_every = Duration::from_millis(gateway.config.ws.ping_interval_ms);
    let mut writer = tokio::spawn(write_loop(
        sink,
        outbox.clone(),
        gateway.clone(),
        ping_every,
    ));

    let mut session = Session::new(gateway.clone(), subscriber.clone());
    let idle = Duration::from_millis(gateway.config.ws.idle_timeout_ms);
    let mut last_seen = Instant::now();
    let mut writer_done = false;
    loop {
        let expiry = session.auth_deadline();
        tokio::select! {
            message = stream.next() => match message {
                None => break,
                Some(Ok(message)) => {
                    last_seen = Instant::now();
                    if !session.on_message(message) {
                        break;
                    }
                }
                Some(Err(tungstenite::Error::Capacity(CapacityError::MessageTooLong { size, .. }))) => {
                    gateway.stats.frame_in();
                    session.send_error(frame_too_large(size, gateway.config.ws.max_frame_bytes));
                    outbox.close(close::FRAME_TOO_LARGE);
                    break;
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "read failed");
                    break;
                }
            },
            () = sleep_until(last_seen + idle) => {
                tracing::debug!("idle timeout");
                outbox.close(close::HEARTBEAT_TIMEOUT);
                break;
            }
            () = sleep_until(expiry.unwrap_or_else(far_future)), if expiry.is_some() => {
                session.expire_auth();
            }
            _ = &mut writer => {
                writer_done = true;
                break;
            }
        }
    }

    // The connection is ending: forget its subscriptions, let the writer send
    // what is queued and the close frame, and give the client a moment to
    // answer the close before the socket is dropped.
    finish_writer(&gateway, &subscriber, writer, writer_done).await;
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    gateway.stats.dropped(outbox.discarded());
    gateway.stats.connection_closed();
    tracing::debug!("disconnected");
}

/// A hub-fed connection of a stream dialect (quotes, the USD/COP streams):
/// its hub registration and outbox, and the task writing the outbox to the
/// socket. `open_stream` starts it, `close_stream` ends it.
pub(crate) struct StreamConn {
    pub subscriber: Subscriber,
    pub outbox: Arc<Outbox>,
    writer: tokio::task::JoinHandle<()>,
    writer_done: bool,
}

impl StreamConn {
    /// Resolves when the writer stopped (the socket failed or the outbox
    /// closed); after that, `close_stream` does not wait for it.
    pub async fn writer_stopped(&mut self) {
        if !self.writer_done {
            let _ = (&mut self.writer).await;
            self.writer_done = true;
        }
    }
}

/// Registers a connection of `dialect` (outbox bounds without a rate cap,
/// conflation for slow readers), starts its writer, and returns it with the
/// socket's reading half.
pub(crate) fn open_stream(
    gateway: &Arc<Gateway>,
    socket: upgrade::Socket,
    dialect: crate::hub::Dialect,
) -> (
    StreamConn,
    futures_util::stream::SplitStream<upgrade::Socket>,
) {
    let outbox = Arc::new(Outbox::new(gateway.quotes_outbox_limits.clone()));
    let subscriber = gateway.hub.register_dialect(outbox.clone(), dialect);
    gateway.stats.connection_opened();
    if gateway.shutdown.is_cancelled() {
        outbox.close(close::GOING_AWAY);
    }
    let (sink, stream) = socket.split();
    let ping_every = Duration::from_millis(gateway.config.ws.ping_interval_ms);
    let writer = tokio::spawn(write_loop(
        sink,
        outbox.clone(),
        gateway.clone(),
        ping_every,
    ));
    let conn = StreamConn {
        subscriber,
        outbox,
        writer,
        writer_done: false,
    };
    (conn, stream)
}

/// Ends a stream connection (see `finish_writer`) and counts it closed.
pub(crate) async fn close_stream(gateway: &Gateway, conn: StreamConn) {
    finish_writer(gateway, &conn.subscriber, conn.writer, conn.writer_done).await;
    gateway.stats.dropped(conn.outbox.discarded());
    gateway.stats.connection_closed();
}

/// The end of a hub-fed connection: forgets its subscriptions, closes its
/// outbox (1000 unless a reason was set), and lets the writer send what is
/// queued and the close frame, for up to `CLOSE_GRACE`.
pub(crate) async fn finish_writer(
    gateway: &Gateway,
    subscriber: &Subscriber,
    mut writer: tokio::task::JoinHandle<()>,
    writer_done: bool,
) {
    gateway.hub.unregister(subscriber.id);
    if !subscriber.outbox.is_closed() {
        subscriber.outbox.close(CloseReason {
            code: 1000,
            reason: "normal closure",
        });
    }
    if !writer_done {
        let _ = tokio::time::timeout(CLOSE_GRACE, &mut writer).await;
        writer.abort();
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// Sends what the outbox releases until it says close, then the close frame.
pub(crate) async fn write_loop<S>(
    mut sink: S,
    outbox: Arc<Outbox>,
    gateway: Arc<Gateway>,
    ping_every: Duration,
) where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    let stats = &gateway.stats;
    // Grown on first use: most connections are idle most of the time.
    let mut frames = Vec::new();
    let mut published = Vec::new();
    let mut next_ping = Instant::now() + ping_every;
    loop {
        frames.clear();
        published.clear();
        let drained = outbox.drain(&mut frames, &mut published, MAX_BATCH);
        let batch = frames.len();
        if batch > 0 {
            for frame in frames.drain(..) {
                if sink.feed(Message::Text(frame)).await.is_err() {
                    outbox.close(close::INTERNAL_ERROR);
                    return;
                }
            }
            if sink.flush().await.is_err() {
                outbox.close(close::INTERNAL_ERROR);
                return;
            }
            stats.frames_out(batch as u64);
            stats.queue_depth(batch);
            // One sample per write: its oldest data frame (a sample per
            // frame cost more than the rest of the bookkeeping together).
            if let Some(oldest) = published.iter().min() {
                stats.delivery_latency(oldest.elapsed().as_secs_f64());
            }
        }
        if let Some(reason) = drained.close {
            stats.disconnect(reason.code);
            let frame = CloseFrame {
                code: CloseCode::from(reason.code),
                reason: reason.reason.into(),
            };
            let _ = sink.send(Message::Close(Some(frame))).await;
            return;
        }
        if batch == MAX_BATCH {
            tokio::task::yield_now().await;
            continue;
        }
        // One timer for both the rate limiter's retry and the next ping: a
        // timer is a good share of an idle connection's memory.
        let wake = drained
            .retry_after
            .map_or(next_ping, |retry| (Instant::now() + retry).min(next_ping));
        tokio::select! {
            () = outbox.wait() => continue,
            () = sleep_until(wake) => {}
        }
        if Instant::now() >= next_ping {
            next_ping = Instant::now() + ping_every;
            if sink.send(Message::Ping(bytes::Bytes::new())).await.is_err() {
                outbox.close(close::INTERNAL_ERROR);
                return;
            }
        }
    }
}

/// The reader's state: what the connection is subscribed to and who it is.
struct Session {
    gateway: Arc<Gateway>,
    subscriber: Subscriber,
    subscriptions: HashSet<SubKey>,
    identity: Option<Identity>,
    limiter: DefaultDirectRateLimiter,
    violations: u32,
    window_start: Instant,
}

impl Session {
    fn new(gateway: Arc<Gateway>, subscriber: Subscriber) -> Self {
        let ws = &gateway.config.ws;
        let rate = NonZeroU32::new(ws.inbound_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(ws.inbound_burst).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            gateway,
            subscriber,
            subscriptions: HashSet::new(),
            identity: None,
            violations: 0,
            window_start: Instant::now(),
        }
    }

    fn outbox(&self) -> &Outbox {
        &self.subscriber.outbox
    }

    /// Applies one inbound message. Returns false when the connection must end.
    fn on_message(&mut self, message: Message) -> bool {
        let (text, size) = match message {
            Message::Text(text) => {
                let size = text.len();
                (Some(text), size)
            }
            Message::Binary(data) => (None, data.len()),
            Message::Close(_) => return false,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return true,
        };
        self.gateway.stats.frame_in();
        let max = self.gateway.config.ws.max_frame_bytes;
        if size > max {
            self.send_error(frame_too_large(size, max));
            self.outbox().close(close::FRAME_TOO_LARGE);
            return false;
        }
        if self.limiter.check().is_err() {
            return self.on_rate_limited();
        }
        let Some(text) = text else {
            self.send_error(ProtocolError::new(
                ErrorCode::UnsupportedFrame,
                "binary frames are not supported; send JSON text frames",
            ));
            return true;
        };
        match v1::decode(&text) {
            Ok(frame) => self.apply(frame),
            Err(error) => self.send_error(error),
        }
        true
    }

    fn on_rate_limited(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window_start) > VIOLATION_WINDOW {
            self.window_start = now;
            self.violations = 0;
        }
        self.violations += 1;
        let ws = &self.gateway.config.ws;
        if self.violations > ws.rate_limit_close_after {
            tracing::info!(
                violations = self.violations,
                "closing a flooding connection"
            );
            self.outbox().close(close::RATE_LIMIT_EXCEEDED);
            return false;
        }
        self.send_error(ProtocolError::new(
            ErrorCode::RateLimited,
            format!(
                "more than {} frames per second (burst {}); the frame was not applied, slow down",
                ws.inbound_per_second, ws.inbound_burst
            ),
        ));
        true
    }

    fn apply(&mut self, frame: V1ClientFrame) {
        match frame {
            V1ClientFrame::Subscribe {
                channel,
                id,
                symbol,
            } => {
                let result =
                    self.subscribe(channel, symbol.as_deref().map(String::as_str), id.clone());
                self.report(result, id, channel);
            }
            V1ClientFrame::Unsubscribe {
                channel,
                id,
                symbol,
            } => {
                let result =
                    self.unsubscribe(channel, symbol.as_deref().map(String::as_str), id.clone());
                self.report(result, id, channel);
            }
            V1ClientFrame::Auth { id, token } => self.authenticate(&token, id),
            V1ClientFrame::Ping { id } => {
                self.outbox().push_control(v1::encode(&V1ServerFrame::Pong {
                    id,
                    timestamp: Timestamp::now(),
                }));
            }
        }
    }

    /// Resolves what a (un)subscribe names: the hub key and the recorded key.
    fn resolve(
        &self,
        channel: Channel,
        symbol: Option<&str>,
        must_exist: bool,
    ) -> Result<(Option<TopicKey>, SubKey), ProtocolError> {
        if channel.is_private() {
            if symbol.is_some() {
                return Err(symbol_not_allowed(channel));
            }
            let Some(identity) = &self.identity else {
                return Err(ProtocolError::new(
                    ErrorCode::AuthRequired,
                    format!("channel {channel} is private: send an auth frame with a JWT first"),
                ));
            };
            if !self.gateway.auth.allows(identity, channel) {
                let scope = self
                    .gateway
                    .auth
                    .required_scope(channel)
                    .unwrap_or_default();
                return Err(ProtocolError::new(
                    ErrorCode::Forbidden,
                    format!("channel {channel} needs a token with scope {scope}"),
                ));
            }
            return Ok((Some(TopicKey::User(identity.user.clone())), (channel, None)));
        }
        if !channel.per_symbol() {
            if symbol.is_some() {
                return Err(symbol_not_allowed(channel));
            }
            return Ok((Some(TopicKey::Global), (channel, None)));
        }
        let Some(name) = symbol else {
            return Ok((None, (channel, None)));
        };
        let symbols = self.gateway.hub.symbols();
        let symbol = match symbols.get(name) {
            Some(symbol) => symbol,
            None if !must_exist => match Symbols::canonical(name) {
                Ok(canonical) => Symbol::from(canonical),
                Err(error) => {
                    return Err(ProtocolError::new(
                        ErrorCode::UnknownSymbol,
                        error.to_string(),
                    ));
                }
            },
            None => {
                let known: Vec<Symbol> = symbols.all();
                let listed: Vec<&str> = known.iter().take(20).map(|s| &**s).collect();
                let more = if known.len() > 20 { ", ..." } else { "" };
                return Err(ProtocolError::new(
                    ErrorCode::UnknownSymbol,
                    format!(
                        "unknown symbol {}; known symbols: {}{more}",
                        serde_json::Value::String(name.chars().take(32).collect()),
                        listed.join(", ")
                    ),
                ));
            }
        };
        Ok((
            Some(TopicKey::Symbol(symbol.clone())),
            (channel, Some(symbol)),
        ))
    }

    fn subscribe(
        &mut self,
        channel: Channel,
        symbol: Option<&str>,
        id: Option<RequestId>,
    ) -> Result<(), ProtocolError> {
        let (key, sub_key) = self.resolve(channel, symbol, true)?;
        let wildcard = channel.per_symbol() && key.is_none();
        if !self.subscriptions.contains(&sub_key) {
            let replaced = if wildcard {
                self.subscriptions
                    .iter()
                    .filter(|(c, s)| *c == channel && s.is_some())
                    .count()
            } else {
                0
            };
            let covered =
                !wildcard && channel.per_symbol() && self.subscriptions.contains(&(channel, None));
            let max = self.gateway.config.ws.max_subscriptions;
            if !covered && self.subscriptions.len() - replaced + 1 > max {
                return Err(ProtocolError::new(
                    ErrorCode::SubscriptionLimit,
                    format!(
                        "this connection already holds {max} subscriptions; unsubscribe first or subscribe without a symbol"
                    ),
                ));
            }
        }
        let reply = v1::encode(&V1ServerFrame::Subscribed {
            channel,
            id,
            symbol: sub_key.1.as_deref().map(v1::wire_symbol),
        });
        match self
            .gateway
            .hub
            .subscribe(&self.subscriber, channel, key, reply)
        {
            Ok(true) => {
                if wildcard {
                    self.subscriptions
                        .retain(|(c, s)| *c != channel || s.is_none());
                }
                self.subscriptions.insert(sub_key);
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(error @ HubError::ChannelFull { .. }) => Err(ProtocolError::new(
                ErrorCode::ChannelFull,
                error.to_string(),
            )),
        }
    }

    fn unsubscribe(
        &mut self,
        channel: Channel,
        symbol: Option<&str>,
        id: Option<RequestId>,
    ) -> Result<(), ProtocolError> {
        let (key, sub_key) = self.resolve(channel, symbol, false)?;
        if !self.subscriptions.contains(&sub_key) {
            let hint = if sub_key.1.is_some() && self.subscriptions.contains(&(channel, None)) {
                "; it is covered by the all-symbols subscription: unsubscribe without a symbol"
            } else {
                ""
            };
            let what = match &sub_key.1 {
                Some(symbol) => format!("{channel} {symbol}"),
                None if channel.per_symbol() => format!("{channel} (all symbols)"),
                None => channel.to_string(),
            };
            return Err(ProtocolError::new(
                ErrorCode::NotSubscribed,
                format!("not subscribed to {what}{hint}"),
            ));
        }
        let reply = v1::encode(&V1ServerFrame::Unsubscribed {
            channel,
            id,
            symbol: sub_key.1.as_deref().map(v1::wire_symbol),
        });
        self.gateway
            .hub
            .unsubscribe(&self.subscriber, channel, key, reply);
        self.subscriptions.remove(&sub_key);
        Ok(())
    }

    fn authenticate(&mut self, token: &str, id: Option<RequestId>) {
        let identity = match self.gateway.auth.verify(token) {
            Ok(identity) => identity,
            Err(error) => {
                self.send_error(
                    ProtocolError::new(
                        ErrorCode::AuthFailed,
                        format!("{error}; send a valid JWT (the connection stays open)"),
                    )
                    .with_id(id),
                );
                return;
            }
        };
        if self
            .identity
            .as_ref()
            .is_some_and(|old| old.user != identity.user)
        {
            self.drop_private_subscriptions();
        }
        self.outbox()
            .push_control(v1::encode(&V1ServerFrame::Authenticated {
                expires_at: Timestamp(identity.expires_at),
                id,
                scopes: identity.scopes.clone(),
                user: identity.user.to_string(),
            }));
        tracing::debug!(user = %identity.user, "authenticated");
        self.identity = Some(identity);
    }

    /// When the current token expires, as a timer deadline.
    fn auth_deadline(&self) -> Option<Instant> {
        let identity = self.identity.as_ref()?;
        let left = identity.expires_at.duration_since(jiff::Timestamp::now());
        let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
        Some(Instant::now() + left)
    }

    fn expire_auth(&mut self) {
        self.drop_private_subscriptions();
        self.identity = None;
        self.send_error(ProtocolError::new(
            ErrorCode::AuthExpired,
            "the token expired and private subscriptions were dropped; authenticate again",
        ));
    }

    fn drop_private_subscriptions(&mut self) {
        let Some(identity) = &self.identity else {
            return;
        };
        let user = identity.user.clone();
        let private: Vec<SubKey> = self
            .subscriptions
            .iter()
            .filter(|(channel, _)| channel.is_private())
            .cloned()
            .collect();
        for sub_key in private {
            let channel = sub_key.0;
            let reply = v1::encode(&V1ServerFrame::Unsubscribed {
                channel,
                id: None,
                symbol: None,
            });
            self.gateway.hub.unsubscribe(
                &self.subscriber,
                channel,
                Some(TopicKey::User(user.clone())),
                reply,
            );
            self.subscriptions.remove(&sub_key);
        }
    }

    /// Sends the error frame of a failed (un)subscribe, if it failed.
    fn report(&self, result: Result<(), ProtocolError>, id: Option<RequestId>, channel: Channel) {
        if let Err(error) = result {
            self.send_error(error.with_id(id).with_channel(channel));
        }
    }

    fn send_error(&self, error: ProtocolError) {
        self.gateway.stats.error_sent(error.code.to_string());
        self.outbox().push_control(v1::encode_error(&error));
    }
}

fn frame_too_large(size: usize, max: usize) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::FrameTooLarge,
        format!("frame of {size} bytes exceeds the limit of {max} bytes; send smaller frames"),
    )
}

fn symbol_not_allowed(channel: Channel) -> ProtocolError {
    ProtocolError {
        field: Some("/symbol".into()),
        ..ProtocolError::new(
            ErrorCode::SchemaViolation,
            format!("field /symbol: channel {channel} takes no symbol; omit it"),
        )
    }
}

/// The `welcome` frame of a new connection.
fn welcome(gateway: &Gateway, connection_id: u64) -> Text {
    let config = &gateway.config;
    let channels = Channel::ALL
        .iter()
        .map(|&channel| {
            let limits = config.channels.limits(channel);
            ChannelInfo {
                max_subscribers: nonzero(limits.max_subscribers),
                name: channel,
                per_symbol: channel.per_symbol(),
                private: channel.is_private(),
                rate_per_second: nonzero(limits.rate_per_second),
            }
        })
        .collect();
    v1::encode(&V1ServerFrame::Welcome {
        channels,
        connection_id,
        heartbeat: HeartbeatSettings {
            idle_timeout_ms: nonzero64(config.ws.idle_timeout_ms),
            ping_interval_ms: nonzero64(config.ws.ping_interval_ms),
        },
        limits: ConnectionLimits {
            inbound_burst: nonzero(config.ws.inbound_burst),
            inbound_per_second: nonzero(config.ws.inbound_per_second),
            max_frame_bytes: nonzero(u32::try_from(config.ws.max_frame_bytes).unwrap_or(u32::MAX)),
            max_subscriptions: nonzero(
                u32::try_from(config.ws.max_subscriptions).unwrap_or(u32::MAX),
            ),
        },
        symbols: gateway
            .hub
            .symbols()
            .all()
            .iter()
            .map(|s| v1::wire_symbol(s))
            .collect(),
        timestamp: Timestamp::now(),
        version: "1.0.0".into(),
    })
}

fn nonzero(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN)
}

fn nonzero64(value: u64) -> std::num::NonZeroU64 {
    std::num::NonZeroU64::new(value).unwrap_or(std::num::NonZeroU64::MIN)
}
