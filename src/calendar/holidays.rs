//! Colombian public holidays, computed by rule for any year.
//!
//! Law 51 of 1983 ("Ley Emiliani") sets three kinds of holiday:
//!
//! - fixed dates, kept whatever the weekday: Jan 1, May 1, Jul 20, Aug 7,
//!   Dec 8, Dec 25;
//! - dates moved to the following Monday when they do not fall on a Monday:
//!   Jan 6, Mar 19, Jun 29, Aug 15, Oct 12, Nov 1, Nov 11;
//! - dates counted from Easter Sunday: Holy Thursday (-3) and Good Friday (-2)
//!   on their day, Ascension (+43), Corpus Christi (+64) and Sacred Heart
//!   (+71), which already are the Mondays the law moves them to.
//!
//! Two holidays can share a date (in 2025, Saints Peter and Paul and Sacred
//! Heart are both on Monday June 30): `colombia` lists both, so a year always
//! has 18 holidays, sometimes on 17 dates.

use jiff::{
    ToSpan,
    civil::{Date, Weekday},
};

/// One public holiday: the day it is observed and its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holiday {
    pub date: Date,
    pub name: &'static str,
}

/// How the date of a holiday follows from its year.
#[derive(Clone, Copy)]
enum Rule {
    /// Observed on this month and day.
    Fixed(i8, i8),
    /// This month and day, moved to the following Monday unless a Monday.
    Monday(i8, i8),
    /// This many days after Easter Sunday (negative: before).
    Easter(i32),
}

/// Every national holiday, in calendar order for a typical year.
const RULES: [(Rule, &str); 18] = [
    (Rule::Fixed(1, 1), "New Year's Day"),
    (Rule::Monday(1, 6), "Epiphany"),
    (Rule::Monday(3, 19), "Saint Joseph's Day"),
    (Rule::Easter(-3), "Holy Thursday"),
    (Rule::Easter(-2), "Good Friday"),
    (Rule::Fixed(5, 1), "Labour Day"),
    (Rule::Easter(43), "Ascension Day"),
    (Rule::Easter(64), "Corpus Christi"),
    (Rule::Easter(71), "Sacred Heart"),
    (Rule::Monday(6, 29), "Saints Peter and Paul"),
    (Rule::Fixed(7, 20), "Independence Day"),
    (Rule::Fixed(8, 7), "Battle of Boyacá"),
    (Rule::Monday(8, 15), "Assumption of Mary"),
    (Rule::Monday(10, 12), "Columbus Day"),
    (Rule::Monday(11, 1), "All Saints' Day"),
    (Rule::Monday(11, 11), "Independence of Cartagena"),
    (Rule::Fixed(12, 8), "Immaculate Conception"),
    (Rule::Fixed(12, 25), "Christmas Day"),
];

/// Easter Sunday of `year` in the Gregorian calendar, from the `computus`
/// crate (the anonymous Gregorian algorithm). `None` outside 1583..=9999,
/// where the algorithm does not apply.
fn easter(year: i16) -> Option<Date> {
    let easter = computus::gregorian(i32::from(year)).ok()?;
    Date::new(
        year,
        i8::try_from(easter.month).ok()?,
        i8::try_from(easter.day).ok()?,
    )
    .ok()
}

/// The day `rule` falls on in `year`; `None` when it cannot be computed
/// (an Easter rule outside the Gregorian range, or a date past year 9999).
fn observed(rule: Rule, year: i16, easter: Option<Date>) -> Option<Date> {
    let date = match rule {
        Rule::Fixed(month, day) => Date::new(year, month, day).ok()?,
        Rule::Monday(month, day) => Date::new(year, month, day).ok()?,
        Rule::Easter(days) => easter?.checked_add(days.days()).ok()?,
    };
    match rule {
        Rule::Monday(..) if date.weekday() != Weekday::Monday => {
            date.nth_weekday(1, Weekday::Monday).ok()
        }
        _ => Some(date),
    }
}

/// The national holidays of `year`, sorted by date (holidays sharing a date
/// keep the order of the law's list). Easter-based holidays are left out
/// for years before 1583, when the Gregorian calendar did not exist yet.
pub fn colombia(year: i16) -> Vec<Holiday> {
    let easter = easter(year);
    let mut holidays: Vec<Holiday> = RULES
        .iter()
        .filter_map(|&(rule, name)| observed(rule, year, easter).map(|date| Holiday { date, name }))
        .collect();
    holidays.sort_by_key(|holiday| holiday.date);
    holidays
}

/// The name of the national holiday observed on `date`, if any (the first
/// of the law's list when two share the date). Allocates nothing.
pub fn is_colombian_holiday(date: Date) -> Option<&'static str> {
    let easter = easter(date.year());
    RULES
        .iter()
        .find(|&&(rule, _)| observed(rule, date.year(), easter) == Some(date))
        .map(|&(_, name)| name)
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;

    /// Checks `year` against the official list, given as (month, day).
    fn check(year: i16, expected: &[(i8, i8)]) {
        let dates: Vec<(i8, i8)> = colombia(year)
            .iter()
            .map(|holiday| (holiday.date.month(), holiday.date.day()))
            .collect();
        assert_eq!(dates, expected, "holidays of {year}");
        for &(month, day) in expected {
            assert!(
                is_colombian_holiday(date(year, month, day)).is_some(),
                "{year}-{month}-{day} should be a holiday"
            );
        }
    }

    // The official lists, as published (e.g. by Banco de la República) and
    // recomputed from the rules above.
    #[test]
    fn holidays_2024() {
        check(
            2024,
            &[
                (1, 1),
                (1, 8),
                (3, 25),
                (3, 28),
                (3, 29),
                (5, 1),
                (5, 13),
                (6, 3),
                (6, 10),
                (7, 1),
                (7, 20),
                (8, 7),
                (8, 19),
                (10, 14),
                (11, 4),
                (11, 11),
                (12, 8),
                (12, 25),
            ],
        );
    }

    #[test]
    fn holidays_2025_two_share_june_30() {
        check(
            2025,
            &[
                (1, 1),
                (1, 6),
                (3, 24),
                (4, 17),
                (4, 18),
                (5, 1),
                (6, 2),
                (6, 23),
                (6, 30),
                (6, 30),
                (7, 20),
                (8, 7),
                (8, 18),
                (10, 13),
                (11, 3),
                (11, 17),
                (12, 8),
                (12, 25),
            ],
        );
        let june_30: Vec<&str> = colombia(2025)
            .iter()
            .filter(|holiday| holiday.date == date(2025, 6, 30))
            .map(|holiday| holiday.name)
            .collect();
        assert_eq!(june_30, ["Sacred Heart", "Saints Peter and Paul"]);
    }

    #[test]
    fn holidays_2026() {
        check(
            2026,
            &[
                (1, 1),
                (1, 12),
                (3, 23),
                (4, 2),
                (4, 3),
                (5, 1),
                (5, 18),
                (6, 8),
                (6, 15),
                (6, 29),
                (7, 20),
                (8, 7),
                (8, 17),
                (10, 12),
                (11, 2),
                (11, 16),
                (12, 8),
                (12, 25),
            ],
        );
    }

    #[test]
    fn names_and_ordinary_days() {
        assert_eq!(is_colombian_holiday(date(2026, 4, 3)), Some("Good Friday"));
        assert_eq!(
            is_colombian_holiday(date(2026, 11, 16)),
            Some("Independence of Cartagena")
        );
        // The legal date of a moved holiday is a working day.
        assert_eq!(is_colombian_holiday(date(2026, 11, 11)), None);
        assert_eq!(is_colombian_holiday(date(2026, 12, 1)), None);
        // Easter Sunday itself is not on the list.
        assert_eq!(is_colombian_holiday(date(2026, 4, 5)), None);
    }

    #[test]
    fn every_year_has_eighteen_and_moved_ones_fall_on_monday() {
        for year in 1984..=2100 {
            let holidays = colombia(year);
            assert_eq!(holidays.len(), 18, "{year}");
            assert!(holidays.windows(2).all(|pair| pair[0].date <= pair[1].date));
            for &(rule, name) in &RULES {
                let day = observed(rule, year, easter(year)).expect("in range");
                if matches!(rule, Rule::Monday(..) | Rule::Easter(1..)) {
                    assert_eq!(day.weekday(), Weekday::Monday, "{name} {year}");
                }
            }
        }
    }

    #[test]
    fn years_without_easter_keep_the_fixed_dates() {
        assert_eq!(colombia(1500).len(), 13);
        assert_eq!(colombia(9999).len(), 18);
    }
}
