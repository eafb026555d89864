//! 1-minute candles built from ticks, their in-memory history, and the
//! aggregation to higher resolutions that the UDF datafeed serves.
//!
//! A candle is published on `chart_data` every `candle_publish_ms` while in
//! progress, and once more with `closed: true` when its minute ends (by the
//! first later tick, or by the timer, whichever comes first).

use std::{
    collections::{HashMap, VecDeque},
    str::FromStr,
    sync::Arc,
};

use parking_lot::Mutex;

use crate::{
    event::{Candle, Event, Payload, Symbol, Topic},
    hub::Hub,
    spec::messages::Channel,
};

/// Closed 1-minute candles kept per symbol (14 days).
pub const MAX_HISTORY: usize = 14 * 24 * 60;

/// Most bars one history request returns.
pub const MAX_BARS: usize = 5000;

const MINUTE: i64 = 60;
const DAY: i64 = 86_400;
/// 1970-01-01 was a Thursday; weeks start on Monday 00:00 UTC.
const MONDAY_OFFSET: i64 = 4 * DAY;

/// A bar resolution of the datafeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Minutes(i64),
    Day,
    Week,
}

impl Resolution {
    /// The resolutions the datafeed supports, as UDF names them.
    pub const SUPPORTED: [&'static str; 7] = ["1", "5", "15", "60", "240", "1D", "1W"];

    /// Start (unix seconds) of the bar that contains `time`.
    pub fn bucket(self, time: i64) -> i64 {
        match self {
            Resolution::Minutes(minutes) => time.div_euclid(minutes * MINUTE) * minutes * MINUTE,
            Resolution::Day => time.div_euclid(DAY) * DAY,
            Resolution::Week => {
                (time - MONDAY_OFFSET).div_euclid(7 * DAY) * 7 * DAY + MONDAY_OFFSET
            }
        }
    }

    /// Length of one bar in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Resolution::Minutes(minutes) => minutes * MINUTE,
            Resolution::Day => DAY,
            Resolution::Week => 7 * DAY,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported resolution {0:?}; supported: 1, 5, 15, 60, 240, 1D, 1W")]
pub struct BadResolution(pub String);

impl FromStr for Resolution {
    type Err = BadResolution;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "1" => Ok(Resolution::Minutes(1)),
            "5" => Ok(Resolution::Minutes(5)),
            "15" => Ok(Resolution::Minutes(15)),
            "60" => Ok(Resolution::Minutes(60)),
            "240" => Ok(Resolution::Minutes(240)),
            "D" | "1D" => Ok(Resolution::Day),
            "W" | "1W" => Ok(Resolution::Week),
            other => Err(BadResolution(other.chars().take(16).collect())),
        }
    }
}

/// One aggregated bar: `time` is its start in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub time: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: u64,
}

/// Candles of every symbol.
pub struct CandleBook {
    hub: Arc<Hub>,
    symbols: Mutex<HashMap<Symbol, SymbolCandles>>,
}

#[derive(Default)]
struct SymbolCandles {
    current: Option<Candle>,
    history: VecDeque<Candle>,
}

impl CandleBook {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self {
            hub,
            symbols: Mutex::new(HashMap::new()),
        }
    }

    /// Folds a tick into the symbol's current candle, closing (and
    /// publishing) the previous one when the tick starts a new minute.
    pub fn on_tick(&self, symbol: &Symbol, at: jiff::Timestamp, price: f64, size: u64) {
        let minute = Resolution::Minutes(1).bucket(at.as_second());
        let closed = {
            let mut symbols = self.symbols.lock();
            let candles = symbols.entry(symbol.clone()).or_default();
            let mut closed = None;
            if let Some(current) = &candles.current
                && current.time.as_second() < minute
            {
                closed = candles.close_current();
            }
            match &mut candles.current {
                Some(current) => {
                    current.high = current.high.max(price);
                    current.low = current.low.min(price);
                    current.close = price;
                    current.volume = current.volume.saturating_add(size);
                }
                None => {
                    candles.current = Some(Candle {
                        time: jiff::Timestamp::from_second(minute).unwrap_or(at),
                        open: price,
                        high: price,
                        low: price,
                        close: price,
                        volume: size,
                        closed: false,
                    });
                }
            }
            closed
        };
        if let Some(candle) = closed {
            self.publish(symbol, candle, at);
        }
    }

    /// Closes candles whose minute has ended by `now`, and when `in_progress`
    /// also publishes every open candle.
    pub fn flush(&self, now: jiff::Timestamp, in_progress: bool) {
        let minute = Resolution::Minutes(1).bucket(now.as_second());
        let mut out = Vec::new();
        {
            let mut symbols = self.symbols.lock();
            for (symbol, candles) in symbols.iter_mut() {
                let Some(current) = &candles.current else {
                    continue;
                };
                if current.time.as_second() < minute {
                    if let Some(closed) = candles.close_current() {
                        out.push((symbol.clone(), closed));
                    }
                } else if in_progress {
                    out.push((symbol.clone(), current.clone()));
                }
            }
        }
        for (symbol, candle) in out {
            self.publish(&symbol, candle, now);
        }
    }

    fn publish(&self, symbol: &Symbol, candle: Candle, now: jiff::Timestamp) {
        self.hub.publish(Event {
            topic: Topic::symbol(Channel::ChartData, symbol.clone()),
            timestamp: now,
            payload: Payload::Candle(candle),
        });
    }

    /// Adds closed candles to a symbol's history (the simulator's backfill).
    /// Candles must be sorted and older than any the symbol already has.
    pub fn backfill(&self, symbol: &Symbol, candles: impl IntoIterator<Item = Candle>) {
        let mut symbols = self.symbols.lock();
        let entry = symbols.entry(symbol.clone()).or_default();
        let mut older: VecDeque<Candle> = candles.into_iter().collect();
        older.append(&mut entry.history);
        while older.len() > MAX_HISTORY {
            older.pop_front();
        }
        entry.history = older;
    }

    /// The in-progress candle of a symbol.
    pub fn current(&self, symbol: &Symbol) -> Option<Candle> {
        self.symbols.lock().get(symbol)?.current.clone()
    }

    /// Bars of `resolution` whose start lies in `[from, to)`, oldest first,
    /// including the in-progress one; at most `limit` (the newest ones).
    pub fn history(
        &self,
        symbol: &Symbol,
        resolution: Resolution,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Vec<Bar> {
        let symbols = self.symbols.lock();
        let Some(candles) = symbols.get(symbol) else {
            return Vec::new();
        };
        let minutes = candles.history.iter().chain(candles.current.iter());
        let mut bars = aggregate(minutes, resolution);
        bars.retain(|bar| bar.time >= from && bar.time < to);
        let limit = limit.min(MAX_BARS);
        if bars.len() > limit {
            bars.drain(..bars.len() - limit);
        }
        bars
    }

    /// Start of the newest bar before `before`, for UDF's `nextTime`.
    pub fn last_time_before(&self, symbol: &Symbol, before: i64) -> Option<i64> {
        let symbols = self.symbols.lock();
        let candles = symbols.get(symbol)?;
        candles
            .history
            .iter()
            .chain(candles.current.iter())
            .map(|c| c.time.as_second())
            .filter(|&t| t < before)
            .max()
    }
}

impl SymbolCandles {
    fn close_current(&mut self) -> Option<Candle> {
        let mut candle = self.current.take()?;
        candle.closed = true;
        self.history.push_back(candle.clone());
        if self.history.len() > MAX_HISTORY {
            self.history.pop_front();
        }
        Some(candle)
    }
}

/// Aggregates sorted 1-minute candles into bars of `resolution`: open is the
/// first, close the last, high the max, low the min, volume the sum.
pub fn aggregate<'a>(
    minutes: impl IntoIterator<Item = &'a Candle>,
    resolution: Resolution,
) -> Vec<Bar> {
    let mut bars: Vec<Bar> = Vec::new();
    for candle in minutes {
        let time = resolution.bucket(candle.time.as_second());
        match bars.last_mut() {
            Some(bar) if bar.time == time => {
                bar.high = bar.high.max(candle.high);
                bar.low = bar.low.min(candle.low);
                bar.close = candle.close;
                bar.volume = bar.volume.saturating_add(candle.volume);
            }
            _ => bars.push(Bar {
                time,
                open: candle.open,
                high: candle.high,
                low: candle.low,
                close: candle.close,
                volume: candle.volume,
            }),
        }
    }
    bars
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    fn candle(time: &str, o: f64, h: f64, l: f64, c: f64, v: u64) -> Candle {
        Candle {
            time: ts(time),
            open: o,
            high: h,
            low: l,
            close: c,
            volume: v,
            closed: true,
        }
    }

    #[test]
    fn buckets() {
        let t = ts("2025-10-15T13:47:12Z").as_second(); // a Wednesday
        let check =
            |r: Resolution, want: &str| assert_eq!(r.bucket(t), ts(want).as_second(), "{r:?}");
        check(Resolution::Minutes(1), "2025-10-15T13:47:00Z");
        check(Resolution::Minutes(5), "2025-10-15T13:45:00Z");
        check(Resolution::Minutes(15), "2025-10-15T13:45:00Z");
        check(Resolution::Minutes(60), "2025-10-15T13:00:00Z");
        check(Resolution::Minutes(240), "2025-10-15T12:00:00Z");
        check(Resolution::Day, "2025-10-15T00:00:00Z");
        check(Resolution::Week, "2025-10-13T00:00:00Z");
    }

    #[test]
    fn aggregates_by_hand_computed_bars() {
        let minutes = [
            candle("2025-10-15T13:44:00Z", 10.0, 11.0, 9.5, 10.5, 100),
            candle("2025-10-15T13:45:00Z", 10.5, 12.0, 10.0, 11.0, 50),
            candle("2025-10-15T13:46:00Z", 11.0, 11.5, 8.0, 9.0, 25),
            candle("2025-10-15T13:50:00Z", 9.0, 9.5, 9.0, 9.25, 5),
        ];
        let bars = aggregate(&minutes, Resolution::Minutes(5));
        let t = |s: &str| ts(s).as_second();
        assert_eq!(
            bars,
            [
                Bar {
                    time: t("2025-10-15T13:40:00Z"),
                    open: 10.0,
                    high: 11.0,
                    low: 9.5,
                    close: 10.5,
                    volume: 100
                },
                Bar {
                    time: t("2025-10-15T13:45:00Z"),
                    open: 10.5,
                    high: 12.0,
                    low: 8.0,
                    close: 9.0,
                    volume: 75
                },
                Bar {
                    time: t("2025-10-15T13:50:00Z"),
                    open: 9.0,
                    high: 9.5,
                    low: 9.0,
                    close: 9.25,
                    volume: 5
                },
            ]
        );
    }

    #[test]
    fn parses_udf_resolutions() {
        for name in Resolution::SUPPORTED {
            assert!(name.parse::<Resolution>().is_ok(), "{name}");
        }
        assert_eq!("D".parse::<Resolution>(), Ok(Resolution::Day));
        assert!("10".parse::<Resolution>().is_err());
        assert!("".parse::<Resolution>().is_err());
    }

    #[test]
    fn ticks_build_and_close_candles() {
        let hub = Arc::new(Hub::new(&Default::default(), Default::default()));
        let book = CandleBook::new(hub);
        let aapl: Symbol = "AAPL".into();
        book.on_tick(&aapl, ts("2025-10-15T13:44:05Z"), 10.0, 1);
        book.on_tick(&aapl, ts("2025-10-15T13:44:30Z"), 12.0, 2);
        book.on_tick(&aapl, ts("2025-10-15T13:44:59Z"), 11.0, 3);
        book.on_tick(&aapl, ts("2025-10-15T13:45:01Z"), 11.5, 4);
        let bars = book.history(&aapl, Resolution::Minutes(1), 0, i64::MAX, 100);
        assert_eq!(bars.len(), 2);
        assert_eq!(
            (
                bars[0].open,
                bars[0].high,
                bars[0].low,
                bars[0].close,
                bars[0].volume
            ),
            (10.0, 12.0, 10.0, 11.0, 6)
        );
        assert_eq!(
            (bars[1].open, bars[1].close, bars[1].volume),
            (11.5, 11.5, 4)
        );
        book.flush(ts("2025-10-15T13:46:00Z"), false);
        assert!(
            book.current(&aapl).is_none(),
            "the timer closes a finished minute"
        );
    }
}
