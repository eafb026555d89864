//! The wire timestamp of the v1 API: UTC, ISO 8601, exactly six fractional
//! digits (`2025-10-11T08:30:00.123456Z`). The generated types use it wherever
//! asyncapi.yaml names the `Timestamp` schema.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant, written on the wire with microsecond precision in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub jiff::Timestamp);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self(jiff::Timestamp::now())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse::<jiff::Timestamp>()
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

impl From<jiff::Timestamp> for Timestamp {
    fn from(value: jiff::Timestamp) -> Self {
        Self(value)
    }
}

/// The candle time of the candles dialect (seed 003): UTC, ISO 8601 with
/// milliseconds (`2024-10-24T10:00:00.000Z`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CandlesTime(pub jiff::Timestamp);

impl fmt::Display for CandlesTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"))
    }
}

impl Serialize for CandlesTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CandlesTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse::<jiff::Timestamp>()
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

/// A time in a Redis message: any ISO 8601 time with a zone (`Z` or an
/// offset) on input; written as UTC with microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RedisTimestamp(pub jiff::Timestamp);

impl Serialize for RedisTimestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&Timestamp(self.0))
    }
}

impl<'de> Deserialize<'de> for RedisTimestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse::<jiff::Timestamp>()
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

/// The time of the USD/COP dialects (seeds 000 and 001): UTC, ISO 8601 to
/// the second (`2025-10-22T10:30:05Z`), as their seeds write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UsdcopTime(pub jiff::Timestamp);

impl fmt::Display for UsdcopTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.strftime("%Y-%m-%dT%H:%M:%SZ"))
    }
}

impl Serialize for UsdcopTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UsdcopTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse::<jiff::Timestamp>()
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}
