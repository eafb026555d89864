//! The built-in simulator, the embedded default source: random-walk prices
//! with a bid/ask spread, an order book, trades, system notices, and account,
//! position, order and notification events for every user subscribed to a
//! private channel.
//!
//! Deterministic given the seed: each symbol and each user draws from its own
//! generator seeded from (seed, name), so the n-th tick of AAPL has the same
//! price in every run whatever the timing. Wall-clock timestamps differ.

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
    spec::messages::{Channel, NotificationLevel, OrderStatus, OrderType, Side, SystemState},
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
        let mut market = Market::new(symbol, config);
        market.backfill(&ingest, config.backfill_bars, jiff::Timestamp::now());
        markets.push(market);
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
            _ => rng.random_range(10.0..500.0),
        });
        Self {
            symbol,
            rng,
            price,
            reference: price,
            volume: 0,
            trade_id: 0,
            depth: config.book_depth,
            book: Arc::new(Book::default()),
        }
    }

    /// Writes `bars` closed 1-minute candles ending before `now`'s minute,
    /// walking from the current price; the walk's end becomes the price.
    fn backfill(&mut self, ingest: &Ingest, bars: usize, now: jiff::Timestamp) {
        if bars == 0 {
            return;
        }
        let mut rng = SmallRng::seed_from_u64(self.rng.random());
        let first_minute = (now.as_second().div_euclid(60) - bars as i64) * 60;
        let mut price = self.price;
        let candles: Vec<Candle> = (0..bars)
            .filter_map(|i| {
                let open = price;
                let mut high = open;
                let mut low = open;
                let mut volume = 0;
                for _ in 0..6 {
                    price =
                        round_cents((price * (1.0 + rng.random_range(-0.001..0.001))).max(0.01));
                    high = high.max(price);
                    low = low.min(price);
                    volume += rng.random_range(1..500);
                }
                Some(Candle {
                    time: jiff::Timestamp::from_second(first_minute + i as i64 * 60).ok()?,
                    open,
                    high,
                    low,
                    close: price,
                    volume,
                    closed: true,
                })
            })
            .collect();
        ingest.candles().backfill(&self.symbol, candles);
        self.price = price;
        self.reference = price;
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
        let change = round_cents(self.price - self.reference);
        let change_percent = (change / self.reference * 10_000.0).round() / 100.0;
        ingest.tick(
            &self.symbol,
            at,
            Tick {
                price: self.price,
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
        market.step(&ingest, jiff::Timestamp::now());
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
        let now = jiff::Timestamp::now();
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
        ingest.system(jiff::Timestamp::now(), notice);
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
        let now = jiff::Timestamp::now();
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
                Arc::new(crate::market::candles::CandleBook::new(hub)),
            );
            (0..50)
                .map(|_| {
                    market.step(&ingest, jiff::Timestamp::now());
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
