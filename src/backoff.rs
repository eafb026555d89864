//! The one retry schedule: exponential from a first delay up to a cap,
//! optionally with jitter, started over by `reset` after a success.
//!
//! Every reconnect or retry loop (the Redis broker, the store writer, the
//! upstream stream, the orchestrator's ERROR state) takes its pauses from a
//! [`Backoff`], each with its own configured bounds. The doubling and the
//! jitter come from `backon`'s exponential backoff (see ARCHITECTURE.md,
//! dependencies); this wrapper fixes what tickgate needs of it: it never
//! ends, it can be reset, and with jitter every delay stays within the
//! bounds.
//!
//! Jitter is "equal jitter": the `n`-th delay is drawn in `[d/2, d]` where
//! `d = min(first * 2^n, cap)`, so that instances that lost the same server
//! at the same moment do not come back in step, and no delay exceeds `cap`.
//! (backon's own jitter adds up to one more delay on top; halving the bounds
//! it is given turns that into `[d/2, d]`.)

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// An exponential backoff with a cap: `first`, `2 * first`, `4 * first`,
/// ... up to `cap`, then `cap` for ever, until `reset`.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    cap: Duration,
    schedule: ExponentialBackoff,
}

impl Backoff {
    /// Delays from `first` doubling up to `cap`, each drawn in `[d/2, d]`
    /// (jitter). A `cap` below `first` is taken as `first`.
    pub fn new(first: Duration, cap: Duration) -> Self {
        Self::build(first / 2, cap.max(first) / 2, true, cap.max(first))
    }

    /// Delays of exactly `first`, `2 * first`, ... up to `cap`: for a
    /// schedule that must be predictable (and for tests).
    pub fn without_jitter(first: Duration, cap: Duration) -> Self {
        Self::build(first, cap.max(first), false, cap.max(first))
    }

    /// From milliseconds, as the configuration gives them.
    pub fn from_millis(first: u64, cap: u64) -> Self {
        Self::new(Duration::from_millis(first), Duration::from_millis(cap))
    }

    fn build(min: Duration, max: Duration, jitter: bool, cap: Duration) -> Self {
        let builder = ExponentialBuilder::new()
            .with_factor(2.0)
            .with_min_delay(min)
            .with_max_delay(max)
            .without_max_times();
        let builder = if jitter {
            builder.with_jitter()
        } else {
            builder
        };
        Self {
            builder,
            cap,
            schedule: builder.build(),
        }
    }

    /// The pause before the next attempt; each call moves one step along
    /// the schedule.
    pub fn next_delay(&mut self) -> Duration {
        // Without a limit on attempts the schedule never ends; `cap` stands
        // in should it ever.
        self.schedule.next().unwrap_or(self.cap).min(self.cap)
    }

    /// Starts the schedule over (after a success).
    pub fn reset(&mut self) {
        self.schedule = self.builder.build();
    }

    /// The largest delay this schedule gives.
    pub fn cap(&self) -> Duration {
        self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// backon computes in `f32` seconds: allow its rounding (well below a
    /// microsecond at these sizes).
    fn near(got: Duration, want: Duration) -> bool {
        got.abs_diff(want) < Duration::from_micros(1)
    }

    #[test]
    fn doubles_up_to_the_cap_and_stays_there() {
        let mut backoff = Backoff::without_jitter(100 * MS, 5000 * MS);
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        let want = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000];
        for (got, want) in delays.iter().zip(want) {
            assert!(near(*got, want * MS), "{delays:?}");
        }
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        assert!(delays.iter().all(|d| *d <= backoff.cap()));
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::without_jitter(300 * MS, 600 * MS);
        assert!(near(backoff.next_delay(), 300 * MS));
        assert!(near(backoff.next_delay(), 600 * MS));
        assert!(near(backoff.next_delay(), 600 * MS));
        backoff.reset();
        assert!(near(backoff.next_delay(), 300 * MS), "reset: first again");
        assert!(near(backoff.next_delay(), 600 * MS));
    }

    #[test]
    fn jitter_stays_between_half_and_the_full_delay() {
        for _ in 0..50 {
            let mut backoff = Backoff::new(1000 * MS, 30_000 * MS);
            let mut full = 1000 * MS;
            for _ in 0..12 {
                let delay = backoff.next_delay();
                assert!(
                    delay + Duration::from_micros(1) >= full / 2 && delay <= full,
                    "{delay:?} outside [{:?}, {full:?}]",
                    full / 2
                );
                full = (full * 2).min(30_000 * MS);
            }
            backoff.reset();
            let first = backoff.next_delay();
            assert!(first <= 1000 * MS && first + MS >= 500 * MS, "{first:?}");
        }
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let mut backoff = Backoff::new(1000 * MS, 1000 * MS);
        let delays: Vec<Duration> = (0..32).map(|_| backoff.next_delay()).collect();
        let first = delays[0];
        assert!(
            delays.iter().any(|d| d.abs_diff(first) > MS),
            "all delays equal: {delays:?}"
        );
    }

    #[test]
    fn a_cap_below_the_first_delay_is_the_first_delay() {
        let mut backoff = Backoff::without_jitter(500 * MS, 100 * MS);
        assert!(near(backoff.next_delay(), 500 * MS));
        assert!(near(backoff.next_delay(), 500 * MS));
    }
}
