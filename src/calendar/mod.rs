//! Market calendar: when each symbol trades.
//!
//! A `Calendar` maps symbols (case-insensitively) to a `Schedule`: always
//! open (crypto, and every symbol not listed, by default) or a weekly session
//! in an IANA time zone, on some weekdays, between an opening and a closing
//! time, except the holidays of a set (`holidays`). It answers for any
//! instant: is the market open, when does the current session end, when does
//! the next one start. It reads no clock: callers pass the instant, taken
//! from `crate::clock::Clock`, so every answer can be tested at any hour.
//!
//! Sessions are half-open, `[open, close)`, and do not cross midnight.

pub mod holidays;

use std::collections::HashMap;

use jiff::{
    SignedDuration, Timestamp, Zoned,
    civil::{Date, Time, Weekday},
    tz::TimeZone,
};
use serde::Serialize;

use crate::config::{CalendarConfig, ScheduleConfig, SessionConfig};

/// How long before the close a session reports `Closing`.
pub const CLOSING_WINDOW: SignedDuration = SignedDuration::from_mins(5);

/// The keyword of the always-open schedule in configuration.
pub const ALWAYS_OPEN: &str = "24/7";

/// How far `next_open` looks ahead before giving up (a schedule whose
/// weekdays are all holidays, which the rules here cannot produce).
const LOOKAHEAD_DAYS: i32 = 400;

/// The schedules of all symbols.
#[derive(Clone, Debug)]
pub struct Calendar {
    /// Keyed by upper-case symbol.
    symbols: HashMap<String, Schedule>,
    /// For every symbol not in `symbols`.
    default: Schedule,
}

/// When one symbol trades.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// Every instant (crypto).
    AlwaysOpen,
    /// A daily session on some weekdays, holidays excepted.
    Weekly(WeeklySession),
}

/// A session from `open` to `close` (exclusive), local time in `tz`, on
/// `weekdays` that are not `holidays`.
#[derive(Clone, Debug)]
pub struct WeeklySession {
    pub tz: TimeZone,
    /// The IANA name of `tz`, as configured (`America/Bogota`).
    pub tz_name: String,
    pub open: Time,
    pub close: Time,
    pub weekdays: Weekdays,
    pub holidays: Holidays,
}

/// A set of weekdays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Weekdays(u8);

impl Weekdays {
    /// Monday to Friday.
    pub const MON_FRI: Weekdays = Weekdays(0b001_1111);

    /// The set with `day` added.
    #[must_use]
    pub fn with(self, day: Weekday) -> Weekdays {
        Weekdays(self.0 | (1 << day.to_monday_zero_offset()))
    }

    pub fn contains(self, day: Weekday) -> bool {
        self.0 & (1 << day.to_monday_zero_offset()) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Weekday> for Weekdays {
    fn from_iter<I: IntoIterator<Item = Weekday>>(days: I) -> Self {
        days.into_iter().fold(Weekdays::default(), Weekdays::with)
    }
}

/// A set of public holidays on which a session does not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holidays {
    None,
    /// Colombia's national holidays (`holidays::colombia`).
    Colombia,
}

impl Holidays {
    /// The name of the holiday on `date`, if it is one.
    pub fn name(self, date: Date) -> Option<&'static str> {
        match self {
            Holidays::None => None,
            Holidays::Colombia => holidays::is_colombian_holiday(date),
        }
    }
}

/// Where a schedule stands at one instant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SessionInfo {
    pub status: SessionStatus,
    pub market_open: bool,
    /// IANA name of the session's zone; `UTC` for an always-open schedule.
    pub timezone: String,
    /// Start of the session in progress (only while open, never for 24/7).
    pub current_session_start: Option<Zoned>,
    /// End of the session in progress (only while open, never for 24/7).
    pub current_session_end: Option<Zoned>,
    /// Whole minutes left in the session, rounded down (only while open).
    pub minutes_until_close: Option<i64>,
    /// Whole seconds left in the session, rounded down (only while open).
    pub seconds_until_close: Option<i64>,
    /// The next session's start, after weekends and holidays (always for a
    /// weekly schedule; the next day's while open).
    pub next_session_start: Option<Zoned>,
    /// The holiday of the session's local date, when it is one.
    pub holiday: Option<&'static str>,
}

/// Open, open with less than `CLOSING_WINDOW` left (from close minus the
/// window, inclusive), or closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Open,
    Closing,
    Closed,
}

/// Why `[calendar]` could not be turned into a calendar.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("{key}: {value:?} is not a schedule; use \"{ALWAYS_OPEN}\" or a session table")]
    UnknownSchedule { key: String, value: String },
    #[error("{key}.tz: unknown time zone {value:?}; use an IANA name such as America/Bogota")]
    UnknownTimeZone { key: String, value: String },
    #[error("{key}.{field}: {value:?} is not a time of day; use HH:MM or HH:MM:SS")]
    Time {
        key: String,
        field: &'static str,
        value: String,
    },
    #[error("{key}: open {open} must be before close {close} (sessions cannot cross midnight)")]
    OpenNotBeforeClose {
        key: String,
        open: Time,
        close: Time,
    },
    #[error("{key}.weekdays: {value:?} is not a weekday; use mon, tue, wed, thu, fri, sat or sun")]
    Weekday { key: String, value: String },
    #[error("{key}.weekdays: name at least one day")]
    NoWeekdays { key: String },
    #[error("{key}.holidays: unknown holiday set {value:?}; use colombia or none")]
    Holidays { key: String, value: String },
    #[error(
        "calendar.symbols names {symbol} twice (symbols are case-insensitive; the defaults use upper case)"
    )]
    Duplicate { symbol: String },
}

impl Calendar {
    /// The calendar `[calendar]` describes.
    ///
    /// # Errors
    /// The first invalid entry: an unknown keyword, time zone, weekday or
    /// holiday set, a malformed time, `open` not before `close`, or a symbol
    /// listed twice.
    pub fn from_config(config: &CalendarConfig) -> Result<Calendar, CalendarError> {
        let default = Schedule::from_config("calendar.default", &config.default)?;
        let mut symbols = HashMap::with_capacity(config.symbols.len());
        for (symbol, schedule) in &config.symbols {
            let key = format!("calendar.symbols.{symbol}");
            let schedule = Schedule::from_config(&key, schedule)?;
            let upper = symbol.to_uppercase();
            if symbols.insert(upper.clone(), schedule).is_some() {
                return Err(CalendarError::Duplicate { symbol: upper });
            }
        }
        Ok(Calendar { symbols, default })
    }

    /// The schedule of `symbol` (any case); the default for symbols not
    /// configured.
    pub fn schedule(&self, symbol: &str) -> &Schedule {
        let found = if symbol.chars().any(char::is_lowercase) {
            self.symbols.get(&symbol.to_uppercase())
        } else {
            self.symbols.get(symbol)
        };
        found.unwrap_or(&self.default)
    }

    /// The default schedule.
    pub fn default_schedule(&self) -> &Schedule {
        &self.default
    }

    /// The configured symbols (upper case) and their schedules.
    pub fn symbols(&self) -> impl Iterator<Item = (&str, &Schedule)> {
        self.symbols
            .iter()
            .map(|(symbol, schedule)| (symbol.as_str(), schedule))
    }
}

impl Default for Calendar {
    /// The calendar of `CalendarConfig::default()`.
    fn default() -> Self {
        Calendar::from_config(&CalendarConfig::default())
            .unwrap_or_else(|_| unreachable!("the default calendar is valid (tested)"))
    }
}

impl Schedule {
    fn from_config(key: &str, config: &ScheduleConfig) -> Result<Schedule, CalendarError> {
        match config {
            ScheduleConfig::Keyword(word) if word.trim() == ALWAYS_OPEN => Ok(Schedule::AlwaysOpen),
            ScheduleConfig::Keyword(word) => Err(CalendarError::UnknownSchedule {
                key: key.to_owned(),
                value: word.clone(),
            }),
            ScheduleConfig::Session(session) => {
                WeeklySession::from_config(key, session).map(Schedule::Weekly)
            }
        }
    }

    /// Whether the market is open at `now`: from the open (inclusive) to the
    /// close (exclusive) of a trading day.
    pub fn is_open(&self, now: Timestamp) -> bool {
        match self {
            Schedule::AlwaysOpen => true,
            Schedule::Weekly(session) => session.current(now).is_some(),
        }
    }

    /// Where the schedule stands at `now`.
    pub fn session(&self, now: Timestamp) -> SessionInfo {
        let Schedule::Weekly(weekly) = self else {
            return SessionInfo {
                status: SessionStatus::Open,
                market_open: true,
                timezone: "UTC".to_owned(),
                current_session_start: None,
                current_session_end: None,
                minutes_until_close: None,
                seconds_until_close: None,
                next_session_start: None,
                holiday: None,
            };
        };
        let today = now.to_zoned(weekly.tz.clone()).date();
        let holiday = weekly.holidays.name(today);
        let next_session_start = self.next_open(now);
        let mut info = SessionInfo {
            status: SessionStatus::Closed,
            market_open: false,
            timezone: weekly.tz_name.clone(),
            current_session_start: None,
            current_session_end: None,
            minutes_until_close: None,
            seconds_until_close: None,
            next_session_start,
            holiday,
        };
        if let Some((start, end)) = weekly.current(now) {
            let left = end.timestamp().duration_since(now);
            info.status = if left <= CLOSING_WINDOW {
                SessionStatus::Closing
            } else {
                SessionStatus::Open
            };
            info.market_open = true;
            info.seconds_until_close = Some(left.as_secs());
            info.minutes_until_close = Some(left.as_secs() / 60);
            info.current_session_start = Some(start);
            info.current_session_end = Some(end);
        }
        info
    }

    /// The start of the next session: strictly after `now` (so the next
    /// trading day's while a session is open), skipping weekends and
    /// holidays. `None` for an always-open schedule.
    pub fn next_open(&self, now: Timestamp) -> Option<Zoned> {
        let Schedule::Weekly(weekly) = self else {
            return None;
        };
        let mut date = now.to_zoned(weekly.tz.clone()).date();
        for _ in 0..LOOKAHEAD_DAYS {
            if weekly.trades_on(date)
                && let Some((start, _)) = weekly.bounds(date)
                && start.timestamp() > now
            {
                return Some(start);
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

impl WeeklySession {
    fn from_config(key: &str, config: &SessionConfig) -> Result<WeeklySession, CalendarError> {
        let tz = jiff::tz::db()
            .get(&config.tz)
            .map_err(|_| CalendarError::UnknownTimeZone {
                key: key.to_owned(),
                value: config.tz.clone(),
            })?;
        let time = |field: &'static str, value: &str| {
            value
                .trim()
                .parse::<Time>()
                .map_err(|_| CalendarError::Time {
                    key: key.to_owned(),
                    field,
                    value: value.to_owned(),
                })
        };
        let open = time("open", &config.open)?;
        let close = time("close", &config.close)?;
        if open >= close {
            return Err(CalendarError::OpenNotBeforeClose {
                key: key.to_owned(),
                open,
                close,
            });
        }
        let weekdays = config
            .weekdays
            .iter()
            .map(|name| {
                parse_weekday(name).ok_or_else(|| CalendarError::Weekday {
                    key: key.to_owned(),
                    value: name.clone(),
                })
            })
            .collect::<Result<Weekdays, _>>()?;
        if weekdays.is_empty() {
            return Err(CalendarError::NoWeekdays {
                key: key.to_owned(),
            });
        }
        let holidays = match config.holidays.trim().to_ascii_lowercase().as_str() {
            "colombia" => Holidays::Colombia,
            "none" | "" => Holidays::None,
            _ => {
                return Err(CalendarError::Holidays {
                    key: key.to_owned(),
                    value: config.holidays.clone(),
                });
            }
        };
        Ok(WeeklySession {
            tz,
            tz_name: config.tz.clone(),
            open,
            close,
            weekdays,
            holidays,
        })
    }

    /// Whether a session opens on `date` (local): a listed weekday that is
    /// not a holiday.
    pub fn trades_on(&self, date: Date) -> bool {
        self.weekdays.contains(date.weekday()) && self.holidays.name(date).is_none()
    }

    /// The open and close of the session of `date`, whether or not it
    /// trades. A time that a clock change skips resolves to the instant
    /// after the gap (jiff's "compatible" rule).
    fn bounds(&self, date: Date) -> Option<(Zoned, Zoned)> {
        let start = date.to_datetime(self.open).to_zoned(self.tz.clone()).ok()?;
        let end = date
            .to_datetime(self.close)
            .to_zoned(self.tz.clone())
            .ok()?;
        Some((start, end))
    }

    /// The session in progress at `now`, if any.
    fn current(&self, now: Timestamp) -> Option<(Zoned, Zoned)> {
        let today = now.to_zoned(self.tz.clone()).date();
        if !self.trades_on(today) {
            return None;
        }
        let (start, end) = self.bounds(today)?;
        (start.timestamp() <= now && now < end.timestamp()).then_some((start, end))
    }
}

/// `mon` or `monday` (any case) to a weekday.
fn parse_weekday(name: &str) -> Option<Weekday> {
    let day = match name.trim().to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return None,
    };
    Some(day)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// An instant given as Bogota local time.
    fn bogota(datetime: &str) -> Timestamp {
        format!("{datetime}[America/Bogota]")
            .parse::<Zoned>()
            .expect("valid Bogota datetime")
            .timestamp()
    }

    fn usdcop() -> Schedule {
        Calendar::default().schedule("USDCOP").clone()
    }

    fn session(
        tz: &str,
        open: &str,
        close: &str,
        weekdays: &[&str],
        holidays: &str,
    ) -> ScheduleConfig {
        ScheduleConfig::Session(SessionConfig {
            tz: tz.to_owned(),
            open: open.to_owned(),
            close: close.to_owned(),
            weekdays: weekdays.iter().map(|&day| day.to_owned()).collect(),
            holidays: holidays.to_owned(),
        })
    }

    fn with_symbol(symbol: &str, schedule: ScheduleConfig) -> CalendarConfig {
        CalendarConfig {
            default: ScheduleConfig::Keyword(ALWAYS_OPEN.to_owned()),
            symbols: BTreeMap::from([(symbol.to_owned(), schedule)]),
        }
    }

    #[test]
    fn open_from_eight_closed_from_twelve_fifty_five() {
        let usdcop = usdcop();
        // Monday 2026-11-30 is an ordinary trading day.
        for (time, open) in [
            ("07:59:59", false),
            ("08:00:00", true),
            ("10:30:00", true),
            ("12:54:59", true),
            ("12:55:00", false),
            ("18:00:00", false),
        ] {
            let now = bogota(&format!("2026-11-30T{time}"));
            assert_eq!(usdcop.is_open(now), open, "{time}");
            assert_eq!(usdcop.session(now).market_open, open, "{time}");
        }
    }

    #[test]
    fn status_and_time_left() {
        let usdcop = usdcop();
        let check = |time: &str, status, seconds: Option<i64>, minutes: Option<i64>| {
            let info = usdcop.session(bogota(&format!("2026-11-30T{time}")));
            assert_eq!(info.status, status, "{time}");
            assert_eq!(info.seconds_until_close, seconds, "{time}");
            assert_eq!(info.minutes_until_close, minutes, "{time}");
        };
        check("07:59:59", SessionStatus::Closed, None, None);
        check("08:00:00", SessionStatus::Open, Some(17_700), Some(295));
        check("12:49:59", SessionStatus::Open, Some(301), Some(5));
        check("12:50:00", SessionStatus::Closing, Some(300), Some(5));
        check("12:50:01", SessionStatus::Closing, Some(299), Some(4));
        check("12:54:59", SessionStatus::Closing, Some(1), Some(0));
        check("12:55:00", SessionStatus::Closed, None, None);
    }

    #[test]
    fn open_session_reports_its_bounds_and_the_next_day() {
        let info = usdcop().session(bogota("2026-11-30T12:49:50"));
        assert_eq!(info.timezone, "America/Bogota");
        assert_eq!(info.holiday, None);
        let start = info.current_session_start.expect("open");
        let end = info.current_session_end.expect("open");
        assert_eq!(start.timestamp(), bogota("2026-11-30T08:00:00"));
        assert_eq!(end.timestamp(), bogota("2026-11-30T12:55:00"));
        assert_eq!(end.time_zone().iana_name(), Some("America/Bogota"));
        let next = info.next_session_start.expect("always for weekly");
        assert_eq!(next.timestamp(), bogota("2026-12-01T08:00:00"));
    }

    #[test]
    fn next_open_skips_weekends_and_holidays() {
        let usdcop = usdcop();
        let next = |now: &str| usdcop.next_open(bogota(now)).expect("weekly").timestamp();
        // Before the open: today's.
        assert_eq!(next("2026-11-30T07:00:00"), bogota("2026-11-30T08:00:00"));
        // Friday after close: Monday.
        assert_eq!(next("2026-11-27T13:00:00"), bogota("2026-11-30T08:00:00"));
        // A Saturday: Monday.
        assert_eq!(next("2026-11-28T09:00:00"), bogota("2026-11-30T08:00:00"));
        // Friday before a Monday holiday (Independence of Cartagena,
        // Monday 2026-11-16): Tuesday.
        assert_eq!(next("2026-11-13T13:00:00"), bogota("2026-11-17T08:00:00"));
        // Holy week: Wednesday after close skips Thursday and Friday.
        assert_eq!(next("2026-04-01T13:00:00"), bogota("2026-04-06T08:00:00"));
        // Open: the next trading day's, not the session in progress.
        assert_eq!(next("2026-11-30T08:00:00"), bogota("2026-12-01T08:00:00"));
        // Christmas Day 2026 is a Friday: Thursday after close -> Monday 28.
        assert_eq!(next("2026-12-24T12:55:00"), bogota("2026-12-28T08:00:00"));
    }

    #[test]
    fn holidays_and_weekends_are_closed() {
        let usdcop = usdcop();
        // Holy Thursday and Good Friday 2026 at mid-morning.
        for day in ["2026-04-02", "2026-04-03"] {
            let info = usdcop.session(bogota(&format!("{day}T10:00:00")));
            assert_eq!(info.status, SessionStatus::Closed, "{day}");
            assert!(info.holiday.is_some(), "{day}");
            assert_eq!(info.current_session_end, None);
            let next = info.next_session_start.expect("weekly").timestamp();
            assert_eq!(next, bogota("2026-04-06T08:00:00"));
        }
        assert_eq!(
            usdcop.session(bogota("2026-04-03T10:00:00")).holiday,
            Some("Good Friday")
        );
        // A Saturday: closed, not a holiday.
        let saturday = usdcop.session(bogota("2026-11-28T10:00:00"));
        assert_eq!(saturday.status, SessionStatus::Closed);
        assert!(!saturday.market_open);
        assert_eq!(saturday.holiday, None);
        assert_eq!(saturday.minutes_until_close, None);
    }

    #[test]
    fn always_open() {
        let schedule = Calendar::default().schedule("BTC/USDT").clone();
        assert!(matches!(schedule, Schedule::AlwaysOpen));
        // A Colombian holiday on a Sunday night: still open.
        let now = bogota("2026-04-05T23:59:59");
        assert!(schedule.is_open(now));
        assert_eq!(schedule.next_open(now), None);
        let info = schedule.session(now);
        assert_eq!(info.status, SessionStatus::Open);
        assert!(info.market_open);
        assert_eq!(info.timezone, "UTC");
        assert_eq!(info.next_session_start, None);
        assert_eq!(info.seconds_until_close, None);
    }

    #[test]
    fn default_calendar_and_case_insensitive_symbols() {
        let calendar = Calendar::default();
        for symbol in ["USDCOP", "usdcop", "UsdCop", "USDBRL", "usdbrl"] {
            let Schedule::Weekly(session) = calendar.schedule(symbol) else {
                panic!("{symbol} should have a weekly session");
            };
            assert_eq!(session.tz_name, "America/Bogota");
            assert_eq!(session.open, Time::constant(8, 0, 0, 0));
            assert_eq!(session.close, Time::constant(12, 55, 0, 0));
            assert_eq!(session.weekdays, Weekdays::MON_FRI);
            assert_eq!(session.holidays, Holidays::Colombia);
        }
        for symbol in ["AAPL", "BTC/USDT", "EURUSD"] {
            assert!(
                matches!(calendar.schedule(symbol), Schedule::AlwaysOpen),
                "{symbol}"
            );
        }
    }

    #[test]
    fn equities_in_new_york() {
        let config = with_symbol(
            "aapl",
            session(
                "America/New_York",
                "09:30",
                "16:00",
                &["mon", "tue", "wed", "thu", "friday"],
                "none",
            ),
        );
        let calendar = Calendar::from_config(&config).unwrap();
        let aapl = calendar.schedule("AAPL");
        let ny = |datetime: &str| {
            format!("{datetime}[America/New_York]")
                .parse::<Zoned>()
                .unwrap()
                .timestamp()
        };
        assert!(!aapl.is_open(ny("2026-11-30T09:29:59")));
        assert!(aapl.is_open(ny("2026-11-30T09:30:00")));
        assert!(!aapl.is_open(ny("2026-11-30T16:00:00")));
        // No holiday set: Colombian holidays do not close it.
        assert!(aapl.is_open(ny("2026-11-16T10:00:00")));
        assert_eq!(
            aapl.next_open(ny("2026-11-27T16:00:00"))
                .unwrap()
                .timestamp(),
            ny("2026-11-30T09:30:00")
        );
        assert_eq!(
            aapl.session(ny("2026-11-30T10:00:00")).timezone,
            "America/New_York"
        );
    }

    #[test]
    fn config_errors() {
        let check = |config: CalendarConfig, expected: &str| {
            let error = Calendar::from_config(&config).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        };
        let weekdays = &["mon", "tue", "wed", "thu", "fri"];
        check(
            with_symbol(
                "X",
                session("America/Bogata", "08:00", "12:55", weekdays, "colombia"),
            ),
            "calendar.symbols.X.tz: unknown time zone \"America/Bogata\"",
        );
        check(
            with_symbol(
                "X",
                session("America/Bogota", "12:55", "08:00", weekdays, "colombia"),
            ),
            "calendar.symbols.X: open 12:55:00 must be before close 08:00:00",
        );
        check(
            with_symbol(
                "X",
                session("America/Bogota", "08:00", "08:00", weekdays, "colombia"),
            ),
            "must be before close",
        );
        check(
            with_symbol(
                "X",
                session("America/Bogota", "8am", "12:55", weekdays, "colombia"),
            ),
            "calendar.symbols.X.open: \"8am\" is not a time of day",
        );
        check(
            with_symbol(
                "X",
                session("America/Bogota", "08:00", "25:00", weekdays, "colombia"),
            ),
            "calendar.symbols.X.close",
        );
        check(
            with_symbol(
                "X",
                session("America/Bogota", "08:00", "12:55", weekdays, "brazil"),
            ),
            "calendar.symbols.X.holidays: unknown holiday set \"brazil\"",
        );
        check(
            with_symbol(
                "X",
                session(
                    "America/Bogota",
                    "08:00",
                    "12:55",
                    &["mon", "funday"],
                    "none",
                ),
            ),
            "calendar.symbols.X.weekdays: \"funday\" is not a weekday",
        );
        check(
            with_symbol(
                "X",
                session("America/Bogota", "08:00", "12:55", &[], "none"),
            ),
            "name at least one day",
        );
        check(
            with_symbol("X", ScheduleConfig::Keyword("weekdays".into())),
            "calendar.symbols.X: \"weekdays\" is not a schedule",
        );
        let config = CalendarConfig {
            default: ScheduleConfig::Keyword("always".into()),
            ..CalendarConfig::default()
        };
        check(config, "calendar.default: \"always\" is not a schedule");
        let mut config = CalendarConfig::default();
        config
            .symbols
            .insert("usdcop".into(), ScheduleConfig::Keyword(ALWAYS_OPEN.into()));
        check(config, "calendar.symbols names USDCOP twice");
    }

    #[test]
    fn a_toml_file_adds_symbols_and_overrides_single_keys() {
        use figment::{
            Figment,
            providers::{Format, Serialized, Toml},
        };
        let config: crate::Config = Figment::from(Serialized::defaults(crate::Config::default()))
            .merge(Toml::string(
                r#"
                [calendar.symbols]
                "BTC/USDT" = "24/7"
                [calendar.symbols.AAPL]
                tz = "America/New_York"
                open = "09:30"
                close = "16:00"
                weekdays = ["mon", "tue", "wed", "thu", "fri"]
                [calendar.symbols.USDCOP]
                close = "13:00"
                "#,
            ))
            .extract()
            .unwrap();
        config.validate().unwrap();
        let calendar = Calendar::from_config(&config.calendar).unwrap();
        let Schedule::Weekly(usdcop) = calendar.schedule("USDCOP") else {
            panic!("USDCOP keeps its session");
        };
        assert_eq!(usdcop.close, Time::constant(13, 0, 0, 0));
        assert_eq!(usdcop.holidays, Holidays::Colombia);
        let Schedule::Weekly(aapl) = calendar.schedule("AAPL") else {
            panic!("AAPL has a session");
        };
        assert_eq!(aapl.holidays, Holidays::None, "the default holiday set");
        assert!(matches!(
            calendar.schedule("BTC/USDT"),
            Schedule::AlwaysOpen
        ));
        assert!(matches!(calendar.schedule("USDBRL"), Schedule::Weekly(_)));

        let mut invalid = config;
        invalid.calendar.default = ScheduleConfig::Keyword("sometimes".into());
        invalid.validate().expect("config checks no schedule");
        let error = Calendar::from_config(&invalid.calendar).unwrap_err();
        assert!(error.to_string().contains("calendar.default"), "{error}");
    }

    #[test]
    fn a_weekly_default_and_an_always_open_override() {
        let config = CalendarConfig {
            default: session(
                "UTC",
                "00:00",
                "23:59:59",
                &["mon", "tue", "wed", "thu", "fri"],
                "none",
            ),
            symbols: BTreeMap::from([(
                "BTC/USDT".to_owned(),
                ScheduleConfig::Keyword("24/7".into()),
            )]),
        };
        let calendar = Calendar::from_config(&config).unwrap();
        let saturday: Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
        assert!(!calendar.schedule("ETH/USDT").is_open(saturday));
        assert!(calendar.schedule("btc/usdt").is_open(saturday));
    }
}
