//! The codec of the candles dialect (seed 003): pure functions, no I/O.
//! `decode` turns a client frame into a command or the seed's error text;
//! `encode` writes a server frame. The types come from `asyncapi.yaml`
//! (`CandlesClientFrame`, `CandlesServerFrame`).

use crate::{
    market::candles::{Bar, Resolution},
    protocol::Text,
    spec::{
        CandlesTime,
        messages::{CandlesBar, CandlesClientFrame, CandlesInterval, CandlesServerFrame},
    },
};

/// The error text for anything that is not a well-formed client frame.
pub const INVALID_FORMAT: &str = "Invalid message format";

/// A client command, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Subscribe {
        symbol: String,
        resolution: Resolution,
        initial_bars: Option<i64>,
    },
    Unsubscribe {
        symbol: String,
        resolution: Resolution,
    },
    Ping,
}

/// Decodes one text frame. The error is the message of the `error` frame to
/// send, worded as the seed words it.
pub fn decode(text: &str) -> Result<Command, String> {
    let frame: CandlesClientFrame =
        serde_json::from_str(text).map_err(|_| INVALID_FORMAT.to_owned())?;
    Ok(match frame {
        CandlesClientFrame::Subscribe {
            symbol,
            interval,
            initial_bars,
        } => Command::Subscribe {
            resolution: interval_of(&interval)?,
            symbol: symbol.to_string(),
            initial_bars,
        },
        CandlesClientFrame::Unsubscribe { symbol, interval } => Command::Unsubscribe {
            resolution: interval_of(&interval)?,
            symbol: symbol.to_string(),
        },
        CandlesClientFrame::Ping => Command::Ping,
    })
}

/// The resolution an interval names, or the seed's `Invalid interval` text.
pub fn interval_of(interval: &str) -> Result<Resolution, String> {
    Resolution::from_name(interval)
        .map_err(|_| format!("Invalid interval: {interval}. Valid: 1m, 5m, 15m, 1h, 4h, 1D, 1W"))
}

/// The wire interval of a resolution.
pub fn interval(resolution: Resolution) -> CandlesInterval {
    match resolution {
        Resolution::M1 => CandlesInterval::X1m,
        Resolution::M5 => CandlesInterval::X5m,
        Resolution::M15 => CandlesInterval::X15m,
        Resolution::H1 => CandlesInterval::X1h,
        Resolution::H4 => CandlesInterval::X4h,
        Resolution::D1 => CandlesInterval::X1d,
        Resolution::W1 => CandlesInterval::X1w,
    }
}

/// The `Invalid symbol` text for a symbol outside `supported`.
pub fn invalid_symbol(symbol: &str, supported: &[String]) -> String {
    let symbol: String = symbol.chars().take(40).collect();
    match supported {
        [only] => format!("Invalid symbol: {symbol}. Only {only} is supported."),
        many => format!("Invalid symbol: {symbol}. Supported: {}.", many.join(", ")),
    }
}

pub fn bar(bar: &Bar) -> CandlesBar {
    CandlesBar {
        time: CandlesTime(
            jiff::Timestamp::from_second(bar.time).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        ),
        open: bar.open,
        high: bar.high,
        low: bar.low,
        close: bar.close,
        volume: bar.volume as f64,
        quote_volume: None,
    }
}

pub fn encode(frame: &CandlesServerFrame) -> Text {
    super::to_text(
        frame,
        r#"{"type":"error","message":"frame did not serialize"}"#,
    )
}

pub fn error(message: impl Into<String>) -> Text {
    encode(&CandlesServerFrame::Error {
        message: message.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_seed_frames() {
        assert_eq!(
            decode(r#"{"type":"subscribe","symbol":"BTC/USDT","interval":"5m","initialBars":100}"#),
            Ok(Command::Subscribe {
                symbol: "BTC/USDT".into(),
                resolution: Resolution::M5,
                initial_bars: Some(100)
            })
        );
        assert_eq!(
            decode(r#"{"type":"unsubscribe","symbol":"BTC/USDT","interval":"1W"}"#),
            Ok(Command::Unsubscribe {
                symbol: "BTC/USDT".into(),
                resolution: Resolution::W1
            })
        );
        assert_eq!(decode(r#"{"type":"ping"}"#), Ok(Command::Ping));
    }

    #[test]
    fn errors_are_worded_as_the_seed() {
        assert_eq!(
            decode(r#"{"type":"subscribe","symbol":"BTC/USDT","interval":"10m"}"#),
            Err("Invalid interval: 10m. Valid: 1m, 5m, 15m, 1h, 4h, 1D, 1W".into())
        );
        for bad in [
            "not json",
            "",
            "[]",
            r#"{"type":"bogus"}"#,
            r#"{"symbol":"BTC/USDT"}"#,
        ] {
            assert_eq!(decode(bad), Err(INVALID_FORMAT.into()), "{bad}");
        }
        assert_eq!(
            invalid_symbol("ETH/USDT", &["BTC/USDT".into()]),
            "Invalid symbol: ETH/USDT. Only BTC/USDT is supported."
        );
    }

    #[test]
    fn bar_times_have_milliseconds() {
        let text = encode(&CandlesServerFrame::Update {
            symbol: "BTC/USDT".into(),
            interval: interval(Resolution::M5),
            bar: bar(&Bar {
                time: 1_729_764_000,
                open: 1.0,
                high: 2.0,
                low: 0.5,
                close: 1.5,
                volume: 7,
            }),
        });
        assert!(
            text.contains(r#""time":"2024-10-24T10:00:00.000Z""#),
            "{text}"
        );
        assert!(text.contains(r#""interval":"5m""#), "{text}");
    }
}
