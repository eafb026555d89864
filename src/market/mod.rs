//! Market structure built from the event stream: candles now; calendars and
//! sessions belong here too.

pub mod candles;

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use tokio::time::Instant;

use self::candles::CandleBook;

/// Runs the candle timer until `shutdown`: closes finished minutes on time
/// and publishes in-progress candles every `publish_every`.
pub async fn run_candle_timer(
    book: Arc<CandleBook>,
    publish_every: Duration,
    shutdown: CancellationToken,
) {
    let mut next_publish = Instant::now() + publish_every;
    loop {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let to_next_minute = 60_000 - now_ms.rem_euclid(60_000);
        let next_minute = Instant::now() + Duration::from_millis(to_next_minute.unsigned_abs());
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(next_publish.min(next_minute)) => {}
        }
        let publish = Instant::now() >= next_publish;
        if publish {
            next_publish += publish_every;
        }
        book.flush(jiff::Timestamp::now(), publish);
    }
}
