//! `[clock]`: the time of day the gateway reads (the `clock` module, which
//! checks these values when it builds the clock at start).

use serde::{Deserialize, Serialize};

/// Real time unless pinned or offset, so demos and CI can run at any hour.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockConfig {
    /// The instant the clock reads at start (RFC 3339 with an offset, e.g.
    /// `2026-11-30T12:49:50-05:00`); it runs forward from there. Unset: real
    /// time. Quoted or, in TOML, a bare datetime.
    #[serde(deserialize_with = "instant_text")]
    pub start_at: Option<String>,
    /// Seconds added to real time (negative: the past). Ignored when
    /// `start_at` is set.
    pub offset_seconds: i64,
    /// With `start_at`: the clock stands still there.
    pub frozen: bool,
}

/// `clock.start_at` as text: a string, or a TOML datetime written without
/// quotes (which TOML parses into a table of its own).
fn instant_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Plain(String),
        Toml {
            #[serde(rename = "$__toml_private_datetime")]
            datetime: String,
        },
    }
    Ok(
        Option::<Text>::deserialize(deserializer)?.map(|text| match text {
            Text::Plain(text) | Text::Toml { datetime: text } => text,
        }),
    )
}
