//! Days (since 1970-01-01, UTC) as text: `YYYY-MM-DD` for the CSV, the chart's
//! description and its hover titles; "Nov 20" under the bars.

use creditgate_domain::time::civil_from_days;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
/// The days a millisecond `Timestamp` can name; clamping to them keeps the civil-date
/// arithmetic from overflowing on a nonsense day and changes no real one.
const DAY_LIMIT: i64 = i64::MAX / 86_400_000;

fn civil(day: i64) -> (i64, i64, i64) {
    civil_from_days(day.clamp(-DAY_LIMIT, DAY_LIMIT))
}

/// Day `day` (since 1970-01-01) as `YYYY-MM-DD`.
pub fn iso_date(day: i64) -> String {
    let (year, month, day) = civil(day);
    format!("{year:04}-{month:02}-{day:02}")
}

pub(super) fn short_date(day: i64) -> String {
    let (_, month, day) = civil(day);
    let month = usize::try_from(month - 1).expect("civil months are 1 to 12");
    format!("{} {day}", MONTHS[month])
}
