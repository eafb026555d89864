//! `[simulator]`: the built-in source.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorConfig {
    pub enabled: bool,
    /// Seed of every random choice the simulator makes.
    pub seed: u64,
    pub symbols: Vec<String>,
    /// Each symbol ticks after a random pause in [min, max] milliseconds.
    pub tick_interval_ms: [u64; 2],
    /// Load mode: when above 0, ticks at this aggregate rate (round-robin over
    /// the symbols) instead of the random pauses.
    pub ticks_per_second: u32,
    /// Order book depth on each side.
    pub book_depth: usize,
    /// Pause between private events of each kind for each subscribed user.
    pub private_interval_ms: u64,
    /// Pause between system notices, random in [min, max] milliseconds.
    pub system_interval_ms: [u64; 2],
    /// Bars of every timeframe (1m to 1W) generated for each symbol the
    /// store has no bars of, at start, so history answers at once.
    pub backfill_bars: usize,
    /// How often the in-progress candle is published.
    pub candle_publish_ms: u64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            seed: 42,
            symbols: [
                "AAPL", "GOOGL", "MSFT", "TSLA", "AMZN", "NVDA", "META", "BTC/USDT", "USDCOP",
                "USDBRL",
            ]
            .map(String::from)
            .to_vec(),
            tick_interval_ms: [500, 2000],
            ticks_per_second: 0,
            book_depth: 10,
            private_interval_ms: 2000,
            system_interval_ms: [30_000, 60_000],
            backfill_bars: 300,
            candle_publish_ms: 5000,
        }
    }
}

impl SimulatorConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.tick_interval_ms[0] == 0 || self.tick_interval_ms[0] > self.tick_interval_ms[1] {
            return Err("simulator.tick_interval_ms must be [min, max] with 0 < min <= max".into());
        }
        if self.system_interval_ms[0] == 0
            || self.system_interval_ms[0] > self.system_interval_ms[1]
        {
            return Err(
                "simulator.system_interval_ms must be [min, max] with 0 < min <= max".into(),
            );
        }
        if self.symbols.is_empty() && self.enabled {
            return Err("simulator.symbols must name at least one symbol".into());
        }
        if self.backfill_bars == 1 {
            return Err("simulator.backfill_bars must be 0 (off) or at least 2".into());
        }
        if self.private_interval_ms == 0 || self.candle_publish_ms == 0 || self.book_depth == 0 {
            return Err("simulator intervals and book_depth must be positive".into());
        }
        Ok(())
    }
}
