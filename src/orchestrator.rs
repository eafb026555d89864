//! The collection orchestrator of the USD/COP services (seed 001's states,
//! seed 000's L0 dependency): decides when real-time data of calendar-bound
//! symbols is collected.
//!
//! States: INITIALIZING -> (WAITING_L0 when an L0 ready-signal path is
//! configured) -> CHECKING_DATA -> READY -> ACTIVE while the market is open,
//! MARKET_CLOSED outside its hours, ERROR (left with backoff), SHUTDOWN.
//! Waiting for L0 gives up after `l0_timeout_s` and falls back to the stored
//! history. `force_start` skips the L0 wait (never market hours).
//!
//! It is the `Gate` of `Ingest`: ticks of a symbol with trading hours pass
//! only while the orchestrator is ACTIVE, whatever their source; symbols
//! trading around the clock always pass. `gate()` tells the upstream source
//! when to connect.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use jiff::{SignedDuration, Timestamp};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    backoff::Backoff,
    calendar::{Calendar, Schedule},
    clock::Clock,
    config::OrchestratorConfig,
    event::Symbol,
    market::candles::Resolution,
    sources::Gate,
    store::{HealthRow, Store, Writer},
};

/// The orchestrator's states, as seed 001 names them (the same names in
/// JSON and in the REST documents).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, poem_openapi::Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename = "OrchestratorState", rename_all = "snake_case")]
pub enum State {
    Initializing,
    #[oai(rename = "waiting_l0")]
    WaitingL0,
    CheckingData,
    Ready,
    Active,
    MarketClosed,
    Error,
    Shutdown,
}

/// The L0 dependency as the REST endpoints report it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct L0Status {
    /// Whether the ready signal was seen (with `ready: true`).
    pub completed: bool,
    /// The signal's own `timestamp`, or when it was seen.
    pub completed_at: Option<Timestamp>,
    /// When the wait began.
    pub wait_started: Option<Timestamp>,
    /// Seconds waited (until completion, fallback or now).
    pub wait_duration_seconds: i64,
    /// The wait timed out (or was skipped by force-start): history only.
    pub fallback_mode: bool,
    /// Whether an L0 signal path is configured at all.
    pub configured: bool,
    /// Whether the signal file exists now.
    pub signal_exists: bool,
}

/// The stored history's quality, from the last check.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DataStatus {
    pub checked_at: Option<Timestamp>,
    pub newest_bar: Option<Timestamp>,
    pub freshness_hours: Option<f64>,
    pub completeness_percentage: Option<f64>,
    pub is_fresh: bool,
    pub is_complete: bool,
    pub historical_data_available: bool,
    /// 5-minute bars of the last 24 hours found.
    pub bars_24h: u64,
}

/// A force-start, as recorded.
#[derive(Clone, Debug, Serialize)]
pub struct ForceStart {
    pub reason: String,
    pub requested_by: String,
    pub started_at: Timestamp,
}

/// Real-time collection.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Collection {
    pub active: bool,
    pub started_at: Option<Timestamp>,
    pub data_points_collected: u64,
    pub last_update: Option<Timestamp>,
}

/// Everything the REST endpoints report, at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub state: State,
    pub since: Timestamp,
    pub l0: L0Status,
    pub data: DataStatus,
    pub forced: Option<ForceStart>,
    pub collection: Collection,
    pub error: Option<String>,
}

/// Why a force-start was refused.
#[derive(Debug, thiserror::Error)]
pub enum ForceStartError {
    #[error("the market is closed; real-time collection cannot start before {next_open}")]
    MarketClosed { next_open: String },
}

/// What a force-start did.
#[derive(Debug, Clone)]
pub enum ForceStarted {
    Started(ForceStart),
    /// Collection was already running: the original start.
    AlreadyStarted {
        started_at: Timestamp,
    },
}

struct Inner {
    state: State,
    since: Timestamp,
    l0: L0Status,
    data: DataStatus,
    forced: Option<ForceStart>,
    started_at: Option<Timestamp>,
    error: Option<String>,
    /// The pause before leaving ERROR: grows while failures repeat, starts
    /// over once collecting works again.
    backoff: Backoff,
    /// Real time (backoffs are durations, not market time).
    retry_at: Option<std::time::Instant>,
}

pub struct Orchestrator {
    config: OrchestratorConfig,
    symbol: Symbol,
    clock: Clock,
    calendar: Arc<Calendar>,
    inner: Mutex<Inner>,
    collecting: AtomicBool,
    gate: watch::Sender<bool>,
    data_points: AtomicU64,
    last_update: Mutex<Option<Timestamp>>,
    wake: tokio::sync::Notify,
    /// The upstream source, when one runs: its connection drives ERROR.
    upstream: Mutex<Option<Arc<crate::upstream::UpstreamStatus>>>,
    /// Since when the running upstream source has been disconnected.
    upstream_down_since: Mutex<Option<std::time::Instant>>,
}

impl Orchestrator {
    pub fn new(config: OrchestratorConfig, clock: Clock, calendar: Arc<Calendar>) -> Arc<Self> {
        let now = clock.now();
        let symbol: Symbol = config.symbol.to_ascii_uppercase().into();
        Arc::new(Self {
            inner: Mutex::new(Inner {
                state: State::Initializing,
                since: now,
                l0: L0Status {
                    configured: config.l0_signal_path.is_some(),
                    ..L0Status::default()
                },
                data: DataStatus::default(),
                forced: None,
                started_at: None,
                error: None,
                backoff: error_backoff(&config),
                retry_at: None,
            }),
            config,
            symbol,
            clock,
            calendar,
            collecting: AtomicBool::new(false),
            gate: watch::channel(false).0,
            data_points: AtomicU64::new(0),
            last_update: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            upstream: Mutex::new(None),
            upstream_down_since: Mutex::new(None),
        })
    }

    /// Follows `status` of the upstream source that runs while collecting:
    /// disconnected for longer than `upstream_grace_ms` means ERROR.
    pub fn watch_upstream(&self, status: Arc<crate::upstream::UpstreamStatus>) {
        *self.upstream.lock() = Some(status);
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// The symbol whose market drives the orchestrator.
    pub fn symbol(&self) -> &Symbol {
        &self.symbol
    }

    /// The schedule of the orchestrated symbol.
    pub fn schedule(&self) -> &Schedule {
        self.calendar.schedule(&self.symbol)
    }

    pub fn state(&self) -> State {
        self.inner.lock().state
    }

    /// True while real-time collection runs (the upstream source connects).
    pub fn gate(&self) -> watch::Receiver<bool> {
        self.gate.subscribe()
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = self.inner.lock();
        let mut l0 = inner.l0.clone();
        if let Some(started) = l0.wait_started
            && !l0.completed
            && !l0.fallback_mode
        {
            l0.wait_duration_seconds = self.clock.now().duration_since(started).as_secs();
        }
        if let Some(path) = &self.config.l0_signal_path {
            l0.signal_exists = path.exists();
        }
        Snapshot {
            state: inner.state,
            since: inner.since,
            l0,
            data: inner.data.clone(),
            forced: inner.forced.clone(),
            collection: Collection {
                active: self.collecting.load(Ordering::Relaxed),
                started_at: inner.started_at,
                data_points_collected: self.data_points.load(Ordering::Relaxed),
                last_update: *self.last_update.lock(),
            },
            error: inner.error.clone(),
        }
    }

    /// Starts collection without the L0 dependency. Market hours still
    /// apply; a repeat call while collecting answers the original start.
    ///
    /// # Errors
    /// The market is closed.
    pub fn force_start(
        &self,
        reason: &str,
        requested_by: &str,
        writer: &Writer,
    ) -> Result<ForceStarted, ForceStartError> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        if let Some(forced) = &inner.forced
            && inner.state == State::Active
        {
            return Ok(ForceStarted::AlreadyStarted {
                started_at: forced.started_at,
            });
        }
        if inner.state == State::Active
            && let Some(started_at) = inner.started_at
        {
            return Ok(ForceStarted::AlreadyStarted { started_at });
        }
        if !self.schedule().is_open(now) {
            let next_open = self
                .schedule()
                .next_open(now)
                .map(|z| z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
                .unwrap_or_else(|| "the next session".into());
            return Err(ForceStartError::MarketClosed { next_open });
        }
        let forced = ForceStart {
            reason: reason.to_owned(),
            requested_by: requested_by.to_owned(),
            started_at: now,
        };
        inner.forced = Some(forced.clone());
        if inner.l0.configured && !inner.l0.completed {
            inner.l0.fallback_mode = true;
        }
        self.enter(&mut inner, State::Active, now);
        drop(inner);
        tracing::warn!(
            reason,
            requested_by,
            "force-start: real-time collection started without the L0 dependency"
        );
        writer.health(HealthRow {
            service_name: "rt-orchestrator".into(),
            status: "force_started".into(),
            details: serde_json::json!({
                "reason": reason,
                "requested_by": requested_by,
                "started_at": now.to_string(),
                "warning": "This may result in data inconsistencies",
            }),
            response_time_ms: None,
            error_message: None,
        });
        self.wake.notify_one();
        Ok(ForceStarted::Started(forced))
    }

    /// Enters ERROR (the upstream failed, say); left with backoff.
    pub fn fail(&self, error: impl Into<String>) {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        inner.error = Some(error.into());
        let pause = inner.backoff.next_delay();
        inner.retry_at = Some(std::time::Instant::now() + pause);
        self.enter(&mut inner, State::Error, now);
        drop(inner);
        self.wake.notify_one();
    }

    fn enter(&self, inner: &mut Inner, state: State, now: Timestamp) {
        if inner.state == state {
            return;
        }
        tracing::info!(from = ?inner.state, to = ?state, "orchestrator state");
        inner.state = state;
        inner.since = now;
        let active = state == State::Active;
        if active && inner.started_at.is_none() {
            inner.started_at = Some(now);
        }
        if !active {
            inner.started_at = None;
            if state != State::Error {
                inner.forced = None;
            }
        }
        if state != State::Error {
            inner.retry_at = None;
        }
        self.collecting.store(active, Ordering::Relaxed);
        self.gate.send_replace(active);
    }

    /// Runs the state machine until shutdown.
    pub async fn run(self: Arc<Self>, store: Store, shutdown: CancellationToken) {
        let every = Duration::from_millis(self.config.check_ms.max(10));
        loop {
            // Transitions follow each other at once until the state settles.
            for _ in 0..8 {
                let before = self.state();
                self.step(&store).await;
                if self.state() == before {
                    break;
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(every) => {}
                () = self.wake.notified() => {}
            }
        }
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        self.enter(&mut inner, State::Shutdown, now);
    }

    /// One evaluation of the state machine.
    pub async fn step(&self, store: &Store) {
        let now = self.clock.now();
        let state = self.state();
        match state {
            State::Initializing => {
                let mut inner = self.inner.lock();
                let next = match inner.l0.configured {
                    true => {
                        inner.l0.wait_started = Some(now);
                        State::WaitingL0
                    }
                    false => State::CheckingData,
                };
                self.enter(&mut inner, next, now);
            }
            State::WaitingL0 => self.check_l0(now),
            State::CheckingData => {
                let data = self.check_data(store, now).await;
                let mut inner = self.inner.lock();
                let good = data.is_fresh && data.is_complete;
                inner.data = data;
                if good || !inner.l0.configured || inner.l0.fallback_mode {
                    if !good {
                        tracing::warn!(
                            "stored history is stale or incomplete; collecting anyway (no L0 dependency, or fallback)"
                        );
                    }
                    self.enter(&mut inner, State::Ready, now);
                } else {
                    // L0 must bring the history up to date first.
                    inner.l0.completed = false;
                    self.enter(&mut inner, State::WaitingL0, now);
                }
            }
            State::Ready | State::MarketClosed | State::Active => {
                if state == State::Active
                    && let Some(error) = self.upstream_failure()
                {
                    self.fail(error);
                    return;
                }
                let open = self.schedule().is_open(now);
                let mut inner = self.inner.lock();
                let next = match (open, state) {
                    (true, _) => State::Active,
                    (false, _) => State::MarketClosed,
                };
                self.enter(&mut inner, next, now);
            }
            State::Error => {
                let mut inner = self.inner.lock();
                if inner
                    .retry_at
                    .is_none_or(|at| std::time::Instant::now() >= at)
                {
                    inner.error = None;
                    self.enter(&mut inner, State::CheckingData, now);
                }
            }
            State::Shutdown => {}
        }
    }

    /// Why collection failed: the upstream source has been disconnected for
    /// longer than the grace period.
    fn upstream_failure(&self) -> Option<String> {
        let upstream = self.upstream.lock().clone()?;
        let mut since = self.upstream_down_since.lock();
        if upstream.connected() {
            *since = None;
            // Collecting again: the next failure starts the backoff over.
            self.inner.lock().backoff.reset();
            return None;
        }
        let down = *since.get_or_insert_with(std::time::Instant::now);
        if down.elapsed() < Duration::from_millis(self.config.upstream_grace_ms) {
            return None;
        }
        *since = None;
        let reason = upstream
            .snapshot()
            .last_error
            .unwrap_or_else(|| "no connection".into());
        Some(format!("the upstream provider is unreachable: {reason}"))
    }

    fn check_l0(&self, now: Timestamp) {
        let Some(path) = &self.config.l0_signal_path else {
            return;
        };
        let signal = read_signal(path);
        let mut inner = self.inner.lock();
        let started = *inner.l0.wait_started.get_or_insert(now);
        match signal {
            Some(at) => {
                inner.l0.completed = true;
                inner.l0.completed_at = Some(at.unwrap_or(now));
                inner.l0.wait_duration_seconds = now.duration_since(started).as_secs();
                self.enter(&mut inner, State::CheckingData, now);
            }
            None => {
                let waited = now.duration_since(started);
                if waited.as_secs() >= i64::try_from(self.config.l0_timeout_s).unwrap_or(i64::MAX) {
                    tracing::warn!(
                        waited_s = waited.as_secs(),
                        "no L0 ready signal in time: fallback to the stored history"
                    );
                    inner.l0.fallback_mode = true;
                    inner.l0.wait_duration_seconds = waited.as_secs();
                    self.enter(&mut inner, State::CheckingData, now);
                }
            }
        }
    }

    /// Freshness and completeness of the stored 5-minute bars.
    async fn check_data(&self, store: &Store, now: Timestamp) -> DataStatus {
        let day = SignedDuration::from_hours(24);
        let from = now - day;
        let bars = match store
            .bars(&self.symbol, Resolution::M5, from, now, 24 * 12 + 1)
            .await
        {
            Ok(bars) => bars,
            Err(error) => {
                tracing::warn!(%error, "cannot read the stored history");
                Vec::new()
            }
        };
        let newest = bars.last().map(|bar| bar.time);
        let freshness_hours = newest.map(|t| now.duration_since(t).as_secs_f64() / 3600.0);
        // 5-minute slots of the last 24 hours inside the market's sessions.
        let schedule = self.schedule();
        let step = SignedDuration::from_mins(5);
        let mut slot = Timestamp::from_second(from.as_second() - from.as_second().rem_euclid(300))
            .unwrap_or(from);
        let (mut expected, mut present) = (0u32, 0u32);
        while slot + step <= now {
            if schedule.is_open(slot) {
                expected += 1;
                if bars.iter().any(|bar| bar.time == slot) {
                    present += 1;
                }
            }
            slot += step;
        }
        let completeness = match expected {
            0 => 100.0,
            _ => f64::from(present) * 100.0 / f64::from(expected),
        };
        DataStatus {
            checked_at: Some(now),
            newest_bar: newest,
            freshness_hours,
            completeness_percentage: Some((completeness * 10.0).round() / 10.0),
            is_fresh: freshness_hours.is_some_and(|h| h < self.config.freshness_hours),
            is_complete: completeness > self.config.completeness_percent
                || (expected == 0 && newest.is_some()),
            historical_data_available: newest.is_some(),
            bars_24h: bars.len() as u64,
        }
    }
}

/// The L0 ready signal: `Some(timestamp)` when the file holds JSON with
/// `ready: true` (its `timestamp`, if it has a valid one), None otherwise.
/// `orchestrator.error_backoff_ms`: the first and the longest pause, without
/// jitter (one state machine per process; the documented pauses are exact).
fn error_backoff(config: &OrchestratorConfig) -> Backoff {
    let [first, cap] = config.error_backoff_ms;
    Backoff::without_jitter(Duration::from_millis(first), Duration::from_millis(cap))
}

fn read_signal(path: &Path) -> Option<Option<Timestamp>> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(error) => {
            tracing::warn!(%error, path = %path.display(), "the L0 ready signal is not JSON");
            return None;
        }
    };
    if value.get("ready").and_then(serde_json::Value::as_bool) != Some(true) {
        return None;
    }
    let at = value
        .get("timestamp")
        .and_then(serde_json::Value::as_str)
        .and_then(|t| t.parse::<Timestamp>().ok());
    Some(at)
}

impl Gate for Orchestrator {
    fn admit(&self, symbol: &Symbol, at: Timestamp) -> bool {
        let schedule = self.calendar.schedule(symbol);
        if matches!(schedule, Schedule::AlwaysOpen) {
            return true;
        }
        if !self.collecting.load(Ordering::Relaxed) || !schedule.is_open(self.clock.now()) {
            return false;
        }
        if **symbol == *self.symbol {
            self.data_points.fetch_add(1, Ordering::Relaxed);
            *self.last_update.lock() = Some(at);
        }
        true
    }

    fn allows(&self, symbol: &Symbol) -> bool {
        let schedule = self.calendar.schedule(symbol);
        matches!(schedule, Schedule::AlwaysOpen)
            || (self.collecting.load(Ordering::Relaxed) && schedule.is_open(self.clock.now()))
    }
}
