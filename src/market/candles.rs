//! Candles of every timeframe built from ticks, persisted through the store,
//! and the history the UDF datafeed (and later dialects) serve.
//!
//! Each symbol keeps, per resolution (1m, 5m, 15m, 1h, 4h, 1D, 1W), the bar
//! in progress. Every tick folds into all seven at once, so a higher
//! timeframe bar is exactly the aggregate of its 1-minute bars (open the
//! first, close the last, high the max, low the min, volume the sum): the
//! same prices meet the same `max`, `min` and integer sums. A bar whose
//! period ended is written as final; bars in progress are written every
//! `candle_publish_ms`, all resolutions of a symbol in one batch, so the
//! store always holds a consistent set, and a restart continues the bars of
//! the current periods from it (`restore`).
//!
//! The 1-minute candle is published on `chart_data` every
//! `candle_publish_ms` while in progress, and once more with `closed: true`
//! when its minute ends (by the first later tick, or by the timer).

use std::{collections::HashMap, sync::Arc};

use parking_lot::Mutex;

use crate::{
    clock::Clock,
    event::{Candle, Event, Payload, Symbol, Topic},
    hub::Hub,
    spec::messages::Channel,
    store::{BarRow, StoreError, Writer},
};

/// Most bars one history request returns.
pub const MAX_BARS: usize = 5000;

pub use crate::bars::{BadResolution, Bar, Resolution};

/// Candles of every symbol.
pub struct CandleBook {
    hub: Arc<Hub>,
    writer: Option<Arc<Writer>>,
    /// The gateway's clock: the time bars open and close at.
    clock: Clock,
    symbols: Mutex<HashMap<Symbol, SymbolCandles>>,
}

/// The bars in progress of one symbol, indexed like `Resolution::ALL`.
#[derive(Default)]
struct SymbolCandles {
    bars: [Option<Bar>; 7],
    /// The final value of the bar that ended last, per resolution (rooms of
    /// the candles dialect send it before the next bar).
    closed: [Option<Bar>; 7],
    /// Ticks before this time (unix seconds) are too late: the minute they
    /// belong to was closed and written.
    floor: i64,
    /// Changed since the bars were last handed to the writer.
    dirty: bool,
}

impl Bar {
    fn new(time: i64, price: f64, size: u64) -> Self {
        Self {
            time,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: size,
        }
    }

    fn fold(&mut self, price: f64, size: u64) {
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        self.close = price;
        self.volume = self.volume.saturating_add(size);
    }

    fn candle(&self, closed: bool) -> Candle {
        Candle {
            time: jiff::Timestamp::from_second(self.time).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: self.volume,
            closed,
        }
    }

    fn row(&self, symbol: &Symbol, resolution: Resolution) -> BarRow {
        BarRow {
            symbol: symbol.clone(),
            resolution,
            time: jiff::Timestamp::from_second(self.time).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: i64::try_from(self.volume).unwrap_or(i64::MAX),
        }
    }

    fn from_row(row: &BarRow) -> Self {
        Self {
            time: row.time.as_second(),
            open: row.open,
            high: row.high,
            low: row.low,
            close: row.close,
            volume: u64::try_from(row.volume).unwrap_or(0),
        }
    }
}

impl CandleBook {
    /// A book that keeps bars in memory only (no store). Its timer
    /// (`market::run_candle_timer`) closes bars by `clock`.
    pub fn new(hub: Arc<Hub>, clock: Clock) -> Self {
        Self {
            hub,
            writer: None,
            clock,
            symbols: Mutex::new(HashMap::new()),
        }
    }

    /// A book that writes its bars through `writer` and reads history from
    /// its store.
    pub fn with_store(hub: Arc<Hub>, writer: Arc<Writer>, clock: Clock) -> Self {
        Self {
            writer: Some(writer),
            ..Self::new(hub, clock)
        }
    }

    /// The clock the book keeps time by (the gateway's).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The current instant by the book's clock.
    pub fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    /// Folds a tick into the symbol's bars of every resolution, closing
    /// (writing, and for 1m publishing) the bars whose period it ends. A
    /// tick older than the symbol's current minute is ignored: its minute is
    /// closed.
    pub fn on_tick(&self, symbol: &Symbol, at: jiff::Timestamp, price: f64, size: u64) {
        let time = at.as_second();
        let mut closed_minute = None;
        let mut finished = Vec::new();
        {
            let mut symbols = self.symbols.lock();
            let candles = symbols.entry(symbol.clone()).or_default();
            let late = candles
                .bars
                .iter()
                .zip(Resolution::ALL)
                .any(|(bar, resolution)| bar.is_some_and(|bar| bar.time > resolution.bucket(time)));
            if time < candles.floor || late {
                return;
            }
            for ((slot, closed), resolution) in candles
                .bars
                .iter_mut()
                .zip(candles.closed.iter_mut())
                .zip(Resolution::ALL)
            {
                let bucket = resolution.bucket(time);
                match slot {
                    Some(bar) if bar.time == bucket => bar.fold(price, size),
                    _ => {
                        if let Some(old) = slot.replace(Bar::new(bucket, price, size)) {
                            *closed = Some(old);
                            if resolution == Resolution::M1 {
                                closed_minute = Some(old);
                            }
                            finished.push(old.row(symbol, resolution));
                        }
                    }
                }
            }
            candles.floor = Resolution::M1.bucket(time);
            candles.dirty = true;
        }
        if let Some(writer) = &self.writer {
            for row in finished {
                writer.bar(row);
            }
        }
        if let Some(bar) = closed_minute {
            self.publish(symbol, bar.candle(true), at);
        }
    }

    /// Closes the bars whose period has ended by `now` (writing them and
    /// publishing the closed minute). When `in_progress`, also publishes
    /// every open 1-minute candle and writes the bars that changed.
    pub fn flush(&self, now: jiff::Timestamp, in_progress: bool) {
        let now_s = now.as_second();
        let mut publish = Vec::new();
        let mut rows = Vec::new();
        {
            let mut symbols = self.symbols.lock();
            for (symbol, candles) in symbols.iter_mut() {
                for ((slot, closed), resolution) in candles
                    .bars
                    .iter_mut()
                    .zip(candles.closed.iter_mut())
                    .zip(Resolution::ALL)
                {
                    let Some(bar) = slot else { continue };
                    if bar.time < resolution.bucket(now_s) {
                        *closed = Some(*bar);
                        if resolution == Resolution::M1 {
                            publish.push((symbol.clone(), bar.candle(true)));
                            candles.floor = candles.floor.max(bar.time + Resolution::M1.seconds());
                        }
                        rows.push(bar.row(symbol, resolution));
                        *slot = None;
                    } else if in_progress {
                        if resolution == Resolution::M1 {
                            publish.push((symbol.clone(), bar.candle(false)));
                        }
                        if candles.dirty {
                            rows.push(bar.row(symbol, resolution));
                        }
                    }
                }
                if in_progress {
                    candles.dirty = false;
                }
            }
        }
        if let Some(writer) = &self.writer {
            for row in rows {
                writer.bar(row);
            }
        }
        for (symbol, candle) in publish {
            self.publish(&symbol, candle, now);
        }
    }

    /// Hands every bar in progress to the writer (shutdown).
    pub fn persist(&self) {
        let Some(writer) = &self.writer else { return };
        let symbols = self.symbols.lock();
        for (symbol, candles) in symbols.iter() {
            for (bar, resolution) in candles.bars.iter().zip(Resolution::ALL) {
                if let Some(bar) = bar {
                    writer.bar(bar.row(symbol, resolution));
                }
            }
        }
    }

    fn publish(&self, symbol: &Symbol, candle: Candle, now: jiff::Timestamp) {
        self.hub.publish(Event {
            topic: Topic::symbol(Channel::ChartData, symbol.clone()),
            timestamp: now,
            payload: Payload::Candle(candle),
        });
    }

    /// Continues the bars of the periods containing `now` from the store:
    /// what a restart (or a first start after the simulator's backfill)
    /// picks up. Returns how many bars were restored.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn restore(&self, now: jiff::Timestamp) -> Result<usize, StoreError> {
        let Some(writer) = &self.writer else {
            return Ok(0);
        };
        let mut restored = 0;
        let now_s = now.as_second();
        for (index, resolution) in Resolution::ALL.into_iter().enumerate() {
            let start = jiff::Timestamp::from_second(resolution.bucket(now_s))
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            let rows = writer.store().bars_at(resolution, start).await?;
            let mut symbols = self.symbols.lock();
            for row in rows {
                let candles = symbols.entry(row.symbol.clone()).or_default();
                if candles.bars[index].is_none() {
                    candles.bars[index] = Some(Bar::from_row(&row));
                    restored += 1;
                }
            }
        }
        Ok(restored)
    }

    /// The in-progress 1-minute candle of a symbol.
    pub fn current(&self, symbol: &Symbol) -> Option<Candle> {
        let symbols = self.symbols.lock();
        symbols.get(symbol)?.bars[0].map(|bar| bar.candle(false))
    }

    /// The in-progress bar of one resolution.
    pub fn open_bar(&self, symbol: &Symbol, resolution: Resolution) -> Option<Bar> {
        self.symbols.lock().get(symbol)?.bars[resolution.index()]
    }

    /// The bar in progress of one resolution and the final value of the one
    /// that ended last.
    pub fn latest(&self, symbol: &Symbol, resolution: Resolution) -> (Option<Bar>, Option<Bar>) {
        let index = resolution.index();
        let symbols = self.symbols.lock();
        symbols
            .get(symbol)
            .map_or((None, None), |c| (c.bars[index], c.closed[index]))
    }

    /// Bars of `resolution` whose start lies in `[from, to)`, oldest first,
    /// including the one in progress: the newest `limit` (at most
    /// `MAX_BARS`). Reads the store, then lays over it what the writer has
    /// not committed yet and the bar in progress.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn history(
        &self,
        symbol: &Symbol,
        resolution: Resolution,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<Bar>, StoreError> {
        let limit = limit.min(MAX_BARS);
        let mut bars: Vec<Bar> = Vec::new();
        if let Some(writer) = &self.writer {
            let stamp = |s: i64| {
                jiff::Timestamp::from_second(s.clamp(MIN_TIME, MAX_TIME))
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            };
            let stored = writer
                .store()
                .bars(symbol, resolution, stamp(from), stamp(to), limit)
                .await?;
            bars.extend(stored.iter().map(Bar::from_row));
            for row in writer.unwritten_bars(symbol, resolution) {
                overlay(&mut bars, Bar::from_row(&row));
            }
        }
        if let Some(open) = self.open_bar(symbol, resolution) {
            overlay(&mut bars, open);
        }
        bars.retain(|bar| bar.time >= from && bar.time < to);
        bars.sort_by_key(|bar| bar.time);
        if bars.len() > limit {
            bars.drain(..bars.len() - limit);
        }
        Ok(bars)
    }

    /// Start of the newest bar before `before`, for UDF's `nextTime`.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn last_time_before(
        &self,
        symbol: &Symbol,
        resolution: Resolution,
        before: i64,
    ) -> Result<Option<i64>, StoreError> {
        let bars = self
            .history(symbol, resolution, MIN_TIME, before, 1)
            .await?;
        Ok(bars.last().map(|bar| bar.time))
    }
}

/// Earliest and latest times a history query uses (years 1970 and 9999).
const MIN_TIME: i64 = 0;
const MAX_TIME: i64 = 253_402_300_799;

/// Replaces the bar with the same start, or adds it.
fn overlay(bars: &mut Vec<Bar>, bar: Bar) {
    match bars.iter_mut().find(|old| old.time == bar.time) {
        Some(old) => *old = bar,
        None => bars.push(bar),
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
    fn aggregates_by_hand_computed_bars() {
        let minutes = [
            candle("2025-10-15T13:44:00Z", 10.0, 11.0, 9.5, 10.5, 100),
            candle("2025-10-15T13:45:00Z", 10.5, 12.0, 10.0, 11.0, 50),
            candle("2025-10-15T13:46:00Z", 11.0, 11.5, 8.0, 9.0, 25),
            candle("2025-10-15T13:50:00Z", 9.0, 9.5, 9.0, 9.25, 5),
        ];
        let bars = aggregate(&minutes, Resolution::M5);
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
    fn ticks_build_and_close_candles() {
        let hub = Arc::new(Hub::new(&Default::default(), Default::default()));
        let book = CandleBook::new(hub, Clock::system());
        let aapl: Symbol = "AAPL".into();
        book.on_tick(&aapl, ts("2025-10-15T13:44:05Z"), 10.0, 1);
        book.on_tick(&aapl, ts("2025-10-15T13:44:30Z"), 12.0, 2);
        book.on_tick(&aapl, ts("2025-10-15T13:44:59Z"), 11.0, 3);
        let minute = book.current(&aapl).unwrap();
        assert_eq!(
            (
                minute.open,
                minute.high,
                minute.low,
                minute.close,
                minute.volume
            ),
            (10.0, 12.0, 10.0, 11.0, 6)
        );
        book.on_tick(&aapl, ts("2025-10-15T13:45:01Z"), 11.5, 4);
        let minute = book.current(&aapl).unwrap();
        assert_eq!((minute.open, minute.close, minute.volume), (11.5, 11.5, 4));
        let five = book.open_bar(&aapl, Resolution::M5).unwrap();
        assert_eq!(
            (
                five.time,
                five.open,
                five.high,
                five.low,
                five.close,
                five.volume
            ),
            (
                ts("2025-10-15T13:45:00Z").as_second(),
                11.5,
                11.5,
                11.5,
                11.5,
                4
            ),
            "13:45 starts a new 5-minute bar"
        );
        let hour = book.open_bar(&aapl, Resolution::H1).unwrap();
        assert_eq!(
            (hour.open, hour.high, hour.low, hour.close, hour.volume),
            (10.0, 12.0, 10.0, 11.5, 10),
            "the hour aggregates both minutes"
        );
        book.on_tick(&aapl, ts("2025-10-15T13:44:50Z"), 99.0, 7);
        assert_eq!(
            book.current(&aapl).unwrap().volume,
            4,
            "a tick of a closed minute is ignored"
        );
        book.flush(ts("2025-10-15T13:46:00Z"), false);
        assert!(
            book.current(&aapl).is_none(),
            "the timer closes a finished minute"
        );
        assert!(book.open_bar(&aapl, Resolution::H1).is_some());
    }
}
