//! The quote feed: what a provider message (a polled `/quote`, a stream
//! price event) says about a symbol (`Observed`), and the tick it makes once
//! normalised against the symbol's session since the gate opened (`Feed`).
//! Pure: no I/O, no clock.

use super::twelvedata::{PriceEvent, Quote};
use crate::event::{Symbol, Tick};

/// The spread put around a price when the provider gives no bid and ask:
/// 4 basis points, as the simulator does.
const SPREAD: f64 = 0.0004;

/// One symbol: its names and the session built from its quotes.
pub(super) struct Feed {
    pub(super) symbol: Symbol,
    pub(super) provider: String,
    pub(super) session: Option<Session>,
}

/// The session's state of one symbol since the gate opened.
#[derive(Clone, Debug)]
pub(super) struct Session {
    open: f64,
    high: f64,
    low: f64,
    reference: f64,
    day_volume: Option<u64>,
    /// The provider's time and price of the last quote, to skip a polled
    /// quote that has not changed.
    last: Option<(i64, f64)>,
}

/// What one provider message says about a symbol.
#[derive(Clone, Debug, Default)]
pub(super) struct Observed {
    pub(super) price: f64,
    pub(super) bid: Option<f64>,
    pub(super) ask: Option<f64>,
    pub(super) open: Option<f64>,
    pub(super) high: Option<f64>,
    pub(super) low: Option<f64>,
    pub(super) reference: Option<f64>,
    pub(super) change: Option<f64>,
    pub(super) change_percent: Option<f64>,
    pub(super) day_volume: Option<f64>,
    /// The provider's time of the quote, when it has one.
    pub(super) stamp: Option<i64>,
}

impl Feed {
    /// A symbol with no session yet.
    pub(super) fn new(symbol: Symbol, provider: String) -> Self {
        Self {
            symbol,
            provider,
            session: None,
        }
    }

    /// The tick `observed` makes, or `None` for an unusable price or a
    /// repeat of the previous quote.
    pub(super) fn tick(&mut self, observed: &Observed, source: &'static str) -> Option<Tick> {
        let price = observed.price;
        if !(price.is_finite() && price > 0.0) {
            return None;
        }
        let session = self.session.get_or_insert_with(|| {
            let open = observed.open.unwrap_or(price);
            Session {
                open,
                high: price,
                low: price,
                reference: observed.reference.unwrap_or(open),
                day_volume: None,
                last: None,
            }
        });
        if let Some(stamp) = observed.stamp {
            if session.last == Some((stamp, price)) {
                return None;
            }
            session.last = Some((stamp, price));
        }
        if let Some(open) = observed.open {
            session.open = open;
        }
        if let Some(reference) = observed.reference.filter(|r| *r > 0.0) {
            session.reference = reference;
        }
        session.high = session.high.max(price).max(observed.high.unwrap_or(price));
        session.low = session.low.min(price).min(observed.low.unwrap_or(price));
        let day_volume = observed
            .day_volume
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| v as u64);
        let size = match (session.day_volume, day_volume) {
            (Some(before), Some(now)) => now.saturating_sub(before),
            _ => 0,
        };
        if day_volume.is_some() {
            session.day_volume = day_volume;
        }
        let (bid, ask) = match (observed.bid, observed.ask) {
            (Some(bid), Some(ask)) if bid.is_finite() && ask.is_finite() && bid <= ask => {
                (bid, ask)
            }
            _ => (price * (1.0 - SPREAD / 2.0), price * (1.0 + SPREAD / 2.0)),
        };
        let change = observed.change.unwrap_or(price - session.reference);
        let change_percent = observed
            .change_percent
            .unwrap_or(if session.reference > 0.0 {
                ((price - session.reference) / session.reference * 10_000.0).round() / 100.0
            } else {
                0.0
            });
        Some(Tick {
            price,
            open: session.open,
            high: session.high,
            low: session.low,
            bid,
            ask,
            size,
            volume: session.day_volume.unwrap_or(0),
            change,
            change_percent,
            source: source.into(),
        })
    }
}

impl From<&Quote> for Observed {
    fn from(quote: &Quote) -> Self {
        Self {
            price: quote.close.unwrap_or(f64::NAN),
            open: quote.open,
            high: quote.high,
            low: quote.low,
            reference: quote.previous_close,
            change: quote.change,
            change_percent: quote.percent_change,
            day_volume: quote.volume,
            stamp: quote.last_quote_at,
            ..Self::default()
        }
    }
}

impl From<&PriceEvent> for Observed {
    fn from(event: &PriceEvent) -> Self {
        Self {
            price: event.price,
            bid: event.bid,
            ask: event.ask,
            day_volume: event.day_volume,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::twelvedata::{SOURCE_REST, SOURCE_WEBSOCKET};

    fn feed() -> Feed {
        Feed {
            symbol: "USDCOP".into(),
            provider: "USD/COP".into(),
            session: None,
        }
    }

    fn price(price: f64) -> Observed {
        Observed {
            price,
            ..Observed::default()
        }
    }

    #[test]
    fn stream_prices_build_a_session() {
        let mut feed = feed();
        let first = feed.tick(&price(4000.0), SOURCE_WEBSOCKET).unwrap();
        assert_eq!(
            (first.open, first.high, first.low),
            (4000.0, 4000.0, 4000.0)
        );
        // 4 basis points around the price.
        assert!((first.bid - 3999.2).abs() < 1e-9 && (first.ask - 4000.8).abs() < 1e-9);
        assert_eq!((first.change, first.change_percent), (0.0, 0.0));
        assert_eq!(&*first.source, "twelvedata_websocket");
        feed.tick(&price(4040.0), SOURCE_WEBSOCKET).unwrap();
        let third = feed.tick(&price(3980.0), SOURCE_WEBSOCKET).unwrap();
        assert_eq!(
            (third.open, third.high, third.low),
            (4000.0, 4040.0, 3980.0)
        );
        assert_eq!((third.change, third.change_percent), (-20.0, -0.5));
    }

    #[test]
    fn provider_bid_ask_and_volume_are_kept() {
        let mut feed = feed();
        let observed = |day_volume| Observed {
            price: 10.0,
            bid: Some(9.5),
            ask: Some(10.5),
            day_volume: Some(day_volume),
            ..Observed::default()
        };
        let first = feed.tick(&observed(100.0), SOURCE_WEBSOCKET).unwrap();
        assert_eq!(
            (first.bid, first.ask, first.size, first.volume),
            (9.5, 10.5, 0, 100)
        );
        let second = feed.tick(&observed(130.0), SOURCE_WEBSOCKET).unwrap();
        assert_eq!((second.size, second.volume), (30, 130));
    }

    #[test]
    fn quotes_use_the_day_and_skip_repeats() {
        let mut feed = feed();
        let quote = Quote {
            symbol: "USD/COP".into(),
            last_quote_at: Some(1_700_000_000),
            open: Some(4300.0),
            high: Some(4400.0),
            low: Some(4250.0),
            close: Some(4350.0),
            previous_close: Some(4330.0),
            change: Some(20.0),
            percent_change: Some(0.46),
            ..Quote::default()
        };
        let tick = feed.tick(&Observed::from(&quote), SOURCE_REST).unwrap();
        assert_eq!((tick.open, tick.high, tick.low), (4300.0, 4400.0, 4250.0));
        assert_eq!(
            (tick.price, tick.change, tick.change_percent),
            (4350.0, 20.0, 0.46)
        );
        assert_eq!(&*tick.source, "twelvedata_rest");
        assert!(feed.tick(&Observed::from(&quote), SOURCE_REST).is_none());
        let newer = Quote {
            last_quote_at: Some(1_700_000_008),
            ..quote
        };
        assert!(feed.tick(&Observed::from(&newer), SOURCE_REST).is_some());
    }

    #[test]
    fn unusable_prices_make_no_tick() {
        let mut feed = feed();
        assert!(feed.tick(&price(f64::NAN), SOURCE_REST).is_none());
        assert!(feed.tick(&price(0.0), SOURCE_REST).is_none());
        assert!(feed.tick(&price(-1.0), SOURCE_REST).is_none());
        assert!(feed.session.is_none());
    }
}
