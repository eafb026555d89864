//! The built-in simulator, the embedded default source: random-walk prices
//! with a bid/ask spread, an order book, trades, system notices, and account,
//! position, order and notification events for every user subscribed to a
//! private channel.
//!
//! Deterministic given the seed: each symbol and each user draws from its own
//! generator seeded from (seed, name), so the n-th tick of AAPL has the same
//! price in every run whatever the timing. Timestamps come from the
//! gateway's clock (`Ingest::now`), so they differ unless it is frozen.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use rand::{Rng, SeedableRng, rngs::SmallRng};
use tokio_util::sync::CancellationToken;

use super::Ingest;
use crate::{
    config::SimulatorConfig,
    event::{
        AccountUpdate, Book, BookUpdate, Candle, Levels, Notification, OrderUpdate, Payload,
        PositionUpdate, Symbol, SystemNotice, Tick, Trade, UserId,
    },
    hub::Hub,
    market::candles::{Bar, Resolution, aggregate},
    spec::messages::{Channel, NotificationLevel, OrderStatus, OrderType, Side, SystemState},
    store::{BarRow, Store, StoreError},
};

/// The source name on every simulated tick.
pub const SOURCE: &str = "simulator";

/// Starts the simulator's tasks on `tasks`; they stop with `shutdown`.
///
/// # Errors
/// A configured symbol that is not a valid symbol.
pub fn spawn(
    config: &SimulatorConfig,
    ingest: Ingest,
    hub: Arc<Hub>,
    tasks: &tokio_util::task::TaskTracker,
    shutdown: CancellationToken,
) -> Result<(), crate::hub::InvalidSymbol> {
    let mut markets = Vec::new();
    for name in &config.symbols {
        let symbol = ingest.symbol(name)?;
        markets.push(Market::new(symbol, config));
    }
    if config.ticks_per_second > 0 {
        tasks.spawn(run_load(
            markets,
            config.ticks_per_second,
            ingest.clone(),
            shutdown.clone(),
        ));
    } else {
        for market in markets {
            tasks.spawn(run_symbol(
                market,
                config.tick_interval_ms,
                ingest.clone(),
                shutdown.clone(),
            ));
        }
    }
    tasks.spawn(run_system(config.clone(), ingest.clone(), shutdown.clone()));
    tasks.spawn(run_private(config.clone(), ingest, hub, shutdown));
    Ok(())
}

/// Writes synthetic history for every configured symbol the store has no
/// bars of, so every timeframe answers history at once on a first start.
/// Returns the symbols backfilled.
///
/// # Errors
/// An invalid symbol, or the store failing.
pub async fn backfill(
    config: &SimulatorConfig,
    hub: &Hub,
    store: &Store,
    now: jiff::Timestamp,
) -> Result<Vec<Symbol>, BackfillError> {
    let mut done = Vec::new();
    if config.backfill_bars == 0 {
        return Ok(done);
    }
    for name in &config.symbols {
        let symbol = hub.symbols().insert(name)?;
        if store.has_bars(&symbol).await? {
            continue;
        }
        let market = Market::new(symbol.clone(), config);
        let rows = synthetic_history(&market, config, now);
        store.write(&[], &rows, &[]).await?;
        done.push(symbol);
    }
    Ok(done)
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Symbol(#[from] crate::hub::InvalidSymbol),
    #[error("backfill: {0}")]
    Store(#[from] StoreError),
}

/// `bars` bars of every resolution ending where the current minute starts,
/// the last close being the market's starting price, so live ticks continue
/// the chart.
///
/// The walk is generated backwards in units that grow with age: 1-minute
/// units for the newest `bars` minutes, then 5-minute units back to
/// `bars` x 5 minutes, and so on up to weekly units; each region's start is
/// aligned to the next unit size, so units tile time. A bar of resolution R
/// is the aggregate of the units no longer than R in its period, so every
/// stored bar is exactly the aggregate of the stored bars of any finer
/// resolution that cover its period (older periods have no finer bars).
pub fn synthetic_history(
    market: &Market,
    config: &SimulatorConfig,
    now: jiff::Timestamp,
) -> Vec<BarRow> {
    let bars = config.backfill_bars as i64;
    let end = Resolution::M1.bucket(now.as_second());
    // Region starts, finest first: units of level k cover [starts[k], starts[k-1]).
    let mut starts = [0i64; 7];
    for (k, resolution) in Resolution::ALL.iter().enumerate() {
        let next = Resolution::ALL
            .get(k + 1)
            .copied()
            .unwrap_or(Resolution::W1);
        starts[k] = next.bucket(end - bars * resolution.seconds());
    }
    let mut rng = SmallRng::seed_from_u64(name_seed(
        config.seed,
        &format!("history:{}", market.symbol),
    ));
    // Units newest first, walking back from the starting price.
    let mut units: Vec<(usize, Bar)> = Vec::new();
    let mut close = market.price;
    let mut region_end = end;
    for (k, resolution) in Resolution::ALL.iter().enumerate() {
        let size = resolution.seconds();
        let minutes = (size / 60) as f64;
        let mut time = region_end - size;
        while time >= starts[k] {
            let swing = 0.0005 * minutes.sqrt();
            // A pull back toward the starting price keeps years of weekly
            // bars in a plausible range.
            let pull = (market.price / close - 1.0).clamp(-0.5, 0.5) * 0.2 * swing.min(1.0);
            let open =
                round_cents((close * (1.0 + pull + rng.random_range(-swing..swing))).max(0.01));
            let high = round_cents(open.max(close) * (1.0 + rng.random_range(0.0..swing / 2.0)));
            let low = round_cents(
                (open.min(close) * (1.0 - rng.random_range(0.0..swing / 2.0))).max(0.01),
            );
            let volume = rng.random_range(100..3000u64) * minutes as u64;
            units.push((
                k,
                Bar {
                    time,
                    open,
                    high,
                    low,
                    close,
                    volume,
                },
            ));
            close = open;
            time -= size;
        }
        region_end = starts[k];
    }
    units.reverse();
    let mut rows = Vec::new();
    for (k, resolution) in Resolution::ALL.into_iter().enumerate() {
        let finer: Vec<Candle> = units
            .iter()
            .filter(|(level, _)| *level <= k)
            .map(|(_, bar)| Candle {
                time: jiff::Timestamp::from_second(bar.time).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                open: bar.open,
                high: bar.high,
                low: bar.low,
                close: bar.close,
                volume: bar.volume,
                closed: true,
            })
            .collect();
        rows.extend(aggregate(&finer, resolution).into_iter().map(|bar| BarRow {
            symbol: market.symbol.clone(),
            resolution,
            time: jiff::Timestamp::from_second(bar.time).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            open: bar.open,
            high: bar.high,
            low: bar.low,
            close: bar.close,
            volume: i64::try_from(bar.volume).unwrap_or(i64::MAX),
        }));
    }
    rows
}

/// A stable 64-bit hash of a name (FNV-1a), to derive per-name seeds.
fn name_seed(seed: u64, name: &str) -> u64 {
    name.bytes()
        .fold(0xcbf2_9ce4_8422_2325 ^ seed, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

fn round_cents(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// The simulated market of one symbol.
pub struct Market {
    symbol: Symbol,
    rng: SmallRng,
    price: f64,
    reference: f64,
    high: f64,
    low: f64,
    volume: u64,
    trade_id: u64,
    depth: usize,
    book: Arc<Book>,
}

impl Market {
    pub fn new(symbol: Symbol, config: &SimulatorConfig) -> Self {
        let mut rng = SmallRng::seed_from_u64(name_seed(config.seed, &symbol));
        let price = round_cents(match &*symbol {
            "AAPL" => 150.0,
            "GOOGL" => 140.0,
            "MSFT" => 330.0,
            "TSLA" => 250.0,
            "AMZN" => 130.0,
            "NVDA" => 450.0,
            "META" => 300.0,
            "BTC/USDT" => 67_000.0,
            "USDCOP" => 4_000.0,
            "USDBRL" => 5.0,
            _ => rng.random_range(10.0..500.0),
        });
        Self {
            symbol,
            rng,
            price,
            reference: price,
            high: price,
            low: price,
            volume: 0,
            trade_id: 0,
            depth: config.book_depth,
            book: Arc::new(Book::default()),
        }
    }

    /// One step of the walk: a tick, the trade behind it, and the book change.
    pub fn step(&mut self, ingest: &Ingest, at: jiff::Timestamp) {
        let drift = self.rng.random_range(-0.002..0.002);
        self.price = round_cents((self.price * (1.0 + drift)).max(0.01));
        let spread = round_cents((self.price * 0.0004).max(0.01));
        let bid = round_cents(self.price - spread / 2.0);
        let ask = round_cents(bid + spread);
        let size = self.rng.random_range(1..500u64);
        self.volume += size;
        self.trade_id += 1;
        self.high = self.high.max(self.price);
        self.low = self.low.min(self.price);
        let change = round_cents(self.price - self.reference);
        let change_percent = (change / self.reference * 10_000.0).round() / 100.0;
        ingest.tick(
            &self.symbol,
            at,
            Tick {
                price: self.price,
                open: self.reference,
                high: self.high,
                low: self.low,
                bid,
                ask,
                size,
                volume: self.volume,
                change,
                change_percent,
                source: SOURCE.into(),
            },
        );
        ingest.trade(
            &self.symbol,
            at,
            Trade {
                trade_id: self.trade_id,
                price: self.price,
                size: size as f64,
                side: if drift >= 0.0 { Side::Buy } else { Side::Sell },
            },
        );
        let book = self.next_book(bid, ask, spread);
        let (bids, asks) = (
            diff(&self.book.bids, &book.bids),
            diff(&self.book.asks, &book.asks),
        );
        self.book = Arc::new(book);
        ingest.book(
            &self.symbol,
            at,
            BookUpdate {
                bids,
                asks,
                book: self.book.clone(),
            },
        );
    }

    fn next_book(&mut self, bid: f64, ask: f64, spread: f64) -> Book {
        let step = spread.max(0.01);
        let mut level = |base: f64, i: usize, sign: f64| {
            (
                round_cents(base + sign * step * i as f64),
                self.rng.random_range(1..50u32) as f64 * 10.0,
            )
        };
        let bids = (0..self.depth).map(|i| level(bid, i, -1.0)).collect();
        let asks = (0..self.depth).map(|i| level(ask, i, 1.0)).collect();
        Book { bids, asks }
    }
}

/// The levels that changed from `old` to `new`; a removed level has size 0.
fn diff(old: &Levels, new: &Levels) -> Levels {
    let cents = |price: f64| (price * 100.0).round() as i64;
    let old_map: BTreeMap<i64, f64> = old.iter().map(|&(p, s)| (cents(p), s)).collect();
    let new_map: BTreeMap<i64, f64> = new.iter().map(|&(p, s)| (cents(p), s)).collect();
    let mut changes: Levels = new
        .iter()
        .filter(|(p, s)| old_map.get(&cents(*p)) != Some(s))
        .copied()
        .collect();
    changes.extend(
        old.iter()
            .filter(|(p, _)| !new_map.contains_key(&cents(*p)))
            .map(|&(p, _)| (p, 0.0)),
    );
    changes
}

async fn run_symbol(
    mut market: Market,
    interval: [u64; 2],
    ingest: Ingest,
    shutdown: CancellationToken,
) {
    loop {
        let pause = market.rng.random_range(interval[0]..=interval[1]);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(pause)) => {}
        }
        market.step(&ingest, ingest.now());
    }
}

/// Load mode: `rate` ticks per second in all, round-robin over the symbols.
async fn run_load(
    mut markets: Vec<Market>,
    rate: u32,
    ingest: Ingest,
    shutdown: CancellationToken,
) {
    let started = tokio::time::Instant::now();
    let mut sent: u64 = 0;
    let mut next = 0;
    let mut timer = tokio::time::interval(Duration::from_millis(1));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = timer.tick() => {}
        }
        let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        let now = ingest.now();
        // Bounded catch-up: after a stall, skip rather than burst unboundedly.
        let batch = due.saturating_sub(sent).min(u64::from(rate));
        for step in 0..batch {
            markets[next].step(&ingest, now);
            next = (next + 1) % markets.len();
            // Let the writers this batch woke run: a woken task waits in this
            // worker's LIFO slot, which no other worker may steal.
            if step % 64 == 63 {
                tokio::task::yield_now().await;
            }
        }
        sent = sent.max(due.saturating_sub(u64::from(rate))) + batch;
    }
}

async fn run_system(config: SimulatorConfig, ingest: Ingest, shutdown: CancellationToken) {
    let mut rng = SmallRng::seed_from_u64(name_seed(config.seed, "system"));
    let [min, max] = config.system_interval_ms;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(rng.random_range(min..=max))) => {}
        }
        let notice = if rng.random_bool(0.8) {
            SystemNotice {
                status: SystemState::Operational,
                message: "all feeds nominal".into(),
            }
        } else {
            SystemNotice {
                status: SystemState::Notice,
                message: "simulated market notice".into(),
            }
        };
        ingest.system(ingest.now(), notice);
    }
}

/// The simulated account of one user.
struct Account {
    rng: SmallRng,
    balance: f64,
    orders: u64,
}

async fn run_private(
    config: SimulatorConfig,
    ingest: Ingest,
    hub: Arc<Hub>,
    shutdown: CancellationToken,
) {
    let mut accounts: HashMap<UserId, Account> = HashMap::new();
    let symbols: Vec<Symbol> = config
        .symbols
        .iter()
        .filter_map(|name| hub.symbols().get(name))
        .collect();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(config.private_interval_ms)) => {}
        }
        let users = hub.private_users();
        accounts.retain(|user, _| users.contains(user));
        let now = ingest.now();
        for user in users {
            let account = accounts.entry(user.clone()).or_insert_with(|| Account {
                rng: SmallRng::seed_from_u64(name_seed(config.seed, &user)),
                balance: 100_000.0,
                orders: 0,
            });
            private_events(account, &user, &symbols, &ingest, now);
        }
    }
}

fn private_events(
    account: &mut Account,
    user: &UserId,
    symbols: &[Symbol],
    ingest: &Ingest,
    now: jiff::Timestamp,
) {
    let rng = &mut account.rng;
    account.balance = round_cents(account.balance + rng.random_range(-250.0..250.0));
    let balance = account.balance;
    ingest.private(
        Channel::Account,
        user,
        now,
        Payload::Account(AccountUpdate {
            currency: "USD".into(),
            balance,
            available: round_cents(balance * 0.8),
            equity: round_cents(balance + rng.random_range(-500.0..500.0)),
        }),
    );
    let Some(symbol) = symbols
        .get(rng.random_range(0..symbols.len().max(1)))
        .cloned()
    else {
        return;
    };
    let market_price = round_cents(rng.random_range(50.0..500.0));
    let avg_price = round_cents(market_price * rng.random_range(0.95..1.05));
    let quantity = f64::from(rng.random_range(1..200u32));
    ingest.private(
        Channel::Positions,
        user,
        now,
        Payload::Position(PositionUpdate {
            symbol: symbol.clone(),
            quantity,
            avg_price,
            market_price,
            unrealized_pnl: round_cents((market_price - avg_price) * quantity),
        }),
    );
    account.orders += 1;
    let rng = &mut account.rng;
    let limit = rng.random_bool(0.5);
    let status = [
        OrderStatus::New,
        OrderStatus::PartiallyFilled,
        OrderStatus::Filled,
        OrderStatus::Cancelled,
    ][rng.random_range(0..4)];
    let quantity = f64::from(rng.random_range(1..100u32));
    let filled_quantity = match status {
        OrderStatus::Filled => quantity,
        OrderStatus::PartiallyFilled => (quantity / 2.0).floor(),
        _ => 0.0,
    };
    ingest.private(
        Channel::Orders,
        user,
        now,
        Payload::Order(OrderUpdate {
            order_id: format!("ord-{:06}", account.orders),
            symbol: symbol.clone(),
            side: if rng.random_bool(0.5) {
                Side::Buy
            } else {
                Side::Sell
            },
            order_type: if limit {
                OrderType::Limit
            } else {
                OrderType::Market
            },
            status,
            quantity,
            filled_quantity,
            price: limit.then_some(market_price),
        }),
    );
    let level = [
        NotificationLevel::Info,
        NotificationLevel::Warning,
        NotificationLevel::Alert,
    ][rng.random_range(0..3)];
    ingest.private(
        Channel::Notifications,
        user,
        now,
        Payload::Notification(Notification {
            level,
            title: "Price alert".into(),
            message: format!("{symbol} crossed {market_price:.2}"),
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_prices() {
        let config = SimulatorConfig::default();
        let run = |seed| {
            let config = SimulatorConfig {
                seed,
                ..config.clone()
            };
            let mut market = Market::new("AAPL".into(), &config);
            let hub = Arc::new(Hub::new(&Default::default(), Default::default()));
            let ingest = Ingest::new(
                hub.clone(),
                Arc::new(crate::market::candles::CandleBook::new(
                    hub,
                    crate::clock::Clock::system(),
                )),
                None,
            );
            (0..50)
                .map(|_| {
                    market.step(&ingest, ingest.now());
                    market.price
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn book_diff_marks_removed_levels() {
        let old = vec![(10.0, 5.0), (9.99, 3.0)];
        let new = vec![(10.0, 5.0), (9.98, 4.0)];
        assert_eq!(diff(&old, &new), vec![(9.98, 4.0), (9.99, 0.0)]);
    }
}

#[cfg(test)]
mod history_tests {
    use super::*;

    #[test]
    fn synthetic_history_is_consistent_across_resolutions() {
        let config = SimulatorConfig {
            backfill_bars: 120,
            ..SimulatorConfig::default()
        };
        let market = Market::new("AAPL".into(), &config);
        let now: jiff::Timestamp = "2025-10-15T13:47:12Z".parse().unwrap();
        let rows = synthetic_history(&market, &config, now);
        let of = |resolution: Resolution| -> Vec<&BarRow> {
            rows.iter()
                .filter(|row| row.resolution == resolution)
                .collect()
        };
        for resolution in Resolution::ALL {
            let bars = of(resolution);
            assert!(
                bars.len() >= 120,
                "{}: {} bars",
                resolution.name(),
                bars.len()
            );
            assert!(bars.windows(2).all(|w| w[0].time < w[1].time));
            assert!(
                bars.iter()
                    .all(|b| b.time.as_second() == resolution.bucket(b.time.as_second()))
            );
            assert!(
                bars.iter()
                    .all(|b| b.low <= b.open.min(b.close) && b.high >= b.open.max(b.close))
            );
        }
        let minutes = of(Resolution::M1);
        let last = minutes.last().unwrap();
        assert_eq!(
            last.time.as_second(),
            now.as_second() / 60 * 60 - 60,
            "ends before the current minute"
        );
        assert_eq!(
            last.close, market.price,
            "live ticks continue from the last close"
        );
        // Every coarser bar whose period the finer resolution covers equals
        // the aggregate of the finer bars, exactly.
        for pair in Resolution::ALL.windows(2) {
            let (fine, coarse) = (pair[0], pair[1]);
            let fine_bars = of(fine);
            let first_fine = fine_bars[0].time.as_second();
            let mut checked = 0;
            for bar in of(coarse) {
                let start = bar.time.as_second();
                if start < first_fine {
                    continue;
                }
                let parts: Vec<&&BarRow> = fine_bars
                    .iter()
                    .filter(|b| coarse.bucket(b.time.as_second()) == start)
                    .collect();
                assert_eq!(bar.open, parts[0].open);
                assert_eq!(bar.close, parts[parts.len() - 1].close);
                assert_eq!(
                    bar.high,
                    parts.iter().map(|b| b.high).fold(f64::MIN, f64::max)
                );
                assert_eq!(
                    bar.low,
                    parts.iter().map(|b| b.low).fold(f64::MAX, f64::min)
                );
                assert_eq!(bar.volume, parts.iter().map(|b| b.volume).sum::<i64>());
                checked += 1;
            }
            assert!(checked > 0, "{} vs {}", fine.name(), coarse.name());
        }
    }
}
