//! `[calendar]`: when each symbol trades (the `calendar` module, which
//! checks these values when it builds the calendar at start).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CalendarConfig {
    /// The schedule of every symbol not in `symbols`: `"24/7"` or a session.
    pub default: ScheduleConfig,
    /// Symbol (case-insensitive) -> `"24/7"` or a session.
    pub symbols: BTreeMap<String, ScheduleConfig>,
}

impl Default for CalendarConfig {
    fn default() -> Self {
        Self {
            default: ScheduleConfig::Keyword("24/7".to_owned()),
            symbols: ["USDCOP", "USDBRL"]
                .map(|symbol| {
                    (
                        symbol.to_owned(),
                        ScheduleConfig::Session(SessionConfig::bogota_fx()),
                    )
                })
                .into(),
        }
    }
}

/// A schedule: the keyword `"24/7"` (always open) or a weekly session.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ScheduleConfig {
    Keyword(String),
    Session(SessionConfig),
}

/// A daily session in a time zone, `[open, close)`, not crossing midnight.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// IANA time zone, e.g. `America/Bogota`.
    pub tz: String,
    /// Local opening time, `HH:MM` or `HH:MM:SS` (open from it).
    pub open: String,
    /// Local closing time (closed from it); after `open`.
    pub close: String,
    /// Trading days: `mon` .. `sun`.
    pub weekdays: Vec<String>,
    /// Days without a session: `colombia` or `none`.
    #[serde(default = "no_holidays")]
    pub holidays: String,
}

fn no_holidays() -> String {
    "none".to_owned()
}

impl SessionConfig {
    /// Monday to Friday, 08:00 to 12:55 in Bogota, except Colombian holidays:
    /// the USDCOP spot market.
    pub fn bogota_fx() -> Self {
        Self {
            tz: "America/Bogota".to_owned(),
            open: "08:00".to_owned(),
            close: "12:55".to_owned(),
            weekdays: ["mon", "tue", "wed", "thu", "fri"]
                .map(String::from)
                .to_vec(),
            holidays: "colombia".to_owned(),
        }
    }
}
