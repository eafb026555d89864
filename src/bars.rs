//! Bars and their resolutions: the plain data that the store persists and
//! the market builds. It imports nothing of either, so `store` does not
//! depend on `market` (which depends on `store`); `market::candles`
//! re-exports both types.

use std::str::FromStr;

const MINUTE: i64 = 60;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// 1970-01-01 was a Thursday; weeks start on Monday 00:00 UTC.
const MONDAY_OFFSET: i64 = 4 * DAY;

/// A bar resolution: the seven that tickgate builds, stores and serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// One minute.
    M1,
    /// Five minutes.
    M5,
    /// Fifteen minutes.
    M15,
    /// One hour.
    H1,
    /// Four hours.
    H4,
    /// One day (UTC).
    D1,
    /// One week, from Monday 00:00 UTC.
    W1,
}

impl Resolution {
    /// The resolutions the datafeed supports, as UDF names them.
    pub const SUPPORTED: [&'static str; 7] = ["1", "5", "15", "60", "240", "1D", "1W"];

    /// Every resolution, finest first.
    pub const ALL: [Resolution; 7] = [
        Resolution::M1,
        Resolution::M5,
        Resolution::M15,
        Resolution::H1,
        Resolution::H4,
        Resolution::D1,
        Resolution::W1,
    ];

    /// Its place in `ALL`.
    pub const fn index(self) -> usize {
        match self {
            Resolution::M1 => 0,
            Resolution::M5 => 1,
            Resolution::M15 => 2,
            Resolution::H1 => 3,
            Resolution::H4 => 4,
            Resolution::D1 => 5,
            Resolution::W1 => 6,
        }
    }

    /// The name in the store's `timeframe` column and in the candles
    /// dialect: `1m`, `5m`, `15m`, `1h`, `4h`, `1D`, `1W`.
    pub const fn name(self) -> &'static str {
        match self {
            Resolution::M1 => "1m",
            Resolution::M5 => "5m",
            Resolution::M15 => "15m",
            Resolution::H1 => "1h",
            Resolution::H4 => "4h",
            Resolution::D1 => "1D",
            Resolution::W1 => "1W",
        }
    }

    /// The resolution `name` names (`1m` ... `1W`, as `name` writes them).
    ///
    /// # Errors
    /// Any other text.
    pub fn from_name(name: &str) -> Result<Self, BadResolution> {
        Self::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| BadResolution::new(name))
    }

    /// Length of one bar in seconds.
    pub const fn seconds(self) -> i64 {
        match self {
            Resolution::M1 => MINUTE,
            Resolution::M5 => 5 * MINUTE,
            Resolution::M15 => 15 * MINUTE,
            Resolution::H1 => HOUR,
            Resolution::H4 => 4 * HOUR,
            Resolution::D1 => DAY,
            Resolution::W1 => 7 * DAY,
        }
    }

    /// Start (unix seconds) of the bar that contains `time`.
    pub const fn bucket(self, time: i64) -> i64 {
        let length = self.seconds();
        match self {
            Resolution::W1 => (time - MONDAY_OFFSET).div_euclid(length) * length + MONDAY_OFFSET,
            _ => time.div_euclid(length) * length,
        }
    }
}

/// A resolution that is not one of the seven.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported resolution {0:?}; supported: 1, 5, 15, 60, 240, 1D, 1W")]
pub struct BadResolution(pub String);

impl BadResolution {
    /// At most 16 characters of what was asked for.
    fn new(text: &str) -> Self {
        Self(text.chars().take(16).collect())
    }
}

impl FromStr for Resolution {
    type Err = BadResolution;

    /// A UDF resolution: `1`, `5`, `15`, `60`, `240`, `1D` (or `D`), `1W`
    /// (or `W`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "1" => Ok(Resolution::M1),
            "5" => Ok(Resolution::M5),
            "15" => Ok(Resolution::M15),
            "60" => Ok(Resolution::H1),
            "240" => Ok(Resolution::H4),
            "D" | "1D" => Ok(Resolution::D1),
            "W" | "1W" => Ok(Resolution::W1),
            other => Err(BadResolution::new(other)),
        }
    }
}

/// One aggregated bar: `time` is its start in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub time: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>()
            .expect("a timestamp")
            .as_second()
    }

    #[test]
    fn buckets() {
        let t = ts("2025-10-15T13:47:12Z"); // a Wednesday
        let check = |r: Resolution, want: &str| assert_eq!(r.bucket(t), ts(want), "{r:?}");
        check(Resolution::M1, "2025-10-15T13:47:00Z");
        check(Resolution::M5, "2025-10-15T13:45:00Z");
        check(Resolution::M15, "2025-10-15T13:45:00Z");
        check(Resolution::H1, "2025-10-15T13:00:00Z");
        check(Resolution::H4, "2025-10-15T12:00:00Z");
        check(Resolution::D1, "2025-10-15T00:00:00Z");
        check(Resolution::W1, "2025-10-13T00:00:00Z");
        // Before the epoch too (a Sunday: its week started the Monday before).
        assert_eq!(
            Resolution::W1.bucket(ts("1969-12-28T12:00:00Z")),
            ts("1969-12-22T00:00:00Z")
        );
    }

    #[test]
    fn parses_udf_resolutions() {
        let parsed: Vec<Resolution> = Resolution::SUPPORTED
            .iter()
            .map(|name| name.parse().expect("a supported name"))
            .collect();
        assert_eq!(parsed, Resolution::ALL, "SUPPORTED lists ALL, in order");
        assert_eq!("D".parse::<Resolution>(), Ok(Resolution::D1));
        assert_eq!("W".parse::<Resolution>(), Ok(Resolution::W1));
        for bad in ["10", "", "1m", "2", "0", "-1", "1M", "D1", "60 ", "९"] {
            assert_eq!(
                bad.parse::<Resolution>(),
                Err(BadResolution(bad.to_owned())),
                "{bad:?}"
            );
        }
        let long = "1".repeat(100);
        assert_eq!(
            long.parse::<Resolution>().map_err(|e| e.0.len()),
            Err(16),
            "the error keeps 16 characters"
        );
    }

    #[test]
    fn names_round_trip_and_nothing_else_parses() {
        for resolution in Resolution::ALL {
            assert_eq!(Resolution::from_name(resolution.name()), Ok(resolution));
            assert_eq!(Resolution::ALL[resolution.index()], resolution);
        }
        for bad in ["", "?", "1", "2m", "1d", "1w", "60m", "1H"] {
            assert!(Resolution::from_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_bar_is_as_long_as_its_resolution() {
        for resolution in Resolution::ALL {
            let start = resolution.bucket(ts("2025-10-15T13:47:12Z"));
            assert_eq!(resolution.bucket(start), start);
            assert_eq!(
                resolution.bucket(start + resolution.seconds() - 1),
                start,
                "{resolution:?}"
            );
            assert_eq!(
                resolution.bucket(start + resolution.seconds()),
                start + resolution.seconds(),
                "{resolution:?}"
            );
        }
    }
}
