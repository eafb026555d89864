//! One measuring client of `bench run`: what it subscribes to in each
//! dialect, and what it counts on every frame it receives.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{
    Ws,
    report::{histogram, string_field, timestamp_micros, u64_field},
};

/// The wire dialect the clients speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// Seed 002's flat quotes (`/ws/quotes?tickers=`).
    Quotes,
    /// The v1 API (`/api/v1/ws/v1`), `market_data`.
    V1,
    /// Seed 003's candles (port 7000), one room per client.
    Candles,
}

/// The tickers of a run, by index.
#[derive(Debug)]
pub struct Universe {
    pub names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Universe {
    pub fn new(names: Vec<String>) -> Self {
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        Self { names, index }
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

/// What every client shares: the measured window and live counters for
/// the progress line.
#[derive(Debug)]
pub struct Shared {
    pub dialect: Dialect,
    pub universe: Universe,
    /// The measured window in wall-clock µs: frames stamped inside it count.
    pub window: (i64, i64),
    pub frames: AtomicU64,
    pub connected: AtomicU64,
}

/// What one client counted.
pub struct ClientState {
    /// Indices into the universe this client asked for (None: all).
    pub tickers: Option<Vec<usize>>,
    /// In-window frames per ticker index.
    pub counts: Vec<u64>,
    /// In-window frames of tickers this client did not ask for.
    pub unexpected: u64,
    /// Every data frame, in the window or not.
    pub frames: u64,
    pub latency: Histogram<u64>,
    /// Frames per whole second of the window (v1 rate caps).
    pub per_second: Vec<u64>,
    /// Missing v1 `seq` numbers per topic: the frames conflated away.
    pub seq_gaps: u64,
    last_seq: Vec<u64>,
    /// v1 `error` frames by code; candles `error` frames as `candles`.
    pub errors: BTreeMap<String, u64>,
    /// The v1 `market_data` rate cap from `welcome`.
    pub rate_cap: Option<u64>,
    /// The connection ended before the run did.
    pub closed_early: bool,
}

impl ClientState {
    pub fn new(tickers: Option<Vec<usize>>, universe: usize, seconds: usize) -> Self {
        Self {
            tickers,
            counts: vec![0; universe],
            unexpected: 0,
            frames: 0,
            latency: histogram(),
            per_second: vec![0; seconds.max(1)],
            seq_gaps: 0,
            last_seq: vec![0; universe],
            errors: BTreeMap::new(),
            rate_cap: None,
            closed_early: false,
        }
    }

    fn wants(&self, index: usize) -> bool {
        self.tickers.as_ref().is_none_or(|t| t.contains(&index))
    }

    /// Counts one text frame received at `now` (µs).
    pub fn on_frame(&mut self, shared: &Shared, frame: &str, now: i64) {
        let (ticker, stamp) = match shared.dialect {
            Dialect::Quotes => (
                string_field(frame, "ticker"),
                string_field(frame, "timestamp"),
            ),
            Dialect::V1 => match string_field(frame, "type") {
                Some("market_tick") => (
                    string_field(frame, "symbol"),
                    string_field(frame, "timestamp"),
                ),
                Some("welcome") => {
                    self.rate_cap = welcome_rate(frame);
                    return;
                }
                Some("error") => {
                    let code = string_field(frame, "code").unwrap_or("unknown");
                    *self.errors.entry(code.to_owned()).or_default() += 1;
                    return;
                }
                _ => return,
            },
            Dialect::Candles => match string_field(frame, "type") {
                // A candle update carries its bar's time, not a publish
                // time: counted, without latency.
                Some("update") => {
                    self.frames += 1;
                    shared.frames.fetch_add(1, Relaxed);
                    return;
                }
                Some("error") => {
                    *self.errors.entry("candles".into()).or_default() += 1;
                    return;
                }
                _ => return,
            },
        };
        self.frames += 1;
        shared.frames.fetch_add(1, Relaxed);
        let (Some(ticker), Some(stamp)) = (ticker, stamp.and_then(timestamp_micros)) else {
            return;
        };
        let Some(index) = shared.universe.index(ticker) else {
            return;
        };
        if shared.dialect == Dialect::V1
            && let Some(seq) = u64_field(frame, "seq")
        {
            let last = &mut self.last_seq[index];
            if *last > 0 && seq > *last + 1 {
                self.seq_gaps += seq - *last - 1;
            }
            *last = seq;
        }
        let (start, end) = shared.window;
        if stamp < start || stamp >= end {
            return;
        }
        if !self.wants(index) {
            self.unexpected += 1;
            return;
        }
        self.counts[index] += 1;
        let _ = self.latency.record((now - stamp).max(1) as u64);
        let second = ((now - start).max(0) / 1_000_000) as usize;
        if let Some(bucket) = self.per_second.get_mut(second) {
            *bucket += 1;
        }
    }
}

/// `rate_per_second` of `market_data` in a v1 `welcome` frame.
fn welcome_rate(frame: &str) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_str(frame).ok()?;
    value["channels"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == "market_data")?["rate_per_second"]
        .as_u64()
}

/// The frames a client sends after connecting: v1 subscribes, a candles
/// room; the quotes dialect filters in its URL.
pub fn subscribe_frames(dialect: Dialect, tickers: Option<&[String]>) -> Vec<String> {
    match dialect {
        Dialect::Quotes => Vec::new(),
        Dialect::V1 => match tickers {
            None => vec![json!({"type": "subscribe", "channel": "market_data"}).to_string()],
            Some(tickers) => tickers
                .iter()
                .map(|t| {
                    json!({"type": "subscribe", "channel": "market_data", "symbol": t}).to_string()
                })
                .collect(),
        },
        Dialect::Candles => {
            let symbol = tickers
                .and_then(|t| t.first())
                .map_or("BTC/USDT", String::as_str);
            vec![
                json!({"type": "subscribe", "symbol": symbol, "interval": "1m", "initialBars": 1})
                    .to_string(),
            ]
        }
    }
}

/// Sends `subscribe`, then reads until `stop` or the connection ends.
pub async fn drive(
    mut ws: Ws,
    shared: Arc<Shared>,
    subscribe: Vec<String>,
    mut state: ClientState,
    stop: CancellationToken,
) -> ClientState {
    for frame in subscribe {
        if ws.send(Message::text(frame)).await.is_err() {
            state.closed_early = true;
            return state;
        }
    }
    loop {
        let message = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            message = ws.next() => message,
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                state.on_frame(&shared, text.as_str(), super::report::now_micros());
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                state.closed_early = true;
                break;
            }
            Some(Ok(_)) => {}
        }
    }
    // A polite close, bounded: the run is over either way.
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), ws.close(None)).await;
    state
}
