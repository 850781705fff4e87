//! Usage by day and model: the billing page's chart (server-rendered SVG), table and CSV.
//!
//! Pure: rows in, text out — no I/O, no clock. [`daily_by_model`] folds usage groups into a
//! day × model table, [`svg`](fn@svg) draws it as a stacked bar chart, [`csv`](fn@csv)
//! writes the groups for a spreadsheet.
//!
//! * **Sums saturate.** Cell, day, model and grand totals add with saturating `i64`
//!   arithmetic (call counts with saturating `u64`): a sum stops at [`Amount::MAX`] (about
//!   9.2 trillion currency units) instead of failing. Real usage over at most [`DAYS_MAX`]
//!   days is nowhere near that, and a page that still renders beats an error page for a
//!   figure nobody can have spent.
//! * **No floats.** The SVG's coordinates are whole hundredths of a pixel ("centipixels",
//!   printed as decimals such as `12.34`). A segment's height is its own amount scaled with
//!   `i128` and floored, so heights grow with amounts, and the segments of a bar never add
//!   up to more than the bar's exact height; each bar is also clipped at the plot's top.
//! * **Axis.** Gridlines step by 1, 2 or 5 × 10ⁿ micro-units, 3 or 4 intervals (4 or 5
//!   labels counting zero), the smallest step that fits the tallest bar.
//! * **Colour.** The Okabe–Ito palette without its yellow (too light on white), then grey
//!   for the models folded into "Other" beyond [`MODELS_SHOWN_MAX`]. Colour is never the only
//!   channel: every segment has a `<title>` with its figure, and the page's table has them all.
//! * **Accessibility.** `role="img"`, labelled by the `<title>` and a `<desc>` that says the
//!   total and the highest day. Their ids are fixed (`usage-chart-title`,
//!   `usage-chart-desc`): one chart per page. No script, no external resources, and every
//!   interpolated text is escaped.
//! * **CSV.** RFC 4180 quoting, and formula injection neutralised: a text field starting
//!   with `=`, `+`, `-`, `@`, tab or CR gets a leading `'` (the amount column stays a number).
//!
//! The files: this one has the types and the aggregation; `layout.rs` places the chart
//! (geometry in centipixels, palette, series, axis, bar heights), `svg.rs` draws it,
//! `csv.rs` writes the CSV, `dates.rs` prints days.

use std::collections::BTreeMap;

use creditgate_domain::Amount;

mod csv;
mod dates;
mod layout;
mod svg;
#[cfg(test)]
mod tests;

pub use self::csv::csv;
pub use self::dates::iso_date;
pub use self::svg::svg;

/// Models drawn in their own colour; the rest are folded into one "Other" series in the
/// chart (the table keeps them all).
pub const MODELS_SHOWN_MAX: usize = 6;
/// Longest range [`daily_by_model`] covers: a longer one keeps its last `DAYS_MAX` days.
pub const DAYS_MAX: i64 = 731;

/// One group of usage charges: a day, a model and a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRow {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// The model; `""` or `"(other)"` when unknown.
    pub model: String,
    /// The API key, when the charges record one.
    pub key_id: Option<String>,
    /// The charges' sum.
    pub amount: Amount,
    /// How many charges.
    pub calls: u64,
}

/// Daily spend by model over a range of days.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DailyUsage {
    /// Every day from the first to the last inclusive, days without usage too.
    pub days: Vec<i64>,
    /// The models with usage in the range, by total spend descending, then name.
    pub models: Vec<String>,
    /// Spend per `[day index][model index]`.
    pub cells: Vec<Vec<Amount>>,
    /// Spend per day (same order as `days`).
    pub day_totals: Vec<Amount>,
    /// Spend per model (same order as `models`).
    pub model_totals: Vec<Amount>,
    /// Spend over the range.
    pub total: Amount,
    /// Calls over the range.
    pub calls: u64,
}

/// The usage of `rows` from `first_day` to `last_day` inclusive (days since 1970-01-01),
/// only `key_id`'s when given. Rows outside the range are ignored; a range longer than
/// [`DAYS_MAX`] keeps its last days, and `first_day > last_day` is an empty range. Sums
/// saturate (see the module docs).
pub fn daily_by_model(
    rows: &[UsageRow],
    first_day: i64,
    last_day: i64,
    key_id: Option<&str>,
) -> DailyUsage {
    let first_day = first_day.max(last_day.saturating_sub(DAYS_MAX - 1));
    let days: Vec<i64> = (first_day..=last_day).collect();
    let kept: Vec<&UsageRow> = rows
        .iter()
        .filter(|row| (first_day..=last_day).contains(&row.day))
        .filter(|row| key_id.is_none_or(|key| row.key_id.as_deref() == Some(key)))
        .collect();
    let models = models_by_spend(&kept);
    let model_index: BTreeMap<&str, usize> = models
        .iter()
        .enumerate()
        .map(|(index, model)| (model.as_str(), index))
        .collect();
    let mut cells = vec![vec![Amount::ZERO; models.len()]; days.len()];
    let mut calls = 0u64;
    for row in kept {
        let day = usize::try_from(row.day - first_day).expect("kept rows are in the range");
        let cell = &mut cells[day][model_index[row.model.as_str()]];
        *cell = add(*cell, row.amount);
        calls = calls.saturating_add(row.calls);
    }
    let day_totals = cells.iter().map(|day| sum(day.iter().copied())).collect();
    let model_totals: Vec<Amount> = (0..models.len())
        .map(|model| sum(cells.iter().map(|day| day[model])))
        .collect();
    DailyUsage {
        total: sum(model_totals.iter().copied()),
        days,
        models,
        cells,
        day_totals,
        model_totals,
        calls,
    }
}

// ----- aggregation --------------------------------------------------------------------------

/// The models of `rows`, by total spend descending, then name.
fn models_by_spend(rows: &[&UsageRow]) -> Vec<String> {
    let mut totals: BTreeMap<&str, Amount> = BTreeMap::new();
    for row in rows {
        let total = totals.entry(row.model.as_str()).or_default();
        *total = add(*total, row.amount);
    }
    let mut models: Vec<(&str, Amount)> = totals.into_iter().collect();
    models.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    models
        .into_iter()
        .map(|(model, _)| model.to_owned())
        .collect()
}

fn add(a: Amount, b: Amount) -> Amount {
    Amount::from_micros(a.micros().saturating_add(b.micros()))
}

fn sum(amounts: impl Iterator<Item = Amount>) -> Amount {
    amounts.fold(Amount::ZERO, add)
}
