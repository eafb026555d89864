//! The I/O runner: the one task of the source. It waits for the market gate,
//! then collects (polling `/quote` or reading the price stream), leasing a
//! key from the pool for every request or connection and reporting back what
//! the provider answered; the stream reconnects, on the next key, with
//! jittered exponential backoff. Ticks go to the core through `Ingest`, the
//! source's state to `UpstreamStatus`.

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::{SinkExt, StreamExt};
use jiff::Timestamp;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{
    feed::{Feed, Observed},
    keys::{ApiKey, KeyPool, Lease, Outcome, Wait},
    status::UpstreamStatus,
    twelvedata::{
        self, HEARTBEAT_FRAME, RestClient, SOURCE_REST, SOURCE_WEBSOCKET, StreamMessage,
        UpstreamError,
    },
};
use crate::{
    backoff::Backoff,
    config::{TwelveDataConfig, UpstreamMode},
    sources::Ingest,
};

/// Longest pause between two looks at the pool while no key is usable.
const MAX_KEY_WAIT: Duration = Duration::from_secs(60);

/// The key pool's time: real time, not the gateway's clock. The pool keeps
/// the provider's limits (the spacing between uses of a key, cool-downs,
/// the daily credit reset at UTC midnight), which run on the provider's real
/// time; a pinned or frozen gateway clock must neither stall nor skip them.
/// Everything else here that reads the time of day (the last message, the
/// stamp of a price the provider sent without one) reads the gateway's clock
/// through `Ingest::now`.
fn pool_time() -> Timestamp {
    Timestamp::now()
}

/// Why collecting stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Shutdown,
    GateClosed,
}

/// The two things that interrupt any wait of the source.
pub(super) struct Stops {
    pub(super) shutdown: CancellationToken,
    pub(super) gate: watch::Receiver<bool>,
}

impl Stops {
    /// Runs `work` unless shutdown begins or the gate closes first.
    async fn run<T>(&mut self, work: impl Future<Output = T>) -> Result<T, Stop> {
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => Err(Stop::Shutdown),
            () = gate_closed(&mut self.gate) => Err(Stop::GateClosed),
            value = work => Ok(value),
        }
    }

    /// Waits until the gate opens; `false` when shutdown begins first.
    async fn opened(&mut self) -> bool {
        loop {
            if *self.gate.borrow_and_update() {
                return true;
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return false,
                changed = self.gate.changed() => {
                    if changed.is_err() {
                        // The gate's owner is gone with the gate closed.
                        self.shutdown.cancelled().await;
                        return false;
                    }
                }
            }
        }
    }
}

/// Completes when the gate reads `false`; never when its owner is gone
/// with it open.
async fn gate_closed(gate: &mut watch::Receiver<bool>) {
    loop {
        if !*gate.borrow_and_update() {
            return;
        }
        if gate.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// How a stream connection ended.
struct SessionEnd {
    /// It delivered at least one price (the backoff starts over).
    delivered: bool,
    /// The error that ended it, if any.
    error: Option<UpstreamError>,
}

/// The source's task and all it owns.
pub(super) struct Runner {
    pub(super) config: TwelveDataConfig,
    pub(super) pool: Arc<KeyPool>,
    pub(super) ingest: Ingest,
    pub(super) status: Arc<UpstreamStatus>,
    pub(super) stops: Stops,
    pub(super) feeds: Vec<Feed>,
    pub(super) rest: RestClient,
}

impl Runner {
    /// Collects while the gate is open, until shutdown.
    pub(super) async fn run(mut self) {
        loop {
            if !self.stops.opened().await {
                return;
            }
            tracing::info!(mode = ?self.config.mode, "twelvedata: gate open, collecting");
            self.status.set_active(true);
            for feed in &mut self.feeds {
                feed.session = None;
            }
            let stop = match self.config.mode {
                UpstreamMode::Rest => self.poll().await,
                UpstreamMode::Websocket => self.stream().await,
            };
            self.status.set_active(false);
            self.status.set_connected(false);
            if stop == Stop::Shutdown {
                return;
            }
            tracing::info!("twelvedata: gate closed, stopped collecting");
        }
    }

    /// A key for the next request, waiting while none may be used.
    async fn lease(&mut self) -> Result<Lease, Stop> {
        let mut warned = false;
        loop {
            let now = pool_time();
            let until = match self.pool.acquire(now) {
                Ok(lease) => return Ok(lease),
                Err(Wait { until }) => until,
            };
            let pause = match until {
                Some(until) => std::time::Duration::try_from(until.duration_since(now))
                    .unwrap_or(Duration::ZERO)
                    .clamp(Duration::from_millis(1), MAX_KEY_WAIT),
                None => {
                    if !warned {
                        tracing::warn!("twelvedata: no usable API key; every key was refused");
                        warned = true;
                    }
                    MAX_KEY_WAIT
                }
            };
            self.stops.run(tokio::time::sleep(pause)).await?;
        }
    }

    fn publish(&mut self, index: usize, observed: &Observed, source: &'static str, at: Timestamp) {
        let feed = &mut self.feeds[index];
        if let Some(tick) = feed.tick(observed, source) {
            self.ingest.tick(&feed.symbol, at, tick);
            self.status.count_tick();
        }
    }

    /// REST mode: a `/quote` per symbol every `poll_ms`.
    async fn poll(&mut self) -> Stop {
        let period = Duration::from_millis(self.config.poll_ms);
        loop {
            let round = tokio::time::Instant::now() + period;
            for index in 0..self.feeds.len() {
                if let Err(stop) = self.poll_symbol(index).await {
                    return stop;
                }
            }
            if let Err(stop) = self.stops.run(tokio::time::sleep_until(round)).await {
                return stop;
            }
        }
    }

    /// One symbol's quote; a failure that is the key's fault is retried
    /// with the next key, once per key at most.
    async fn poll_symbol(&mut self, index: usize) -> Result<(), Stop> {
        for _ in 0..self.pool.len().max(1) {
            let lease = self.lease().await?;
            let provider = self.feeds[index].provider.clone();
            let answer = self
                .stops
                .run(self.rest.quote(&provider, &lease.key))
                .await?;
            let now = self.ingest.now();
            match answer {
                Ok(answer) => {
                    self.pool.report(
                        lease.index,
                        Outcome::Ok {
                            remaining_credits: answer.remaining_credits,
                        },
                        pool_time(),
                    );
                    self.status.set_connected(true);
                    self.status.message(now);
                    let observed = Observed::from(&answer.value);
                    let at = observed
                        .stamp
                        .and_then(|s| Timestamp::from_second(s).ok())
                        .unwrap_or(now);
                    self.publish(index, &observed, SOURCE_REST, at);
                    return Ok(());
                }
                Err(error) => {
                    self.status.error(&error);
                    tracing::warn!(
                        symbol = %provider,
                        key = %lease.key.masked(),
                        key_index = lease.index,
                        %error,
                        "twelvedata quote failed"
                    );
                    match error.outcome() {
                        Some(outcome) => self.pool.report(lease.index, outcome, pool_time()),
                        None => {
                            if matches!(error, UpstreamError::Transport(_)) {
                                self.status.set_connected(false);
                            }
                            return Ok(());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Websocket mode: one stream for all symbols, reconnected with backoff
    /// on the next key whenever it ends.
    async fn stream(&mut self) -> Stop {
        let mut backoff =
            Backoff::from_millis(self.config.reconnect_min_ms, self.config.reconnect_max_ms);
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        loop {
            let lease = match self.lease().await {
                Ok(lease) => lease,
                Err(stop) => return stop,
            };
            let url = twelvedata::stream_url(&self.config.ws_url, &lease.key);
            let connect = tokio::time::timeout(timeout, tokio_tungstenite::connect_async(url));
            let end = match self.stops.run(connect).await {
                Err(stop) => return stop,
                Ok(Err(_)) => SessionEnd {
                    delivered: false,
                    error: Some(UpstreamError::Transport(
                        "stream handshake timed out".into(),
                    )),
                },
                Ok(Ok(Err(error))) => SessionEnd {
                    delivered: false,
                    error: Some(twelvedata::handshake_error(error, &lease.key)),
                },
                Ok(Ok(Ok((socket, _)))) => match self.session(socket, &lease).await {
                    Ok(end) => end,
                    Err(stop) => return stop,
                },
            };
            self.status.set_connected(false);
            let outcome = match &end.error {
                Some(error) => {
                    self.status.error(error);
                    tracing::warn!(
                        key = %lease.key.masked(),
                        key_index = lease.index,
                        %error,
                        "twelvedata stream ended"
                    );
                    error.outcome().unwrap_or(Outcome::Disconnected)
                }
                None => {
                    tracing::info!(
                        key_index = lease.index,
                        "twelvedata stream closed by the provider"
                    );
                    Outcome::Disconnected
                }
            };
            self.pool.report(lease.index, outcome, pool_time());
            if end.delivered {
                backoff.reset();
            }
            let pause = backoff.next_delay();
            if let Err(stop) = self.stops.run(tokio::time::sleep(pause)).await {
                return stop;
            }
            self.status.count_reconnect();
        }
    }

    /// One stream connection: subscribe, then prices and heartbeats until
    /// it ends.
    async fn session<S>(
        &mut self,
        socket: tokio_tungstenite::WebSocketStream<S>,
        lease: &Lease,
    ) -> Result<SessionEnd, Stop>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (mut sink, mut stream) = socket.split();
        let symbols: Vec<&str> = self.feeds.iter().map(|f| f.provider.as_str()).collect();
        let subscribe = twelvedata::subscribe_frame(&symbols);
        if let Err(error) = sink.send(Message::text(subscribe)).await {
            return Ok(SessionEnd {
                delivered: false,
                error: Some(transport(&error, &lease.key)),
            });
        }
        self.status.set_connected(true);
        tracing::info!(key = %lease.key.masked(), key_index = lease.index, "twelvedata stream open");
        let every = Duration::from_millis(self.config.heartbeat_ms);
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut delivered = false;
        let stop = loop {
            let message = tokio::select! {
                biased;
                () = self.stops.shutdown.cancelled() => break Stop::Shutdown,
                () = gate_closed(&mut self.stops.gate) => break Stop::GateClosed,
                _ = heartbeat.tick() => {
                    if let Err(error) = sink.send(Message::text(HEARTBEAT_FRAME)).await {
                        return Ok(SessionEnd { delivered, error: Some(transport(&error, &lease.key)) });
                    }
                    continue;
                }
                message = stream.next() => message,
            };
            let text = match message {
                None | Some(Ok(Message::Close(_))) => {
                    return Ok(SessionEnd {
                        delivered,
                        error: None,
                    });
                }
                Some(Err(error)) => {
                    return Ok(SessionEnd {
                        delivered,
                        error: Some(transport(&error, &lease.key)),
                    });
                }
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(_)) => continue,
            };
            let now = self.ingest.now();
            match twelvedata::decode_stream(&text) {
                Ok(StreamMessage::Price(event)) => {
                    self.status.message(now);
                    let Some(index) = self.feeds.iter().position(|f| f.provider == event.symbol)
                    else {
                        tracing::debug!(symbol = %event.symbol, "twelvedata price of an unknown symbol");
                        continue;
                    };
                    let at = Timestamp::from_second(event.timestamp).unwrap_or(now);
                    self.publish(index, &Observed::from(&event), SOURCE_WEBSOCKET, at);
                    delivered = true;
                }
                Ok(StreamMessage::SubscribeStatus { success, fails }) => {
                    self.status.message(now);
                    self.pool.report(
                        lease.index,
                        Outcome::Ok {
                            remaining_credits: None,
                        },
                        pool_time(),
                    );
                    if fails.is_empty() {
                        tracing::info!(symbols = ?success, "twelvedata subscribed");
                    } else {
                        tracing::warn!(symbols = ?success, refused = ?fails, "twelvedata refused some symbols");
                    }
                }
                Ok(StreamMessage::Heartbeat | StreamMessage::Other(_)) => self.status.message(now),
                Ok(StreamMessage::Error(error)) => {
                    let error = twelvedata::scrub_error(error, &lease.key);
                    if error.outcome().is_some() {
                        return Ok(SessionEnd {
                            delivered,
                            error: Some(error),
                        });
                    }
                    self.status.error(&error);
                    tracing::warn!(%error, "twelvedata stream error");
                }
                Err(error) => {
                    self.status.error(&error);
                    tracing::warn!(%error, "invalid twelvedata message ignored");
                }
            }
        };
        // Leaving on our side: say goodbye, without waiting long for it.
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(None))).await;
        Err(stop)
    }
}

fn transport(error: &tokio_tungstenite::tungstenite::Error, key: &ApiKey) -> UpstreamError {
    UpstreamError::Transport(key.scrub(&error.to_string()))
}
