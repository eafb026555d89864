//! The batched, bounded writer between the sources and the database.
//!
//! Sources push rows and return at once (one short lock, no I/O): the
//! fan-out never waits for the database. A background task writes what is
//! buffered every `flush` (sooner when a full batch is waiting), each batch
//! in one transaction. While the database is slow or down, rows stay
//! buffered, up to `buffer_rows` per table, and the batch is retried with
//! backoff; beyond the bound new rows are dropped, counted
//! (`tickgate_store_rows_dropped_total{table}`) and logged. Bars are
//! upserts keyed by (symbol, timeframe, start): a newer value of a buffered
//! bar replaces it instead of taking room. `close` writes everything still
//! buffered before it returns.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{BarRow, HealthRow, Store, TickRow};
use crate::{backoff::Backoff, bars::Resolution, event::Symbol};

/// Pauses between retries of a failed batch: 100 ms doubling to 5 s,
/// jittered (instances sharing one PostgreSQL do not retry in step).
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_CAP: Duration = Duration::from_secs(5);

/// The writer's bounds, from `StoreConfig`.
#[derive(Clone, Copy, Debug)]
pub struct WriterLimits {
    pub batch_rows: usize,
    pub buffer_rows: usize,
    pub flush: Duration,
    /// Whether ticks are stored at all.
    pub ticks: bool,
}

pub const TABLES: [&str; 3] = ["realtime_market_data", "market_data", "system_health"];
const TICKS: usize = 0;
const BARS: usize = 1;
const HEALTH: usize = 2;

/// Counters of one writer (also exported as Prometheus metrics).
#[derive(Debug, Default)]
pub struct WriterStats {
    written: [AtomicU64; 3],
    dropped: [AtomicU64; 3],
    failures: AtomicU64,
    batches: AtomicU64,
    largest_batch: AtomicU64,
    down: AtomicBool,
    unlogged_drops: AtomicU64,
}

impl WriterStats {
    /// Rows written to `table` (one of the three tables).
    pub fn written(&self, table: &str) -> u64 {
        Self::index(table).map_or(0, |i| self.written[i].load(Ordering::Relaxed))
    }

    /// Rows of `table` dropped because the buffer was full.
    pub fn dropped(&self, table: &str) -> u64 {
        Self::index(table).map_or(0, |i| self.dropped[i].load(Ordering::Relaxed))
    }

    /// Batches that failed (each is retried).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Batches committed.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Most tick rows one committed batch carried.
    pub fn largest_batch(&self) -> u64 {
        self.largest_batch.load(Ordering::Relaxed)
    }

    /// Whether the last write failed.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    fn index(table: &str) -> Option<usize> {
        TABLES.iter().position(|t| *t == table)
    }
}

type BarKey = (Symbol, Resolution, i64);

#[derive(Default)]
struct Pending {
    ticks: VecDeque<TickRow>,
    bars: HashMap<BarKey, BarRow>,
    health: Vec<HealthRow>,
    /// The batch being written: it counts against the bound, and history
    /// reads see its bars until they are committed.
    in_flight_ticks: usize,
    in_flight_bars: Arc<Vec<BarRow>>,
}

pub struct Writer {
    store: Store,
    limits: WriterLimits,
    pending: Mutex<Pending>,
    wake: Notify,
    closing: AtomicBool,
    migrated: tokio::sync::OnceCell<()>,
    stats: WriterStats,
}

struct Batch {
    ticks: Vec<TickRow>,
    bars: Arc<Vec<BarRow>>,
    health: Vec<HealthRow>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.ticks.is_empty() && self.bars.is_empty() && self.health.is_empty()
    }
}

fn key(bar: &BarRow) -> BarKey {
    (bar.symbol.clone(), bar.resolution, bar.time.as_second())
}

impl Writer {
    pub fn new(store: Store, limits: WriterLimits) -> Arc<Self> {
        Arc::new(Self {
            store,
            limits,
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            closing: AtomicBool::new(false),
            migrated: tokio::sync::OnceCell::new(),
            stats: WriterStats::default(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs the migrations once per process, on the first call that
    /// reaches the database.
    ///
    /// # Errors
    /// The database is unreachable or refuses the DDL.
    pub async fn ensure_migrated(&self) -> Result<(), super::StoreError> {
        self.migrated
            .get_or_try_init(|| self.store.migrate())
            .await
            .map(|_| ())
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Buffers a tick (when ticks are stored); drops and counts it when the
    /// buffer is full.
    pub fn tick(&self, row: TickRow) {
        if !self.limits.ticks {
            return;
        }
        let full_batch = {
            let mut pending = self.pending.lock();
            if pending.ticks.len() + pending.in_flight_ticks >= self.limits.buffer_rows {
                drop(pending);
                self.dropped(TICKS, 1);
                return;
            }
            pending.ticks.push_back(row);
            pending.ticks.len() == self.limits.batch_rows
        };
        if full_batch {
            self.wake.notify_one();
        }
    }

    /// Buffers a bar, replacing a buffered value of the same bar.
    pub fn bar(&self, row: BarRow) {
        let mut pending = self.pending.lock();
        let buffered = pending.bars.len();
        match pending.bars.entry(key(&row)) {
            std::collections::hash_map::Entry::Occupied(mut entry) => {
                entry.insert(row);
            }
            std::collections::hash_map::Entry::Vacant(entry) => {
                if buffered >= self.limits.buffer_rows {
                    drop(pending);
                    self.dropped(BARS, 1);
                    return;
                }
                entry.insert(row);
            }
        }
    }

    /// Buffers a `system_health` row.
    pub fn health(&self, row: HealthRow) {
        let mut pending = self.pending.lock();
        if pending.health.len() >= self.limits.buffer_rows.min(10_000) {
            drop(pending);
            self.dropped(HEALTH, 1);
            return;
        }
        pending.health.push(row);
    }

    /// Bars of `symbol` and `resolution` not yet committed (buffered or
    /// being written), for history reads.
    pub fn unwritten_bars(&self, symbol: &Symbol, resolution: Resolution) -> Vec<BarRow> {
        let pending = self.pending.lock();
        let mut bars: Vec<BarRow> = pending
            .in_flight_bars
            .iter()
            .filter(|bar| &bar.symbol == symbol && bar.resolution == resolution)
            .cloned()
            .collect();
        // Buffered values are newer than the ones in flight.
        for bar in pending.bars.values() {
            if &bar.symbol == symbol && bar.resolution == resolution {
                bars.retain(|old| old.time != bar.time);
                bars.push(bar.clone());
            }
        }
        bars
    }

    /// Rows waiting to be written.
    pub fn buffered(&self) -> usize {
        let pending = self.pending.lock();
        pending.ticks.len()
            + pending.in_flight_ticks
            + pending.bars.len()
            + pending.in_flight_bars.len()
            + pending.health.len()
    }

    /// Asks `run` to write everything buffered and return.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn dropped(&self, table: usize, rows: u64) {
        self.stats.dropped[table].fetch_add(rows, Ordering::Relaxed);
        self.stats.unlogged_drops.fetch_add(rows, Ordering::Relaxed);
        metrics::counter!("tickgate_store_rows_dropped_total", "table" => TABLES[table])
            .increment(rows);
    }

    fn take_batch(&self) -> Batch {
        let mut pending = self.pending.lock();
        let count = pending.ticks.len().min(self.limits.batch_rows);
        let ticks: Vec<TickRow> = pending.ticks.drain(..count).collect();
        pending.in_flight_ticks = ticks.len();
        let bars: Arc<Vec<BarRow>> = Arc::new(pending.bars.drain().map(|(_, bar)| bar).collect());
        pending.in_flight_bars = bars.clone();
        let health = std::mem::take(&mut pending.health);
        metrics::gauge!("tickgate_store_buffered_rows")
            .set((pending.ticks.len() + pending.bars.len() + ticks.len() + bars.len()) as f64);
        Batch {
            ticks,
            bars,
            health,
        }
    }

    fn committed(&self, batch: &Batch) {
        let mut pending = self.pending.lock();
        pending.in_flight_ticks = 0;
        pending.in_flight_bars = Arc::default();
        drop(pending);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .largest_batch
            .fetch_max(batch.ticks.len() as u64, Ordering::Relaxed);
        for (table, rows) in [
            (TICKS, batch.ticks.len()),
            (BARS, batch.bars.len()),
            (HEALTH, batch.health.len()),
        ] {
            self.stats.written[table].fetch_add(rows as u64, Ordering::Relaxed);
            metrics::counter!("tickgate_store_rows_written_total", "table" => TABLES[table])
                .increment(rows as u64);
        }
    }

    /// Puts a failed batch back in front of what arrived meanwhile.
    fn requeue(&self, batch: Batch) {
        let mut pending = self.pending.lock();
        pending.in_flight_ticks = 0;
        pending.in_flight_bars = Arc::default();
        for row in batch.ticks.into_iter().rev() {
            pending.ticks.push_front(row);
        }
        for bar in batch.bars.iter() {
            // A bar buffered meanwhile is newer: keep it.
            pending.bars.entry(key(bar)).or_insert_with(|| bar.clone());
        }
        let mut health = batch.health;
        health.append(&mut pending.health);
        pending.health = health;
    }

    /// Writes batches until `close` was called and nothing is left. While
    /// closing, gives up after `grace` of failures, counting what was lost.
    pub async fn run(self: Arc<Self>, grace: Duration) {
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_CAP);
        let mut closing_since: Option<tokio::time::Instant> = None;
        loop {
            let closing = self.closing.load(Ordering::Acquire);
            if closing && closing_since.is_none() {
                closing_since = Some(tokio::time::Instant::now());
            }
            let batch = self.take_batch();
            if batch.is_empty() {
                if closing {
                    return;
                }
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(self.limits.flush) => {}
                }
                continue;
            }
            self.log_drops();
            let written = match self.ensure_migrated().await {
                Ok(()) => {
                    self.store
                        .write(&batch.ticks, &batch.bars, &batch.health)
                        .await
                }
                Err(error) => Err(error),
            };
            match written {
                Ok(()) => {
                    self.committed(&batch);
                    if self.stats.down.swap(false, Ordering::Relaxed) {
                        tracing::info!("database writes resumed");
                    }
                    metrics::gauge!("tickgate_store_up").set(1.0);
                    backoff.reset();
                    // A full batch may be waiting already; otherwise pause
                    // so rows gather into batches.
                    if !closing && self.pending.lock().ticks.len() < self.limits.batch_rows {
                        tokio::select! {
                            () = self.wake.notified() => {}
                            () = tokio::time::sleep(self.limits.flush) => {}
                        }
                    }
                }
                Err(error) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("tickgate_store_write_failures_total").increment(1);
                    metrics::gauge!("tickgate_store_up").set(0.0);
                    if !self.stats.down.swap(true, Ordering::Relaxed) {
                        tracing::warn!(%error, "database write failed; rows stay buffered and the write is retried");
                    } else {
                        tracing::debug!(%error, "database write failed again");
                    }
                    self.requeue(batch);
                    if closing_since.is_some_and(|since| since.elapsed() >= grace) {
                        self.abandon();
                        return;
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// Shutdown could not write what is left: count and log it.
    fn abandon(&self) {
        let mut pending = self.pending.lock();
        let lost = [
            (TICKS, std::mem::take(&mut pending.ticks).len()),
            (BARS, std::mem::take(&mut pending.bars).len()),
            (HEALTH, std::mem::take(&mut pending.health).len()),
        ];
        drop(pending);
        for (table, rows) in lost {
            if rows > 0 {
                self.dropped(table, rows as u64);
                tracing::error!(
                    table = TABLES[table],
                    rows,
                    "database still failing at shutdown; buffered rows were not written"
                );
            }
        }
        self.stats.unlogged_drops.store(0, Ordering::Relaxed);
    }

    fn log_drops(&self) {
        let dropped = self.stats.unlogged_drops.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                buffer_rows = self.limits.buffer_rows,
                "store buffer full; rows dropped (tickgate_store_rows_dropped_total)"
            );
        }
    }
}
