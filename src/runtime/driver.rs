//! The connection driver: one task per WebSocket connection, for every
//! dialect.
//!
//! The driver owns the socket (never split) and everything a connection does
//! that is not its dialect's business: reading frames and refusing the ones
//! RFC 6455 or our limits reject (1002, 1007, 1009), the inbound rate limit,
//! ping/pong and the idle timeout, draining the `Outbox` in coalesced
//! flushes with a bound on a stalled write, shutdown, and the close
//! handshake. A dialect supplies a `Handler` (what a decoded text frame
//! does, its timer, its refusal frames) and its `Rules` (limits and
//! liveness); see `src/dialects/`.
//!
//! The close handshake: the driver sends what is queued and the close
//! frame, keeps reading (and discarding) until the client's close frame or
//! `ws.close_grace_ms`, then shuts its side of the TCP connection down and
//! reads to the client's end of stream (bounded by the same grace) before it
//! drops the socket. Closing a socket with unread bytes makes the kernel
//! answer with RST, which discards what the client has not read yet: the
//! error frame and the close frame. Reading to EOF first is what makes the
//! last frames arrive.

use std::{sync::Arc, time::Duration};

use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::{Instant, sleep_until, timeout, timeout_at},
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        self, Message,
        error::{CapacityError, ProtocolError},
        protocol::{CloseFrame, frame::coding::CloseCode},
    },
};

use crate::{
    gateway::Gateway,
    hub::{Dialect, Outbox, OutboxLimits, Subscriber},
    protocol::{CloseReason, Text, close},
};

/// Most frames the driver writes per flush.
const MAX_BATCH: usize = 256;

/// What a dialect's connections are allowed, and how their liveness is
/// checked.
#[derive(Clone)]
pub struct Rules {
    /// The largest text or binary frame accepted: past it the dialect's
    /// `FrameTooLarge` refusal, then close 1009.
    pub max_frame_bytes: usize,
    pub inbound: Inbound,
    pub liveness: Liveness,
    /// The bounds of each connection's outbox.
    pub outbox: Arc<OutboxLimits>,
    /// How the hub encodes events for these connections.
    pub dialect: Dialect,
    /// A write that makes no progress for this long ends the connection
    /// (the client stopped reading and its TCP window is full).
    pub write_stall: Duration,
    /// How long a closing connection waits for the client's close frame,
    /// and then for its end of stream.
    pub close_grace: Duration,
}

/// The inbound rate limit: every frame the client sends (data, ping, pong)
/// takes one unit of `quota`. A frame over the quota is not applied; the
/// dialect's `RateLimited` refusal is sent for data frames. More than
/// `close_after` such frames within `window` close the connection with
/// `close` (0: the first one does).
#[derive(Clone)]
pub struct Inbound {
    pub quota: Quota,
    pub close_after: u32,
    pub window: Duration,
    pub close: CloseReason,
}

/// How a dead client is noticed. Every dialect has exactly one mechanism.
#[derive(Clone, Copy, Debug)]
pub enum Liveness {
    /// The driver sends a WebSocket ping every `every` and closes with 4002
    /// after `idle` without any frame from the client.
    Ping { every: Duration, idle: Duration },
    /// The dialect's own heartbeat frames and rule, run from its timer
    /// (`Handler::deadline`); the driver sends no pings.
    Dialect,
}

/// A frame the driver refused; the dialect says what, if anything, the
/// client is told (`Handler::refusal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A frame of `size` bytes, over `max`; the connection closes with 1009.
    FrameTooLarge { size: usize, max: usize },
    /// A frame over the inbound rate; `closing` when it also ends the
    /// connection.
    RateLimited { closing: bool },
    /// A binary frame (every dialect speaks JSON text).
    Binary,
}

/// What a handler sees of its connection.
pub struct Conn<'a> {
    pub gateway: &'a Arc<Gateway>,
    pub subscriber: &'a Subscriber,
}

impl Conn<'_> {
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.subscriber.outbox
    }

    /// The connection's id (also its hub id).
    pub fn id(&self) -> u64 {
        self.subscriber.id
    }
}

/// What a dialect does with its connection. Every method runs on the
/// connection's task and must not block; replies go to `conn.outbox()`, and
/// `conn.outbox().close(reason)` ends the connection once what is queued
/// before it was sent.
///
/// A handler is made when the connection opens (by the dialect's `admit`
/// closure, from its `Conn`): that is where it queues its greeting and
/// makes its initial subscriptions.
pub trait Handler: Send + 'static {
    /// One text frame, within the size and rate limits.
    fn on_text(&mut self, conn: &Conn<'_>, text: Text);

    /// The frame to send for a refused client frame, if the dialect's spec
    /// has one.
    fn refusal(&mut self, _conn: &Conn<'_>, _refusal: Refusal) -> Option<Text> {
        None
    }

    /// When the handler's timer should next run.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// The timer of `deadline` is due.
    fn on_deadline(&mut self, _conn: &Conn<'_>) {}

    /// The gateway is shutting down: queue the dialect's notice, if it has
    /// one (the driver then closes with 1001).
    fn on_shutdown(&mut self, _conn: &Conn<'_>) {}

    /// The connection is ending: release what the dialect holds for it.
    fn on_close(&mut self, _conn: &Conn<'_>) {}
}

/// How the serving loop ended.
enum End {
    /// The server closes with this reason: the close frame goes out after
    /// everything queued, then the close handshake.
    Close(CloseReason),
    /// As `Close`, but the stream can no longer be parsed (a frame's payload
    /// was left unread): after the close frame, read raw bytes to EOF.
    Broken(CloseReason),
    /// The client sent its close frame; tungstenite has queued the reply.
    PeerClosed,
    /// The socket failed or stalled: nothing more can be sent.
    Gone,
}

/// One upgraded connection, ready to be driven (`Driver::run`).
pub struct Driver<S> {
    ws: WebSocketStream<S>,
    /// Shared by every connection of the dialect.
    rules: Arc<Rules>,
    limiter: DefaultDirectRateLimiter,
    /// Frames over the inbound rate in the current window.
    violations: u32,
    window_start: Instant,
    last_heard: Instant,
    next_ping: Instant,
}

impl<S> Driver<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Serves the connection until it closes; `make` makes the dialect's
    /// handler once it is open, and `_hold` (its connection permit and
    /// address slot) is kept for as long.
    ///
    /// The driver runs from `self` in place: an async fn keeps its
    /// arguments for its whole life, so moving the socket or the rules out
    /// of them into a local would store them twice in every idle
    /// connection's task.
    pub async fn run<H, M, K>(mut self, gateway: Arc<Gateway>, make: M, _hold: K)
    where
        H: Handler,
        M: FnOnce(&Conn<'_>) -> H,
        K: Send,
    {
        let outbox = Arc::new(Outbox::new(self.rules.outbox.clone()));
        let subscriber = gateway
            .hub
            .register(outbox.clone(), self.rules.dialect.clone());
        let conn = Conn {
            gateway: &gateway,
            subscriber: &subscriber,
        };
        gateway.stats.connection_opened();
        tracing::debug!(conn = subscriber.id, "connected");
        let mut handler = make(&conn);
        let end = self.serve(&conn, &mut handler).await;
        handler.on_close(&conn);
        gateway.hub.unregister(subscriber.id);
        // Once per connection: boxed, so the close handshake's state takes
        // no room in every idle connection's task.
        Box::pin(self.finish(&conn, end)).await;
        gateway.stats.dropped(outbox.discarded());
        gateway.stats.connection_closed();
        tracing::debug!(conn = subscriber.id, "disconnected");
    }

    pub fn new(ws: WebSocketStream<S>, rules: Arc<Rules>) -> Self {
        let now = Instant::now();
        let next_ping = match rules.liveness {
            Liveness::Ping { every, .. } => now + every,
            Liveness::Dialect => far_future(),
        };
        Self {
            ws,
            limiter: RateLimiter::direct(rules.inbound.quota),
            rules,
            violations: 0,
            window_start: now,
            last_heard: now,
            next_ping,
        }
    }

    async fn serve<H: Handler>(&mut self, conn: &Conn<'_>, handler: &mut H) -> End {
        let gateway = conn.gateway;
        let outbox = conn.outbox();
        let stats = &gateway.stats;
        let shutdown = gateway.shutdown.cancelled();
        tokio::pin!(shutdown);
        let mut shutting_down = false;
        // Grown on first use: most connections are idle most of the time.
        let mut frames = Vec::new();
        let mut published = Vec::new();
        // One timer for pings, the idle timeout, the dialect's timer and the
        // outbox's rate-limit retry: a timer is a good share of an idle
        // connection's memory.
        let timer = sleep_until(far_future());
        tokio::pin!(timer);
        loop {
            frames.clear();
            published.clear();
            let drained = outbox.drain(&mut frames, &mut published, MAX_BATCH);
            let batch = frames.len();
            if batch > 0 {
                if !self.write(&mut frames).await {
                    return End::Gone;
                }
                stats.frames_out(batch as u64);
                stats.queue_depth(batch);
                // One sample per write: its oldest data frame.
                if let Some(oldest) = published.iter().min() {
                    stats.delivery_latency(oldest.elapsed().as_secs_f64());
                }
            }
            if let Some(reason) = drained.close {
                return End::Close(reason);
            }
            let now = Instant::now();
            let mut wake = self.next_ping.min(self.idle_deadline());
            if let Some(deadline) = handler.deadline() {
                wake = wake.min(deadline);
            }
            if let Some(retry) = drained.retry_after {
                wake = wake.min(now + retry);
            }
            if batch == MAX_BATCH {
                // More is queued: read what the client sent, then go on.
                wake = now;
            }
            timer.as_mut().reset(wake);
            tokio::select! {
                biased;
                () = &mut shutdown, if !shutting_down => {
                    shutting_down = true;
                    handler.on_shutdown(conn);
                    outbox.close(close::GOING_AWAY);
                }
                message = self.ws.next() => {
                    if let Some(end) = self.on_message(conn, handler, message).await {
                        return end;
                    }
                }
                () = outbox.wait() => {}
                () = &mut timer => {
                    if !self.on_timer(conn, handler).await {
                        return End::Gone;
                    }
                }
            }
        }
    }

    fn idle_deadline(&self) -> Instant {
        match self.rules.liveness {
            Liveness::Ping { idle, .. } => self.last_heard + idle,
            Liveness::Dialect => far_future(),
        }
    }

    /// Writes `frames` in one flush; false when the socket failed or the
    /// write stalled past `write_stall`.
    async fn write(&mut self, frames: &mut Vec<Text>) -> bool {
        let ws = &mut self.ws;
        let write = async {
            for frame in frames.drain(..) {
                ws.feed(Message::Text(frame)).await?;
            }
            ws.flush().await
        };
        match timeout(self.rules.write_stall, write).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::debug!(%error, "write failed");
                false
            }
            Err(_) => {
                tracing::debug!("write stalled; dropping the connection");
                false
            }
        }
    }

    /// Runs what is due: the idle check, a ping, the dialect's timer.
    /// False when the socket failed.
    async fn on_timer<H: Handler>(&mut self, conn: &Conn<'_>, handler: &mut H) -> bool {
        let now = Instant::now();
        if now >= self.idle_deadline() {
            tracing::debug!("idle timeout");
            conn.outbox().close(close::HEARTBEAT_TIMEOUT);
            return true;
        }
        if let Liveness::Ping { every, .. } = self.rules.liveness
            && now >= self.next_ping
        {
            self.next_ping = now + every;
            let ping = self.ws.send(Message::Ping(bytes::Bytes::new()));
            if !matches!(timeout(self.rules.write_stall, ping).await, Ok(Ok(()))) {
                return false;
            }
        }
        if handler.deadline().is_some_and(|deadline| now >= deadline) {
            handler.on_deadline(conn);
        }
        true
    }

    /// Applies one read; `Some` when the loop must end.
    async fn on_message<H: Handler>(
        &mut self,
        conn: &Conn<'_>,
        handler: &mut H,
        message: Option<Result<Message, tungstenite::Error>>,
    ) -> Option<End> {
        let outbox = conn.outbox();
        let message = match message {
            None => return Some(End::Gone),
            Some(Ok(message)) => message,
            Some(Err(error)) => return Some(self.on_read_error(conn, handler, error)),
        };
        self.last_heard = Instant::now();
        let (data, size) = match &message {
            Message::Text(text) => (true, text.len()),
            Message::Binary(bytes) => (true, bytes.len()),
            Message::Close(_) => return Some(End::PeerClosed),
            Message::Ping(_) | Message::Pong(_) => (false, 0),
            Message::Frame(_) => return None,
        };
        if data {
            conn.gateway.stats.frame_in();
        }
        if size > self.rules.max_frame_bytes {
            let refusal = Refusal::FrameTooLarge {
                size,
                max: self.rules.max_frame_bytes,
            };
            if let Some(frame) = handler.refusal(conn, refusal) {
                outbox.push_control(frame);
            }
            outbox.close(close::FRAME_TOO_LARGE);
            return None;
        }
        if self.limiter.check().is_err() {
            let closing = self.count_violation();
            if (data || closing)
                && let Some(frame) = handler.refusal(conn, Refusal::RateLimited { closing })
            {
                outbox.push_control(frame);
            }
            if closing {
                tracing::info!(
                    violations = self.violations,
                    "closing a flooding connection"
                );
                outbox.close(self.rules.inbound.close);
            }
            return None;
        }
        match message {
            Message::Text(text) => handler.on_text(conn, text),
            Message::Binary(_) => {
                if let Some(frame) = handler.refusal(conn, Refusal::Binary) {
                    outbox.push_control(frame);
                }
            }
            Message::Ping(_) => {
                // tungstenite queued the pong: send it now, not with the
                // next data frame.
                let flush = self.ws.flush();
                if !matches!(timeout(self.rules.write_stall, flush).await, Ok(Ok(()))) {
                    return Some(End::Gone);
                }
            }
            _ => {}
        }
        None
    }

    /// Counts a frame over the inbound rate; true when it ends the
    /// connection.
    fn count_violation(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window_start) > self.rules.inbound.window {
            self.window_start = now;
            self.violations = 0;
        }
        self.violations += 1;
        self.violations > self.rules.inbound.close_after
    }

    /// Maps a read error to the close RFC 6455 asks for.
    fn on_read_error<H: Handler>(
        &mut self,
        conn: &Conn<'_>,
        handler: &mut H,
        error: tungstenite::Error,
    ) -> End {
        tracing::debug!(%error, "read failed");
        match error {
            tungstenite::Error::Capacity(CapacityError::MessageTooLong { size, .. }) => {
                conn.gateway.stats.frame_in();
                let refusal = Refusal::FrameTooLarge {
                    size,
                    max: self.rules.max_frame_bytes,
                };
                if let Some(frame) = handler.refusal(conn, refusal) {
                    conn.outbox().push_control(frame);
                }
                End::Broken(close::FRAME_TOO_LARGE)
            }
            tungstenite::Error::Capacity(_) => End::Broken(close::FRAME_TOO_LARGE),
            tungstenite::Error::Utf8(_) => End::Broken(close::INVALID_PAYLOAD),
            tungstenite::Error::Protocol(
                ProtocolError::ResetWithoutClosingHandshake
                | ProtocolError::SendAfterClosing
                | ProtocolError::ReceivedAfterClosing,
            ) => End::Gone,
            tungstenite::Error::Protocol(_) => End::Broken(close::PROTOCOL_ERROR),
            _ => End::Gone,
        }
    }

    /// The close handshake (see the module's doc).
    async fn finish(&mut self, conn: &Conn<'_>, end: End) {
        let grace = self.rules.close_grace;
        let deadline = Instant::now() + grace;
        let outbox = conn.outbox();
        match end {
            End::Gone => return,
            End::PeerClosed => {
                let _ = timeout_at(deadline, self.ws.flush()).await;
            }
            End::Close(reason) | End::Broken(reason) => {
                // The reason goes in the outbox too, so frames still queued
                // are counted as discarded, not sent after the close.
                outbox.close(reason);
                let mut frames = Vec::new();
                let mut published = Vec::new();
                outbox.drain(&mut frames, &mut published, usize::MAX);
                if !frames.is_empty() && !self.write(&mut frames).await {
                    return;
                }
                conn.gateway.stats.disconnect(reason.code);
                let frame = CloseFrame {
                    code: CloseCode::from(reason.code),
                    reason: reason.reason.into(),
                };
                let sent = timeout_at(deadline, self.ws.send(Message::Close(Some(frame)))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    return;
                }
                if matches!(end, End::Close(_)) {
                    // Read (and discard) until the client's close frame.
                    let _ = timeout_at(deadline, async {
                        while let Some(Ok(message)) = self.ws.next().await {
                            if message.is_close() {
                                break;
                            }
                        }
                    })
                    .await;
                }
            }
        }
        // Our side is done: FIN, then read to the client's end of stream so
        // nothing unread is left for the kernel to answer with RST.
        let socket = self.ws.get_mut();
        let _ = timeout_at(deadline, socket.shutdown()).await;
        let _ = timeout_at(deadline, async {
            let mut scratch = [0u8; 512];
            while matches!(socket.read(&mut scratch).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

impl Rules {
    /// The rules of the main listener's connections, from `ws.*`: frames up
    /// to `max_frame_bytes`, `inbound_per_second` with `inbound_burst`,
    /// closed with 4001 after `rate_limit_close_after` refused frames in
    /// 10 s, WebSocket pings.
    pub fn standard(gateway: &Gateway, dialect: Dialect, outbox: Arc<OutboxLimits>) -> Self {
        use std::num::NonZeroU32;
        let ws = &gateway.config.ws;
        let rate = NonZeroU32::new(ws.inbound_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(ws.inbound_burst).unwrap_or(NonZeroU32::MIN);
        Self {
            max_frame_bytes: ws.max_frame_bytes,
            inbound: Inbound {
                quota: Quota::per_second(rate).allow_burst(burst),
                close_after: ws.rate_limit_close_after,
                window: Duration::from_secs(10),
                close: close::RATE_LIMIT_EXCEEDED,
            },
            liveness: Liveness::Ping {
                every: Duration::from_millis(ws.ping_interval_ms),
                idle: Duration::from_millis(ws.idle_timeout_ms),
            },
            outbox,
            dialect,
            write_stall: Duration::from_millis(ws.idle_timeout_ms),
            close_grace: Duration::from_millis(ws.close_grace_ms),
        }
    }
}
