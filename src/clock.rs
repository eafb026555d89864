//! The one clock the gateway reads the time of day from.
//!
//! It runs in one of three modes: real time plus an offset (the system clock
//! is offset zero), running from a pinned instant at real speed, or frozen
//! until moved. Configuration (`[clock]`) picks the mode, so tests, demos and
//! integrators' CI can put the gateway at any hour (a market open, closing or
//! closed) without touching the machine's clock. Tests move it with `set`
//! and `advance`; `sleep_until` wakes on either.
//!
//! The clock is for the time of day that market rules read. Timeouts,
//! intervals and rate limits keep using tokio's monotonic timers.

use std::{sync::Arc, time::Duration};

use jiff::{SignedDuration, Timestamp};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::config::ClockConfig;

/// A shared clock; cloning is cheap and every clone reads and moves the
/// same time.
#[derive(Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

struct Inner {
    /// `parking_lot`, not tokio's mutex: held for a few instructions, never
    /// across an await.
    mode: Mutex<Mode>,
    /// Woken by `set` and `advance`, so sleepers re-read the time at once.
    moved: Notify,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Wall-clock time plus `offset` (zero: the system clock).
    Offset(SignedDuration),
    /// Read `at` when the monotonic clock read `since`; runs at real speed.
    Running {
        at: Timestamp,
        since: std::time::Instant,
    },
    /// Reads `at` until moved.
    Frozen(Timestamp),
}

/// Why `[clock]` could not be turned into a clock.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error(
        "clock.start_at {value:?} is not an instant ({source}); use RFC 3339 with an offset, e.g. 2026-11-30T12:49:50-05:00"
    )]
    StartAt { value: String, source: jiff::Error },
    #[error("clock.offset_seconds {0} is out of range; use at most 100 years either way")]
    Offset(i64),
    #[error("clock.frozen needs clock.start_at: the instant to stand still at")]
    FrozenWithoutStart,
}

/// Largest `offset_seconds` accepted: 100 years.
const MAX_OFFSET_SECONDS: i64 = 100 * 366 * 86_400;

/// The longest `sleep_until` waits before reading the clock again: a safety
/// net beside the `moved` notification, and what keeps a sleeper on a
/// running clock close to its target however far away it is.
const RECHECK: Duration = Duration::from_secs(1);

impl Clock {
    fn with(mode: Mode) -> Clock {
        Clock {
            inner: Arc::new(Inner {
                mode: Mutex::new(mode),
                moved: Notify::new(),
            }),
        }
    }

    /// Real time.
    pub fn system() -> Clock {
        Clock::with(Mode::Offset(SignedDuration::ZERO))
    }

    /// The clock `[clock]` describes: `start_at` pins the start (standing
    /// still with `frozen`), otherwise real time plus `offset_seconds`.
    ///
    /// # Errors
    /// An unparsable `start_at`, an offset beyond 100 years, or `frozen`
    /// without `start_at`.
    pub fn from_config(config: &ClockConfig) -> Result<Clock, ClockError> {
        let Some(value) = &config.start_at else {
            if config.frozen {
                return Err(ClockError::FrozenWithoutStart);
            }
            if config.offset_seconds.abs() > MAX_OFFSET_SECONDS {
                return Err(ClockError::Offset(config.offset_seconds));
            }
            let by = SignedDuration::from_secs(config.offset_seconds);
            return Ok(if by.is_zero() {
                Clock::system()
            } else {
                Clock::offset(by)
            });
        };
        let at = parse_instant(value).map_err(|source| ClockError::StartAt {
            value: value.clone(),
            source,
        })?;
        if config.offset_seconds != 0 {
            tracing::warn!("clock.offset_seconds is ignored because clock.start_at is set");
        }
        Ok(if config.frozen {
            Clock::frozen(at)
        } else {
            Clock::starting_at(at)
        })
    }

    /// Reads `at` now, then runs forward at real speed.
    pub fn starting_at(at: Timestamp) -> Clock {
        Clock::with(Mode::Running {
            at,
            since: std::time::Instant::now(),
        })
    }

    /// Real time plus `by` (negative: in the past).
    pub fn offset(by: SignedDuration) -> Clock {
        Clock::with(Mode::Offset(by))
    }

    /// Reads `at` until `set` or `advance` moves it.
    pub fn frozen(at: Timestamp) -> Clock {
        Clock::with(Mode::Frozen(at))
    }

    /// The current instant by this clock.
    pub fn now(&self) -> Timestamp {
        let mode = *self.inner.mode.lock();
        match mode {
            Mode::Offset(by) => add(Timestamp::now(), by),
            Mode::Running { at, since } => {
                let elapsed =
                    SignedDuration::try_from(since.elapsed()).unwrap_or(SignedDuration::MAX);
                add(at, elapsed)
            }
            Mode::Frozen(at) => at,
        }
    }

    /// Moves the clock to read `at` now; a running clock keeps running from
    /// there, a frozen one stays frozen there.
    pub fn set(&self, at: Timestamp) {
        {
            let mut mode = self.inner.mode.lock();
            *mode = match *mode {
                Mode::Offset(_) => Mode::Offset(at.duration_since(Timestamp::now())),
                Mode::Running { .. } => Mode::Running {
                    at,
                    since: std::time::Instant::now(),
                },
                Mode::Frozen(_) => Mode::Frozen(at),
            };
        }
        self.inner.moved.notify_waiters();
    }

    /// Moves the clock by `by` (negative: back).
    pub fn advance(&self, by: SignedDuration) {
        {
            let mut mode = self.inner.mode.lock();
            *mode = match *mode {
                Mode::Offset(offset) => Mode::Offset(offset.saturating_add(by)),
                Mode::Running { at, since } => Mode::Running {
                    at: add(at, by),
                    since,
                },
                Mode::Frozen(at) => Mode::Frozen(add(at, by)),
            };
        }
        self.inner.moved.notify_waiters();
    }

    /// Sleeps until the clock reads `at` (returns at once if it already
    /// does). Works in every mode: it wakes when `set` or `advance` moves the
    /// clock, and re-reads it at least once a second.
    pub async fn sleep_until(&self, at: Timestamp) {
        loop {
            // Registered before reading the time, so a move between the read
            // and the wait still wakes this sleeper.
            let moved = self.inner.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            let now = self.now();
            if now >= at {
                return;
            }
            let left = at.duration_since(now).unsigned_abs();
            tokio::select! {
                () = tokio::time::sleep(left.min(RECHECK)) => {}
                () = &mut moved => {}
            }
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock")
            .field("mode", &*self.inner.mode.lock())
            .finish()
    }
}

/// `at + by`, saturating at the ends of jiff's range rather than panicking.
fn add(at: Timestamp, by: SignedDuration) -> Timestamp {
    at.checked_add(by).unwrap_or(if by.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// An instant in RFC 3339 (`2026-11-30T12:49:50-05:00`, `...Z`), optionally
/// with a time zone annotation (`...-05:00[America/Bogota]`), or a zoned
/// datetime without offset (`2026-11-30T12:49:50[America/Bogota]`).
fn parse_instant(value: &str) -> Result<Timestamp, jiff::Error> {
    value.parse::<Timestamp>().or_else(|error| {
        value
            .parse::<jiff::Zoned>()
            .map(|zoned| zoned.timestamp())
            .map_err(|_| error)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(value: &str) -> Timestamp {
        value.parse().expect("valid timestamp")
    }

    fn config(start_at: Option<&str>, offset_seconds: i64, frozen: bool) -> ClockConfig {
        ClockConfig {
            start_at: start_at.map(str::to_owned),
            offset_seconds,
            frozen,
        }
    }

    #[test]
    fn frozen_stands_still_until_set_or_advanced() {
        let at = ts("2026-11-30T17:49:50Z");
        let clock = Clock::frozen(at);
        assert_eq!(clock.now(), at);
        std::thread::yield_now();
        assert_eq!(clock.now(), at);
        clock.advance(SignedDuration::from_secs(10));
        assert_eq!(clock.now(), ts("2026-11-30T17:50:00Z"));
        clock.set(ts("2026-12-01T13:00:00Z"));
        assert_eq!(clock.now(), ts("2026-12-01T13:00:00Z"));
        // A clone is the same clock.
        let other = clock.clone();
        other.advance(SignedDuration::from_secs(-60));
        assert_eq!(clock.now(), ts("2026-12-01T12:59:00Z"));
    }

    #[test]
    fn starting_at_reads_the_pinned_instant_and_runs() {
        let at = ts("2026-11-30T17:49:50Z");
        let clock = Clock::starting_at(at);
        let first = clock.now();
        assert!(first >= at && first < add(at, SignedDuration::from_secs(1)));
        let second = clock.now();
        assert!(second >= first, "runs forward");
        clock.set(ts("2020-01-01T00:00:00Z"));
        let moved = clock.now();
        assert!(moved >= ts("2020-01-01T00:00:00Z") && moved < ts("2020-01-01T00:00:01Z"));
        clock.advance(SignedDuration::from_hours(1));
        assert!(clock.now() >= ts("2020-01-01T01:00:00Z"));
    }

    #[test]
    fn offset_adds_to_real_time() {
        let by = SignedDuration::from_hours(-48);
        let clock = Clock::offset(by);
        let before = Timestamp::now();
        let read = clock.now();
        let after = Timestamp::now();
        assert!(read >= add(before, by) && read <= add(after, by));
        // Set keeps it running: it reads the new instant plus elapsed time.
        clock.set(ts("2030-06-01T12:00:00Z"));
        let read = clock.now();
        assert!(read >= ts("2030-06-01T11:59:59Z") && read < ts("2030-06-01T12:00:01Z"));
    }

    #[test]
    fn system_reads_real_time() {
        let before = Timestamp::now();
        let read = Clock::system().now();
        assert!(read >= before && read <= Timestamp::now());
    }

    #[test]
    fn from_config_picks_the_mode() {
        let frozen =
            Clock::from_config(&config(Some("2026-11-30T12:49:50-05:00"), 0, true)).unwrap();
        assert_eq!(frozen.now(), ts("2026-11-30T17:49:50Z"));
        let running =
            Clock::from_config(&config(Some("2026-11-30T12:49:50-05:00"), 99, false)).unwrap();
        let read = running.now();
        assert!(read >= ts("2026-11-30T17:49:50Z") && read < ts("2026-11-30T17:49:51Z"));
        let zoned = Clock::from_config(&config(
            Some("2026-11-30T12:49:50[America/Bogota]"),
            0,
            true,
        ))
        .unwrap();
        assert_eq!(zoned.now(), ts("2026-11-30T17:49:50Z"));
        let offset = Clock::from_config(&config(None, 86_400, false)).unwrap();
        assert!(offset.now() > add(Timestamp::now(), SignedDuration::from_hours(23)));
        let system = Clock::from_config(&ClockConfig::default()).unwrap();
        assert!(system.now() <= Timestamp::now());
    }

    #[test]
    fn start_at_may_be_quoted_or_a_bare_toml_datetime() {
        use figment::{
            Figment,
            providers::{Format, Serialized, Toml},
        };
        for line in [
            "start_at = 2026-11-30T12:49:50-05:00",
            "start_at = \"2026-11-30T12:49:50-05:00\"",
        ] {
            let config: crate::Config =
                Figment::from(Serialized::defaults(crate::Config::default()))
                    .merge(Toml::string(&format!("[clock]\nfrozen = true\n{line}")))
                    .extract()
                    .unwrap();
            let clock = Clock::from_config(&config.clock).unwrap();
            assert_eq!(clock.now(), ts("2026-11-30T17:49:50Z"), "{line}");
        }
    }

    #[test]
    fn from_config_errors() {
        let error = Clock::from_config(&config(Some("next monday"), 0, false)).unwrap_err();
        assert!(matches!(error, ClockError::StartAt { .. }), "{error}");
        assert!(error.to_string().contains("RFC 3339"), "{error}");
        let error = Clock::from_config(&config(Some("2026-11-30T12:49:50"), 0, false)).unwrap_err();
        assert!(matches!(error, ClockError::StartAt { .. }), "{error}");
        let error = Clock::from_config(&config(None, 0, true)).unwrap_err();
        assert!(matches!(error, ClockError::FrozenWithoutStart), "{error}");
        let error = Clock::from_config(&config(None, i64::MAX, false)).unwrap_err();
        assert!(matches!(error, ClockError::Offset(_)), "{error}");
    }

    /// Polls `future` once with a waker that does nothing.
    fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
        future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }

    #[tokio::test]
    async fn sleep_until_on_a_frozen_clock_returns_after_advance() {
        let clock = Clock::frozen(ts("2026-11-30T17:54:00Z"));
        let mut sleep = std::pin::pin!(clock.sleep_until(ts("2026-11-30T17:55:00Z")));
        assert!(poll_once(sleep.as_mut()).is_pending());
        clock.advance(SignedDuration::from_secs(30));
        assert!(poll_once(sleep.as_mut()).is_pending(), "30 s short");
        clock.advance(SignedDuration::from_secs(30));
        assert!(poll_once(sleep.as_mut()).is_ready());
    }

    #[tokio::test]
    async fn advance_wakes_a_sleeping_task() {
        let clock = Clock::frozen(ts("2026-11-30T17:54:00Z"));
        let (asleep, is_asleep) = tokio::sync::oneshot::channel();
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move {
                let mut sleep = std::pin::pin!(clock.sleep_until(ts("2026-11-30T18:54:00Z")));
                assert!(poll_once(sleep.as_mut()).is_pending());
                let _ = asleep.send(());
                sleep.await;
                clock.now()
            }
        });
        is_asleep.await.unwrap();
        clock.advance(SignedDuration::from_hours(2));
        // The guard only keeps a broken wake-up from hanging the suite.
        let woke_at = tokio::time::timeout(Duration::from_secs(30), sleeper)
            .await
            .expect("advance wakes the sleeper")
            .unwrap();
        assert_eq!(woke_at, ts("2026-11-30T19:54:00Z"));
    }

    #[tokio::test]
    async fn sleep_until_wakes_on_set_and_returns_at_once_when_past() {
        let clock = Clock::frozen(ts("2026-11-30T17:54:00Z"));
        let mut past = std::pin::pin!(clock.sleep_until(ts("2026-11-30T17:00:00Z")));
        assert!(poll_once(past.as_mut()).is_ready());
        let mut sleep = std::pin::pin!(clock.sleep_until(ts("2026-12-01T13:00:00Z")));
        assert!(poll_once(sleep.as_mut()).is_pending());
        clock.set(ts("2026-12-01T12:59:59Z"));
        assert!(poll_once(sleep.as_mut()).is_pending());
        clock.set(ts("2026-12-01T13:00:00Z"));
        assert!(poll_once(sleep.as_mut()).is_ready());
    }
}
