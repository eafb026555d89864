//! Upstream market-data providers: sources that take prices from a real
//! provider and hand them to the core through `sources::Ingest`, like the
//! simulator does.
//!
//! `keys.rs` is the API-key pool (spacing, rotation, rests, usage);
//! `twelvedata.rs` is TwelveData's wire (REST client, stream messages, error
//! classification). This file is the source itself: one task that collects
//! while the market gate is open, by polling `/quote` or from the price
//! stream, leasing a key from the pool for every request or connection and
//! reporting back what the provider answered.
//!
//! The gate (`watch::Receiver<bool>`) belongs to whoever knows the market
//! hours: the source collects only while it reads `true`, and drops its
//! stream when it turns `false`.

pub mod keys;
pub mod twelvedata;

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use jiff::Timestamp;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use self::{
    keys::{ApiKey, KeyPool, Lease, Outcome, Wait},
    twelvedata::{
        HEARTBEAT_FRAME, PriceEvent, Quote, RestClient, SOURCE_REST, SOURCE_WEBSOCKET,
        StreamMessage, UpstreamError,
    },
};
use crate::{
    backoff::Backoff,
    config::{TwelveDataConfig, UpstreamMode},
    event::{Symbol, Tick},
    hub::InvalidSymbol,
    sources::Ingest,
};

/// The spread put around a price when the provider gives no bid and ask:
/// 4 basis points, as the simulator does.
const SPREAD: f64 = 0.0004;

/// Longest pause between two looks at the pool while no key is usable.
const MAX_KEY_WAIT: Duration = Duration::from_secs(60);

/// The key pool of `config`: the keys of the environment `vars` (the caller
/// passes `std::env::vars()`), then the configured keys, with the
/// configured spacing and rate-limit rest.
pub fn key_pool(
    config: &TwelveDataConfig,
    vars: impl IntoIterator<Item = (String, String)>,
) -> KeyPool {
    let extra: Vec<ApiKey> = config
        .keys
        .iter()
        .map(|key| ApiKey::new(key.expose()))
        .collect();
    KeyPool::from_sources(vars, &extra)
        .with_min_spacing(Duration::from_millis(config.min_key_spacing_ms))
        .with_rate_limit_cooldown(Duration::from_millis(config.rate_limit_cooldown_ms))
}

/// What the source is doing, for `/status` and health: shared with the REST
/// layer, written by the source.
#[derive(Debug, Default)]
pub struct UpstreamStatus {
    active: AtomicBool,
    connected: AtomicBool,
    messages: AtomicU64,
    ticks: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
    last_message: Mutex<Option<Timestamp>>,
    last_error: Mutex<Option<String>>,
}

/// A copy of [`UpstreamStatus`] at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UpstreamSnapshot {
    /// Collecting: the gate is open and the source runs.
    pub active: bool,
    /// The stream is open (websocket mode), or the last request was
    /// answered (rest mode).
    pub connected: bool,
    /// When the provider last sent something usable.
    pub last_message: Option<Timestamp>,
    /// Messages received from the provider (stream events, REST answers).
    pub messages: u64,
    /// Ticks handed to the core.
    pub ticks: u64,
    /// Failed requests, refused handshakes, provider errors and invalid
    /// messages.
    pub errors: u64,
    /// Stream connections attempted after the first of each session.
    pub reconnects: u64,
    /// The latest error, keys masked.
    pub last_error: Option<String>,
}

impl UpstreamStatus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn snapshot(&self) -> UpstreamSnapshot {
        UpstreamSnapshot {
            active: self.active.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
            last_message: *self.last_message.lock(),
            messages: self.messages.load(Ordering::Relaxed),
            ticks: self.ticks.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            last_error: self.last_error.lock().clone(),
        }
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    fn message(&self, now: Timestamp) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        *self.last_message.lock() = Some(now);
    }

    fn error(&self, error: &UpstreamError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock() = Some(error.to_string());
    }

    fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("upstream.twelvedata.symbols: {0}")]
    Symbol(#[from] InvalidSymbol),
    #[error("upstream.twelvedata: {0}")]
    Client(#[from] UpstreamError),
    #[error(
        "upstream.twelvedata.symbols.{0}: a gateway symbol (A-Z, 0-9, ./_:-^=) mapped to a provider symbol"
    )]
    Mapping(String),
}

/// Checks `config.symbols` when the source is enabled: each gateway symbol
/// valid, each mapped to a provider symbol. Run when the gateway starts
/// (`server::bind`), whether or not a key is configured.
///
/// # Errors
/// The first gateway symbol that is invalid or mapped to nothing.
pub fn check_config(config: &TwelveDataConfig) -> Result<(), SpawnError> {
    if !config.enabled {
        return Ok(());
    }
    for (ours, theirs) in &config.symbols {
        if crate::hub::Symbols::canonical(ours).is_err() || theirs.trim().is_empty() {
            return Err(SpawnError::Mapping(ours.clone()));
        }
    }
    Ok(())
}

/// Starts the TwelveData source on `tasks` when it is enabled and `pool`
/// has a key; returns whether it started. It registers its symbols, then
/// collects while `gate` reads `true`, until `shutdown`.
///
/// # Errors
/// A configured gateway symbol that is not a valid symbol, or the HTTP
/// client failing to initialize.
pub fn spawn(
    config: &TwelveDataConfig,
    pool: Arc<KeyPool>,
    ingest: Ingest,
    gate: watch::Receiver<bool>,
    status: Arc<UpstreamStatus>,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> Result<bool, SpawnError> {
    if !config.enabled {
        tracing::info!("twelvedata source disabled");
        return Ok(false);
    }
    if pool.is_empty() {
        tracing::info!(
            "twelvedata source off: no API key (set TWELVEDATA_API_KEY_G1_1 ... or upstream.twelvedata.keys)"
        );
        return Ok(false);
    }
    let mut feeds = Vec::new();
    for (ours, theirs) in &config.symbols {
        feeds.push(Feed {
            symbol: ingest.symbol(ours)?,
            provider: theirs.clone(),
            session: None,
        });
    }
    let rest = RestClient::new(
        &config.rest_url,
        Duration::from_millis(config.request_timeout_ms),
    )?;
    tracing::info!(
        keys = pool.len(),
        mode = ?config.mode,
        symbols = feeds.len(),
        "twelvedata source started"
    );
    let runner = Runner {
        config: config.clone(),
        pool,
        ingest,
        status,
        stops: Stops { shutdown, gate },
        feeds,
        rest,
    };
    tasks.spawn(runner.run());
    Ok(true)
}

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
struct Stops {
    shutdown: CancellationToken,
    gate: watch::Receiver<bool>,
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

/// One symbol: its names and the session built from its quotes.
struct Feed {
    symbol: Symbol,
    provider: String,
    session: Option<Session>,
}

/// The session's state of one symbol since the gate opened.
#[derive(Clone, Debug)]
struct Session {
    open: f64,
    high: f64,
    low: f64,
    reference: f64,
    day_volume: Option<u64>,
    /// The provider's time and price of the last quote, to skip a polled
    /// quote that has not changed.
    last: Option<(i64, f64)>,
}

/// What one provider message says about a symbol.
#[derive(Clone, Debug, Default)]
struct Observed {
    price: f64,
    bid: Option<f64>,
    ask: Option<f64>,
    open: Option<f64>,
    high: Option<f64>,
    low: Option<f64>,
    reference: Option<f64>,
    change: Option<f64>,
    change_percent: Option<f64>,
    day_volume: Option<f64>,
    /// The provider's time of the quote, when it has one.
    stamp: Option<i64>,
}

impl Feed {
    /// The tick `observed` makes, or `None` for an unusable price or a
    /// repeat of the previous quote.
    fn tick(&mut self, observed: &Observed, source: &'static str) -> Option<Tick> {
        let price = observed.price;
        if !(price.is_finite() && price > 0.0) {
            return None;
        }
        let session = self.session.get_or_insert_with(|| {
            let open = observed.open.unwrap_or(price);
            Session {
                open,
                high: price,
                low: price,
                reference: observed.reference.unwrap_or(open),
                day_volume: None,
                last: None,
            }
        });
        if let Some(stamp) = observed.stamp {
            if session.last == Some((stamp, price)) {
                return None;
            }
            session.last = Some((stamp, price));
        }
        if let Some(open) = observed.open {
            session.open = open;
        }
        if let Some(reference) = observed.reference.filter(|r| *r > 0.0) {
            session.reference = reference;
        }
        session.high = session.high.max(price).max(observed.high.unwrap_or(price));
        session.low = session.low.min(price).min(observed.low.unwrap_or(price));
        let day_volume = observed
            .day_volume
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| v as u64);
        let size = match (session.day_volume, day_volume) {
            (Some(before), Some(now)) => now.saturating_sub(before),
            _ => 0,
        };
        if day_volume.is_some() {
            session.day_volume = day_volume;
        }
        let (bid, ask) = match (observed.bid, observed.ask) {
            (Some(bid), Some(ask)) if bid.is_finite() && ask.is_finite() && bid <= ask => {
                (bid, ask)
            }
            _ => (price * (1.0 - SPREAD / 2.0), price * (1.0 + SPREAD / 2.0)),
        };
        let change = observed.change.unwrap_or(price - session.reference);
        let change_percent = observed
            .change_percent
            .unwrap_or(if session.reference > 0.0 {
                ((price - session.reference) / session.reference * 10_000.0).round() / 100.0
            } else {
                0.0
            });
        Some(Tick {
            price,
            open: session.open,
            high: session.high,
            low: session.low,
            bid,
            ask,
            size,
            volume: session.day_volume.unwrap_or(0),
            change,
            change_percent,
            source: source.into(),
        })
    }
}

impl From<&Quote> for Observed {
    fn from(quote: &Quote) -> Self {
        Self {
            price: quote.close.unwrap_or(f64::NAN),
            open: quote.open,
            high: quote.high,
            low: quote.low,
            reference: quote.previous_close,
            change: quote.change,
            change_percent: quote.percent_change,
            day_volume: quote.volume,
            stamp: quote.last_quote_at,
            ..Self::default()
        }
    }
}

impl From<&PriceEvent> for Observed {
    fn from(event: &PriceEvent) -> Self {
        Self {
            price: event.price,
            bid: event.bid,
            ask: event.ask,
            day_volume: event.day_volume,
            ..Self::default()
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

struct Runner {
    config: TwelveDataConfig,
    pool: Arc<KeyPool>,
    ingest: Ingest,
    status: Arc<UpstreamStatus>,
    stops: Stops,
    feeds: Vec<Feed>,
    rest: RestClient,
}

impl Runner {
    async fn run(mut self) {
        loop {
            if !self.stops.opened().await {
                return;
            }
            tracing::info!(mode = ?self.config.mode, "twelvedata: gate open, collecting");
            self.status.active.store(true, Ordering::Relaxed);
            for feed in &mut self.feeds {
                feed.session = None;
            }
            let stop = match self.config.mode {
                UpstreamMode::Rest => self.poll().await,
                UpstreamMode::Websocket => self.stream().await,
            };
            self.status.active.store(false, Ordering::Relaxed);
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
            self.status.ticks.fetch_add(1, Ordering::Relaxed);
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
            self.status.reconnects.fetch_add(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn feed() -> Feed {
        Feed {
            symbol: "USDCOP".into(),
            provider: "USD/COP".into(),
            session: None,
        }
    }

    fn price(price: f64) -> Observed {
        Observed {
            price,
            ..Observed::default()
        }
    }

    #[test]
    fn stream_prices_build_a_session() {
        let mut feed = feed();
        let first = feed.tick(&price(4000.0), SOURCE_WEBSOCKET).unwrap();
        assert_eq!(
            (first.open, first.high, first.low),
            (4000.0, 4000.0, 4000.0)
        );
        // 4 basis points around the price.
        assert!((first.bid - 3999.2).abs() < 1e-9 && (first.ask - 4000.8).abs() < 1e-9);
        assert_eq!((first.change, first.change_percent), (0.0, 0.0));
        assert_eq!(&*first.source, "twelvedata_websocket");
        feed.tick(&price(4040.0), SOURCE_WEBSOCKET).unwrap();
        let third = feed.tick(&price(3980.0), SOURCE_WEBSOCKET).unwrap();
        assert_eq!(
            (third.open, third.high, third.low),
            (4000.0, 4040.0, 3980.0)
        );
        assert_eq!((third.change, third.change_percent), (-20.0, -0.5));
    }

    #[test]
    fn provider_bid_ask_and_volume_are_kept() {
        let mut feed = feed();
        let observed = |day_volume| Observed {
            price: 10.0,
            bid: Some(9.5),
            ask: Some(10.5),
            day_volume: Some(day_volume),
            ..Observed::default()
        };
        let first = feed.tick(&observed(100.0), SOURCE_WEBSOCKET).unwrap();
        assert_eq!(
            (first.bid, first.ask, first.size, first.volume),
            (9.5, 10.5, 0, 100)
        );
        let second = feed.tick(&observed(130.0), SOURCE_WEBSOCKET).unwrap();
        assert_eq!((second.size, second.volume), (30, 130));
    }

    #[test]
    fn quotes_use_the_day_and_skip_repeats() {
        let mut feed = feed();
        let quote = Quote {
            symbol: "USD/COP".into(),
            last_quote_at: Some(1_700_000_000),
            open: Some(4300.0),
            high: Some(4400.0),
            low: Some(4250.0),
            close: Some(4350.0),
            previous_close: Some(4330.0),
            change: Some(20.0),
            percent_change: Some(0.46),
            ..Quote::default()
        };
        let tick = feed.tick(&Observed::from(&quote), SOURCE_REST).unwrap();
        assert_eq!((tick.open, tick.high, tick.low), (4300.0, 4400.0, 4250.0));
        assert_eq!(
            (tick.price, tick.change, tick.change_percent),
            (4350.0, 20.0, 0.46)
        );
        assert_eq!(&*tick.source, "twelvedata_rest");
        assert!(feed.tick(&Observed::from(&quote), SOURCE_REST).is_none());
        let newer = Quote {
            last_quote_at: Some(1_700_000_008),
            ..quote
        };
        assert!(feed.tick(&Observed::from(&newer), SOURCE_REST).is_some());
    }

    #[test]
    fn unusable_prices_make_no_tick() {
        let mut feed = feed();
        assert!(feed.tick(&price(f64::NAN), SOURCE_REST).is_none());
        assert!(feed.tick(&price(0.0), SOURCE_REST).is_none());
        assert!(feed.tick(&price(-1.0), SOURCE_REST).is_none());
        assert!(feed.session.is_none());
    }
}
