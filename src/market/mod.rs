//! Market structure built from the event stream: candles now; calendars and
//! sessions belong here too.

pub mod candles;

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::candles::{CandleBook, Resolution};

/// Runs the candle timer until `shutdown`: closes finished minutes when the
/// book's clock reaches their end, and publishes in-progress candles every
/// `publish_every` (real time: a publishing rate, not a time of day).
///
/// Minutes end by the clock, whatever its mode: a pinned clock closes them
/// at its own minute boundaries, and a frozen one closes them when it is
/// moved past one.
pub async fn run_candle_timer(
    book: Arc<CandleBook>,
    publish_every: Duration,
    shutdown: CancellationToken,
) {
    let clock = book.clock().clone();
    let mut next_publish = Instant::now() + publish_every;
    loop {
        let minute = Resolution::M1;
        let next_minute =
            jiff::Timestamp::from_second(minute.bucket(clock.now().as_second()) + minute.seconds())
                .unwrap_or(jiff::Timestamp::MAX);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(next_publish) => {}
            () = clock.sleep_until(next_minute) => {}
        }
        let publish = Instant::now() >= next_publish;
        if publish {
            next_publish += publish_every;
        }
        book.flush(clock.now(), publish);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clock::Clock, event::Symbol, hub::Hub};

    fn ts(text: &str) -> jiff::Timestamp {
        text.parse().expect("a timestamp")
    }

    fn book(clock: &Clock) -> Arc<CandleBook> {
        let hub = Arc::new(Hub::new(&Default::default(), Default::default()));
        Arc::new(CandleBook::new(hub, clock.clone()))
    }

    /// Waits (real time, bounded) until `done` holds.
    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A clock started far from the wall clock (in 2031): the timer closes
    /// the minute at the clock's minute boundary, not at the wall clock's.
    #[tokio::test]
    async fn a_pinned_clock_closes_minutes_at_its_own_time() {
        let clock = Clock::starting_at(ts("2031-03-03T09:59:59.700Z"));
        let book = book(&clock);
        let symbol: Symbol = "PIN".into();
        book.on_tick(&symbol, clock.now(), 10.0, 1);
        let open = book
            .open_bar(&symbol, Resolution::M1)
            .expect("a bar opened");
        assert_eq!(open.time, ts("2031-03-03T09:59:00Z").as_second());
        let shutdown = CancellationToken::new();
        let timer = tokio::spawn(run_candle_timer(
            book.clone(),
            Duration::from_secs(3600),
            shutdown.clone(),
        ));
        // The pinned minute ends 0.3 s after the start (real time).
        until("the pinned minute closes", || {
            book.current(&symbol).is_none()
        })
        .await;
        assert!(
            clock.now() >= ts("2031-03-03T10:00:00Z"),
            "closed no earlier than the pinned boundary: {}",
            clock.now()
        );
        let (current, closed) = book.latest(&symbol, Resolution::M1);
        assert_eq!(current, None);
        assert_eq!(
            closed.map(|bar| (bar.time, bar.close, bar.volume)),
            Some((ts("2031-03-03T09:59:00Z").as_second(), 10.0, 1)),
            "the 09:59 bar of the pinned clock closed"
        );
        assert!(
            book.open_bar(&symbol, Resolution::H1).is_none(),
            "the pinned hour ended too"
        );
        assert!(
            book.open_bar(&symbol, Resolution::D1).is_some(),
            "the pinned day goes on"
        );
        shutdown.cancel();
        timer.await.expect("the timer stops");
    }

    /// A frozen clock: nothing closes while it stands still, however long
    /// real time runs; moving it past the minute closes the bar at once.
    #[tokio::test]
    async fn a_frozen_clock_closes_minutes_when_moved() {
        let clock = Clock::frozen(ts("2031-03-03T09:59:30Z"));
        let book = book(&clock);
        let symbol: Symbol = "FRZ".into();
        book.on_tick(&symbol, clock.now(), 10.0, 1);
        let shutdown = CancellationToken::new();
        let timer = tokio::spawn(run_candle_timer(
            book.clone(),
            Duration::from_millis(20),
            shutdown.clone(),
        ));
        // Several publishing rounds pass in real time; the minute stays.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            book.current(&symbol).is_some(),
            "a frozen clock does not end the minute"
        );
        clock.advance(jiff::SignedDuration::from_secs(31));
        until("the minute closes once the clock moves", || {
            book.current(&symbol).is_none()
        })
        .await;
        assert_eq!(
            book.latest(&symbol, Resolution::M1).1.map(|bar| bar.time),
            Some(ts("2031-03-03T09:59:00Z").as_second())
        );
        // A tick at the clock's new time opens the pinned 10:00 minute.
        book.on_tick(&symbol, clock.now(), 11.0, 2);
        assert_eq!(
            book.open_bar(&symbol, Resolution::M1).map(|bar| bar.time),
            Some(ts("2031-03-03T10:00:00Z").as_second())
        );
        shutdown.cancel();
        timer.await.expect("the timer stops");
    }
}
