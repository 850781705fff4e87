//! Time as the core sees it: a value handed in, never read from a clock.

use std::fmt;

/// Milliseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `unix_ms` milliseconds after the Unix epoch.
    pub const fn from_unix_ms(unix_ms: i64) -> Timestamp {
        Timestamp(unix_ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_ms(self) -> i64 {
        self.0
    }

    /// `self + ms`, saturating at the ends of time rather than overflowing.
    pub const fn plus_ms(self, ms: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }
}

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

impl Timestamp {
    /// The first instant of this timestamp's calendar month (UTC): the start of a monthly
    /// spend period.
    pub fn month_start(self) -> Timestamp {
        let days = self.0.div_euclid(DAY_MS);
        let (year, month, _) = civil_from_days(days);
        Timestamp(days_from_civil(year, month, 1).saturating_mul(DAY_MS))
    }

    /// The first instant of the next calendar month (UTC): when a monthly spend limit resets.
    pub fn next_month_start(self) -> Timestamp {
        let days = self.0.div_euclid(DAY_MS);
        let (year, month, _) = civil_from_days(days);
        let (year, month) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
        Timestamp(days_from_civil(year, month, 1).saturating_mul(DAY_MS))
    }

    /// `yyyymm` of this timestamp's calendar month (UTC): names a monthly period in ids.
    pub fn month_number(self) -> i64 {
        let (year, month, _) = civil_from_days(self.0.div_euclid(DAY_MS));
        year * 100 + month
    }
}

impl Timestamp {
    /// As RFC 3339 in UTC, to the second (`2026-12-08T01:02:03Z`), as rate-limit reset headers
    /// carry it.
    pub fn rfc3339(self) -> String {
        let (year, month, day) = civil_from_days(self.0.div_euclid(DAY_MS));
        let s = self.0.rem_euclid(DAY_MS) / 1_000;
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            s / 3_600,
            s / 60 % 60,
            s % 60
        )
    }
}

/// (year, month 1–12, day 1–31) of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm, proleptic Gregorian calendar).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The day count since 1970-01-01 of a civil date.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_to_the_second() {
        assert_eq!(Timestamp::from_unix_ms(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp::from_unix_ms(1_796_691_723_999).rfc3339(),
            "2026-12-08T01:02:03Z"
        );
    }

    #[test]
    fn month_starts() {
        // (instant, its month's start), unix ms
        let table = [
            (0, 0),
            (1_764_000_000_000, 1_761_955_200_000), // 2025-11-24 → 2025-11-01
            (1_709_251_199_999, 1_706_745_600_000), // 2024-02-29 23:59:59.999 → 2024-02-01
            (1_709_251_200_000, 1_709_251_200_000), // 2024-03-01 00:00 → itself
            (1_735_689_599_000, 1_733_011_200_000), // 2024-12-31 23:59:59 → 2024-12-01
            (-1, -2_678_400_000),                   // 1969-12-31 → 1969-12-01
        ];
        for (at, start) in table {
            assert_eq!(
                Timestamp::from_unix_ms(at).month_start(),
                Timestamp::from_unix_ms(start),
                "{at}"
            );
        }
    }
}
