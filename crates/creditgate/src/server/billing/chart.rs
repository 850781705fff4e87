//! Usage by day and model: the billing page's chart (server-rendered SVG), table and CSV.
//!
//! Pure: rows in, text out — no I/O, no clock. [`daily_by_model`] folds usage groups into a
//! day × model table, [`svg`] draws it as a stacked bar chart, [`csv`] writes the groups for a
//! spreadsheet.
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

use std::collections::BTreeMap;
use std::fmt::Write as _;

use creditgate_domain::notice::{escape_html, format_money};
use creditgate_domain::time::civil_from_days;
use creditgate_domain::Amount;

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

/// A stacked bar chart of `usage`'s daily spend by model, amounts in `currency`: one
/// self-contained `<svg>` element to inline in a page (sized by the page's CSS; its
/// `viewBox` keeps the proportions).
pub fn svg(usage: &DailyUsage, currency: &str) -> String {
    let series = chart_series(usage);
    let axis = Axis::fitting(tallest_bar(&series, usage.days.len()));
    let legend_rows = series.len().div_ceil(LEGEND_COLUMNS);
    let height = LEGEND_TOP + LEGEND_ROW * i64::try_from(legend_rows).expect("≤ 3 rows");
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" \
         width=\"{width}\" height=\"{height}\" role=\"img\" \
         aria-labelledby=\"usage-chart-title usage-chart-desc\" \
         font-family=\"system-ui, sans-serif\" font-size=\"12\">\
         <title id=\"usage-chart-title\">Daily spend by model</title>\
         <desc id=\"usage-chart-desc\">{desc}</desc>",
        width = px(WIDTH),
        height = px(height),
        desc = escape_html(&describe(usage, currency)),
    );
    out.push_str(&gridlines(&axis, currency));
    if series.is_empty() {
        out.push_str(&empty_notice());
    } else {
        out.push_str(&bars(&usage.days, &series, axis.top(), currency));
        out.push_str(&legend(&series));
    }
    out.push_str(&day_labels(&usage.days));
    out.push_str(&axis_lines());
    out.push_str("</svg>");
    out
}

/// `rows` as CSV for a spreadsheet: a `date,model,key_id,calls,amount,currency` header,
/// then one line per row by date, model and key; dates `YYYY-MM-DD`, amounts exact
/// decimals as [`Amount`] displays them, lines ending in CRLF. Quoting follows RFC 4180;
/// text fields starting with `=`, `+`, `-`, `@`, tab or CR get a leading `'` so that a
/// spreadsheet does not run them as formulas.
pub fn csv(rows: &[UsageRow], currency: &str) -> String {
    let mut sorted: Vec<&UsageRow> = rows.iter().collect();
    // Every field in the key, so the output does not depend on the input's order.
    sorted.sort_by(|a, b| {
        (a.day, &a.model, &a.key_id, a.calls, a.amount)
            .cmp(&(b.day, &b.model, &b.key_id, b.calls, b.amount))
    });
    let mut out = String::from("date,model,key_id,calls,amount,currency\r\n");
    for row in sorted {
        let fields = [
            text_field(&iso_date(row.day)),
            text_field(&row.model),
            text_field(row.key_id.as_deref().unwrap_or("")),
            row.calls.to_string(),
            row.amount.to_string(),
            text_field(currency),
        ];
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
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

// ----- layout -------------------------------------------------------------------------------

/// Centipixels (hundredths of a pixel) per pixel: every coordinate below is in centipixels.
const CENTI: i64 = 100;
const WIDTH: i64 = 720 * CENTI;
const PLOT_LEFT: i64 = 84 * CENTI;
const PLOT_RIGHT: i64 = 696 * CENTI;
const PLOT_WIDTH: i64 = PLOT_RIGHT - PLOT_LEFT;
const PLOT_TOP: i64 = 12 * CENTI;
const PLOT_HEIGHT: i64 = 220 * CENTI;
const PLOT_BOTTOM: i64 = PLOT_TOP + PLOT_HEIGHT;
const DAY_LABEL_BASELINE: i64 = PLOT_BOTTOM + 18 * CENTI;
const DAY_LABELS_MAX: usize = 8;
const LEGEND_TOP: i64 = PLOT_BOTTOM + 36 * CENTI;
const LEGEND_ROW: i64 = 22 * CENTI;
const LEGEND_COLUMNS: usize = 3;
const LEGEND_COLUMN_WIDTH: i64 = PLOT_WIDTH / 3;
const LEGEND_SWATCH: i64 = 12 * CENTI;
/// Longest model name the legend shows whole; longer ones end in "…" (in full in a title).
const LEGEND_NAME_CHARS_MAX: usize = 26;
/// The gap on each side of a bar, as a fraction (1/n) of its day's slot.
const BAR_GAP_DIVISOR: i64 = 6;
/// Gridline intervals: 3 or 4, so 4 or 5 labels counting zero.
const GRIDLINE_INTERVALS_MIN: i64 = 3;
const GRIDLINE_INTERVALS_MAX: i64 = 4;
/// The tallest bar the axis grows to fit (micro-units); taller ones are clipped at the top.
/// With it, every axis top (at most 4 × 2·10¹⁸) fits an `i64`.
const AXIS_FIT_MAX: i64 = 8_000_000_000_000_000_000;
/// What the axis fits when nothing is drawn: one currency unit.
const AXIS_FIT_EMPTY: i64 = 1_000_000;
/// Okabe–Ito, without yellow, darkest first.
const PALETTE: [&str; MODELS_SHOWN_MAX] = [
    "#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9",
];
const OTHER_COLOUR: &str = "#6B7280";
const TEXT_COLOUR: &str = "#1A1A1A";
const MUTED_COLOUR: &str = "#4A4F57";
const GRID_COLOUR: &str = "#D9DCE1";
const AXIS_COLOUR: &str = "#6B7280";

/// One coloured series of the chart: a model, or the models folded into "Other".
struct Series {
    name: String,
    colour: &'static str,
    /// Per day.
    amounts: Vec<Amount>,
}

/// The y axis: `intervals` gridline intervals of `step` micro-units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Axis {
    step: i64,
    intervals: i64,
}

impl Axis {
    /// The smallest 1/2/5 × 10ⁿ step that fits `tallest` micro-units in at most
    /// [`GRIDLINE_INTERVALS_MAX`] intervals.
    fn fitting(tallest: i64) -> Axis {
        let target = if tallest > 0 {
            tallest.min(AXIS_FIT_MAX)
        } else {
            AXIS_FIT_EMPTY
        };
        let mut power: i64 = 1;
        loop {
            for multiple in [1, 2, 5] {
                let step = multiple * power;
                // Ceiling division that cannot overflow (target + step could).
                let intervals = target / step + i64::from(target % step != 0);
                if intervals <= GRIDLINE_INTERVALS_MAX {
                    let intervals = intervals.max(GRIDLINE_INTERVALS_MIN);
                    return Axis { step, intervals };
                }
            }
            power = power
                .checked_mul(10)
                .expect("a step of 2·10¹⁸ fits any target up to AXIS_FIT_MAX");
        }
    }

    /// The amount at the top of the plot (micro-units).
    fn top(self) -> i64 {
        self.step * self.intervals
    }
}

/// The series drawn: the first [`MODELS_SHOWN_MAX`] models, then "Other".
fn chart_series(usage: &DailyUsage) -> Vec<Series> {
    let mut series: Vec<Series> = usage
        .models
        .iter()
        .take(MODELS_SHOWN_MAX)
        .enumerate()
        .map(|(model, name)| Series {
            name: model_name(name).to_owned(),
            colour: PALETTE[model],
            amounts: usage.cells.iter().map(|day| day[model]).collect(),
        })
        .collect();
    let folded = usage.models.len().saturating_sub(MODELS_SHOWN_MAX);
    if folded > 0 {
        let plural = if folded == 1 { "" } else { "s" };
        series.push(Series {
            name: format!("Other ({folded} model{plural})"),
            colour: OTHER_COLOUR,
            amounts: usage
                .cells
                .iter()
                .map(|day| sum(day[MODELS_SHOWN_MAX..].iter().copied()))
                .collect(),
        });
    }
    series
}

fn model_name(model: &str) -> &str {
    if model.is_empty() {
        "(unknown)"
    } else {
        model
    }
}

/// The largest day's drawn spend (only positive amounts are drawn).
fn tallest_bar(series: &[Series], days: usize) -> i64 {
    (0..days)
        .map(|day| sum(series.iter().map(|s| s.amounts[day].max_zero())).micros())
        .max()
        .unwrap_or(0)
}

/// The height of `amount` on an axis topped at `axis_top` micro-units (> 0), floored and
/// at most the plot's height; negative amounts have none.
fn scaled_height(amount: Amount, axis_top: i64) -> i64 {
    let micros = i128::from(amount.micros().max(0));
    let height = micros * i128::from(PLOT_HEIGHT) / i128::from(axis_top);
    i64::try_from(height.min(i128::from(PLOT_HEIGHT))).expect("at most the plot height")
}

/// The heights of one bar's segments, bottom first, clipped so that they stack within the
/// plot.
fn segment_heights(amounts: impl Iterator<Item = Amount>, axis_top: i64) -> Vec<i64> {
    let mut room = PLOT_HEIGHT;
    amounts
        .map(|amount| {
            let height = scaled_height(amount, axis_top).min(room);
            room -= height;
            height
        })
        .collect()
}

/// The horizontal extent `[start, end)` of day `index`'s slot among `days`.
fn slot(index: usize, days: usize) -> (i64, i64) {
    let at = |index: usize| {
        let index = i64::try_from(index).expect("at most DAYS_MAX days");
        let days = i64::try_from(days).expect("at most DAYS_MAX days");
        PLOT_LEFT + index * PLOT_WIDTH / days
    };
    (at(index), at(index + 1))
}

// ----- drawing ------------------------------------------------------------------------------

fn describe(usage: &DailyUsage, currency: &str) -> String {
    let (Some(first), Some(last)) = (usage.days.first(), usage.days.last()) else {
        return "No usage in this period.".to_owned();
    };
    let count = usage.days.len();
    let period = if count == 1 {
        format!("1 day ({})", iso_date(*first))
    } else {
        format!("{count} days ({} to {})", iso_date(*first), iso_date(*last))
    };
    if usage.models.is_empty() {
        return format!("No usage in this period: {period}.");
    }
    // The first of the highest days: max_by_key keeps the last of equals, so reverse.
    let (highest_day, highest) = usage
        .days
        .iter()
        .zip(&usage.day_totals)
        .rev()
        .max_by_key(|(_, total)| **total)
        .expect("the range has days");
    format!(
        "Total {} over {period}; highest day {} at {}.",
        format_money(usage.total, currency),
        iso_date(*highest_day),
        format_money(*highest, currency),
    )
}

fn gridlines(axis: &Axis, currency: &str) -> String {
    let mut out = format!("<g fill=\"{MUTED_COLOUR}\" text-anchor=\"end\">");
    for interval in 0..=axis.intervals {
        let y = PLOT_BOTTOM - interval * PLOT_HEIGHT / axis.intervals;
        let label = format_money(Amount::from_micros(axis.step * interval), currency);
        let _ = write!(
            out,
            "<line x1=\"{left}\" y1=\"{y}\" x2=\"{right}\" y2=\"{y}\" stroke=\"{GRID_COLOUR}\"/>\
             <text x=\"{label_x}\" y=\"{label_y}\">{label}</text>",
            left = px(PLOT_LEFT),
            right = px(PLOT_RIGHT),
            y = px(y),
            label_x = px(PLOT_LEFT - 8 * CENTI),
            label_y = px(y + 4 * CENTI),
            label = escape_html(&label),
        );
    }
    out.push_str("</g>");
    out
}

fn bars(days: &[i64], series: &[Series], axis_top: i64, currency: &str) -> String {
    let mut out = String::from("<g stroke=\"#FFFFFF\" stroke-width=\"0.5\">");
    for (index, day) in days.iter().enumerate() {
        let (start, end) = slot(index, days.len());
        let gap = (end - start) / BAR_GAP_DIVISOR;
        let amounts = series.iter().map(|s| s.amounts[index]);
        let mut top = PLOT_BOTTOM;
        for (s, height) in series.iter().zip(segment_heights(amounts, axis_top)) {
            if height == 0 {
                continue;
            }
            top -= height;
            let hover = format!(
                "{}, {}: {}",
                s.name,
                iso_date(*day),
                format_money(s.amounts[index], currency)
            );
            let _ = write!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\">\
                 <title>{}</title></rect>",
                px(start + gap),
                px(top),
                px(end - start - 2 * gap),
                px(height),
                s.colour,
                escape_html(&hover),
            );
        }
    }
    out.push_str("</g>");
    out
}

fn legend(series: &[Series]) -> String {
    let mut out = format!("<g fill=\"{TEXT_COLOUR}\">");
    for (index, s) in series.iter().enumerate() {
        let column = i64::try_from(index % LEGEND_COLUMNS).expect("small");
        let row = i64::try_from(index / LEGEND_COLUMNS).expect("small");
        let x = PLOT_LEFT + column * LEGEND_COLUMN_WIDTH;
        let y = LEGEND_TOP + row * LEGEND_ROW;
        let shown = truncate(&s.name, LEGEND_NAME_CHARS_MAX);
        out.push_str("<g>");
        if shown != s.name {
            let _ = write!(out, "<title>{}</title>", escape_html(&s.name));
        }
        let _ = write!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"{swatch}\" height=\"{swatch}\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"{}\">{}</text></g>",
            px(x),
            px(y),
            s.colour,
            px(x + LEGEND_SWATCH + 6 * CENTI),
            px(y + 10 * CENTI),
            escape_html(&shown),
            swatch = px(LEGEND_SWATCH),
        );
    }
    out.push_str("</g>");
    out
}

fn empty_notice() -> String {
    format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{MUTED_COLOUR}\" \
         font-size=\"14\">No usage in this period</text>",
        px(PLOT_LEFT + PLOT_WIDTH / 2),
        px(PLOT_TOP + PLOT_HEIGHT / 2),
    )
}

/// "Nov 20" under a readable subset of the days: at most [`DAY_LABELS_MAX`], evenly spaced,
/// the first day always.
fn day_labels(days: &[i64]) -> String {
    let mut out = format!("<g fill=\"{MUTED_COLOUR}\" text-anchor=\"middle\" font-size=\"11\">");
    let every = days.len().div_ceil(DAY_LABELS_MAX).max(1);
    for (index, day) in days.iter().enumerate().step_by(every) {
        let (start, end) = slot(index, days.len());
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\">{}</text>",
            px((start + end) / 2),
            px(DAY_LABEL_BASELINE),
            escape_html(&short_date(*day)),
        );
    }
    out.push_str("</g>");
    out
}

fn axis_lines() -> String {
    format!(
        "<g stroke=\"{AXIS_COLOUR}\"><line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{bottom}\"/>\
         <line x1=\"{left}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\"/></g>",
        left = px(PLOT_LEFT),
        right = px(PLOT_RIGHT),
        top = px(PLOT_TOP),
        bottom = px(PLOT_BOTTOM),
    )
}

/// Centipixels as a decimal number of pixels: 1234 → "12.34", 1250 → "12.5", 1200 → "12".
fn px(centi: i64) -> String {
    let sign = if centi < 0 { "-" } else { "" };
    let (whole, fraction) = (centi.unsigned_abs() / 100, centi.unsigned_abs() % 100);
    match fraction {
        0 => format!("{sign}{whole}"),
        f if f % 10 == 0 => format!("{sign}{whole}.{}", f / 10),
        f => format!("{sign}{whole}.{f:02}"),
    }
}

/// `text` cut to `chars_max` characters, the last one "…" when cut.
fn truncate(text: &str, chars_max: usize) -> String {
    if text.chars().count() <= chars_max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(chars_max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

// ----- dates and CSV fields -----------------------------------------------------------------

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

fn short_date(day: i64) -> String {
    let (_, month, day) = civil(day);
    let month = usize::try_from(month - 1).expect("civil months are 1 to 12");
    format!("{} {day}", MONTHS[month])
}

/// A CSV text field: neutralised against formulas, then quoted when needed.
fn text_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2026-11-20.
    const NOV_20: i64 = 20_777;

    fn row(day: i64, model: &str, key: Option<&str>, micros: i64, calls: u64) -> UsageRow {
        UsageRow {
            day,
            model: model.to_owned(),
            key_id: key.map(str::to_owned),
            amount: Amount::from_micros(micros),
            calls,
        }
    }

    fn micros(amounts: &[Amount]) -> Vec<i64> {
        amounts.iter().map(|amount| amount.micros()).collect()
    }

    #[test]
    fn nov_20_is_the_day_the_tests_think() {
        assert_eq!(iso_date(NOV_20), "2026-11-20");
        assert_eq!(short_date(NOV_20), "Nov 20");
        assert_eq!(short_date(NOV_20 + 12), "Dec 2");
        assert_eq!(iso_date(0), "1970-01-01");
    }

    /// (case, rows, first day, last day, key) → (models, cells in micros, model totals, total, calls).
    #[test]
    fn daily_by_model_table() {
        struct Case {
            name: &'static str,
            rows: Vec<UsageRow>,
            first: i64,
            last: i64,
            key: Option<&'static str>,
            models: &'static [&'static str],
            cells: Vec<Vec<i64>>,
            model_totals: &'static [i64],
            total: i64,
            calls: u64,
        }
        let d = NOV_20;
        let cases = [
            Case {
                name: "empty days are filled",
                rows: vec![row(d, "a", None, 5, 1), row(d + 2, "a", None, 7, 2)],
                first: d,
                last: d + 3,
                key: None,
                models: &["a"],
                cells: vec![vec![5], vec![0], vec![7], vec![0]],
                model_totals: &[12],
                total: 12,
                calls: 3,
            },
            Case {
                name: "filter by key",
                rows: vec![
                    row(d, "a", Some("k1"), 5, 1),
                    row(d, "a", Some("k2"), 100, 10),
                    row(d, "b", None, 1_000, 100),
                    row(d + 1, "b", Some("k1"), 3, 1),
                ],
                first: d,
                last: d + 1,
                key: Some("k1"),
                models: &["a", "b"],
                cells: vec![vec![5, 0], vec![0, 3]],
                model_totals: &[5, 3],
                total: 8,
                calls: 2,
            },
            Case {
                name: "no key filter keeps every key",
                rows: vec![
                    row(d, "a", Some("k1"), 5, 1),
                    row(d, "a", Some("k2"), 100, 10),
                    row(d, "a", None, 1_000, 100),
                ],
                first: d,
                last: d,
                key: None,
                models: &["a"],
                cells: vec![vec![1_105]],
                model_totals: &[1_105],
                total: 1_105,
                calls: 111,
            },
            Case {
                name: "out of range is ignored, models too",
                rows: vec![
                    row(d - 1, "early", None, 50, 1),
                    row(d, "a", None, 5, 1),
                    row(d + 2, "late", None, 50, 1),
                ],
                first: d,
                last: d + 1,
                key: None,
                models: &["a"],
                cells: vec![vec![5], vec![0]],
                model_totals: &[5],
                total: 5,
                calls: 1,
            },
            Case {
                name: "models by spend descending, then name",
                rows: vec![
                    row(d, "zeta", None, 10, 1),
                    row(d, "beta", None, 30, 1),
                    row(d, "alpha", None, 10, 1),
                    row(d + 1, "zeta", None, 25, 1),
                    row(d, "", None, 1, 1),
                ],
                first: d,
                last: d + 1,
                key: None,
                models: &["zeta", "beta", "alpha", ""],
                cells: vec![vec![10, 30, 10, 1], vec![25, 0, 0, 0]],
                model_totals: &[35, 30, 10, 1],
                total: 76,
                calls: 5,
            },
            Case {
                name: "inverted range is empty",
                rows: vec![row(d, "a", None, 5, 1)],
                first: d + 1,
                last: d,
                key: None,
                models: &[],
                cells: vec![],
                model_totals: &[],
                total: 0,
                calls: 0,
            },
            Case {
                name: "sums saturate",
                rows: vec![row(d, "a", None, i64::MAX, 1), row(d, "a", None, 1, 1)],
                first: d,
                last: d,
                key: None,
                models: &["a"],
                cells: vec![vec![i64::MAX]],
                model_totals: &[i64::MAX],
                total: i64::MAX,
                calls: 2,
            },
        ];
        for case in cases {
            let usage = daily_by_model(&case.rows, case.first, case.last, case.key);
            let expected_days: Vec<i64> = (case.first..=case.last).collect();
            assert_eq!(usage.days, expected_days, "{}: days", case.name);
            assert_eq!(usage.models, case.models, "{}: models", case.name);
            let cells: Vec<Vec<i64>> = usage.cells.iter().map(|day| micros(day)).collect();
            assert_eq!(cells, case.cells, "{}: cells", case.name);
            assert_eq!(
                micros(&usage.model_totals),
                case.model_totals,
                "{}",
                case.name
            );
            let day_totals: Vec<i64> = case
                .cells
                .iter()
                .map(|day| day.iter().fold(0i64, |a, b| a.saturating_add(*b)))
                .collect();
            assert_eq!(micros(&usage.day_totals), day_totals, "{}", case.name);
            assert_eq!(usage.total.micros(), case.total, "{}: total", case.name);
            assert_eq!(usage.calls, case.calls, "{}: calls", case.name);
        }
    }

    #[test]
    fn a_range_longer_than_days_max_keeps_its_last_days() {
        let rows = [row(0, "old", None, 5, 1), row(1_000, "new", None, 7, 1)];
        let usage = daily_by_model(&rows, 0, 1_000, None);
        assert_eq!(usage.days.len(), usize::try_from(DAYS_MAX).unwrap());
        assert_eq!(usage.days.first(), Some(&(1_000 - DAYS_MAX + 1)));
        assert_eq!(usage.models, ["new"]);
        let extreme = daily_by_model(&rows, i64::MIN, i64::MAX, None);
        assert_eq!(extreme.days.len(), usize::try_from(DAYS_MAX).unwrap());
        assert!(extreme.models.is_empty());
    }

    /// tallest bar (micros) → (step, intervals).
    #[test]
    fn axis_steps_are_round_and_fit() {
        let table: &[(i64, i64, i64)] = &[
            (0, 500_000, 3),
            (-5, 500_000, 3),
            (1, 1, 3),
            (4, 1, 4),
            (5, 2, 3),
            (3_000_000, 1_000_000, 3),
            (3_000_001, 1_000_000, 4),
            (4_000_001, 2_000_000, 3),
            (12_340_000, 5_000_000, 3),
            (16_000_000, 5_000_000, 4),
            (20_000_001, 10_000_000, 3),
            (i64::MAX, 2_000_000_000_000_000_000, 4),
        ];
        for (tallest, step, intervals) in table {
            let axis = Axis::fitting(*tallest);
            assert_eq!(
                (axis.step, axis.intervals),
                (*step, *intervals),
                "tallest {tallest}"
            );
            assert!(axis.top() >= (*tallest).clamp(1, AXIS_FIT_MAX));
        }
    }

    #[test]
    fn px_prints_centipixels_as_decimals() {
        let table = [
            (0, "0"),
            (1_200, "12"),
            (1_250, "12.5"),
            (1_234, "12.34"),
            (5, "0.05"),
        ];
        for (centi, text) in table {
            assert_eq!(px(centi), text);
        }
        assert_eq!(px(-150), "-1.5");
    }

    #[test]
    fn truncate_cuts_by_characters() {
        assert_eq!(truncate("short", 26), "short");
        assert_eq!(truncate("ééééé", 3), "éé…");
    }

    fn tiny() -> DailyUsage {
        let rows = [
            row(NOV_20, "gpt-<b>&\"q\"", None, 1_500_000, 3),
            row(NOV_20, "small", None, 500_000, 1),
            row(NOV_20 + 1, "small", None, 250_000, 1),
        ];
        daily_by_model(&rows, NOV_20, NOV_20 + 2, None)
    }

    #[test]
    fn svg_of_a_tiny_input() {
        let svg = svg(&tiny(), "USD");
        let fragments = [
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 720 290\" width=\"720\" height=\"290\" role=\"img\"",
            "aria-labelledby=\"usage-chart-title usage-chart-desc\"",
            "<title id=\"usage-chart-title\">Daily spend by model</title>",
            "<desc id=\"usage-chart-desc\">Total $2.25 over 3 days (2026-11-20 to 2026-11-22); highest day 2026-11-20 at $2.00.</desc>",
            // Axis: the tallest day, $2.00, fits 4 steps of $0.50 exactly.
            ">$0.00</text>",
            ">$0.50</text>",
            ">$2.00</text>",
            // Day 1: $1.50 of $2 is 165 of the 220 px plot; $0.50 stacks on it to the top.
            "<rect x=\"118\" y=\"67\" width=\"136\" height=\"165\" fill=\"#0072B2\"><title>gpt-&lt;b&gt;&amp;&quot;q&quot;, 2026-11-20: $1.50</title></rect>",
            "<rect x=\"118\" y=\"12\" width=\"136\" height=\"55\" fill=\"#D55E00\"><title>small, 2026-11-20: $0.50</title></rect>",
            "<rect x=\"322\" y=\"204.5\" width=\"136\" height=\"27.5\" fill=\"#D55E00\"><title>small, 2026-11-21: $0.25</title></rect>",
            ">Nov 20</text>",
            ">Nov 21</text>",
            ">Nov 22</text>",
            ">gpt-&lt;b&gt;&amp;&quot;q&quot;</text>",
        ];
        for fragment in fragments {
            assert!(svg.contains(fragment), "missing {fragment:?} in {svg}");
        }
        assert!(svg.ends_with("</svg>"));
        assert!(
            !svg.contains(">$2.50</text>"),
            "the axis ends at the tallest day"
        );
        assert!(!svg.contains("No usage"));
        assert_eq!(svg, super::svg(&tiny(), "USD"), "deterministic");
    }

    #[test]
    fn svg_escapes_every_text_and_has_no_script_or_external_resource() {
        let hostile = "<script>alert('x')</script>&";
        let usage = daily_by_model(
            &[row(NOV_20, hostile, None, 1_000, 1)],
            NOV_20,
            NOV_20,
            None,
        );
        let svg = svg(&usage, "<EUR>");
        assert!(!svg.contains("<script"));
        assert!(!svg.contains("alert('x')"));
        assert!(svg.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"));
        assert!(svg.contains("0.001 &lt;EUR&gt;"));
        assert!(!svg.contains("<EUR>"));
        assert!(!svg.contains("href"));
        assert!(!svg.contains("url("));
        assert!(!svg.contains("style"));
    }

    #[test]
    fn svg_of_an_empty_range_draws_axes_and_says_so() {
        for (first, last) in [(NOV_20, NOV_20 + 29), (NOV_20 + 1, NOV_20)] {
            let svg = svg(&daily_by_model(&[], first, last, None), "USD");
            assert!(svg.contains(">No usage in this period</text>"), "{svg}");
            assert!(svg.contains("<desc id=\"usage-chart-desc\">No usage in this period"));
            assert!(svg.contains(">$0.00</text>"));
            assert!(svg.contains("stroke=\"#6B7280\"><line"), "axis lines");
            assert!(!svg.contains("<rect"), "no bars, no legend");
        }
    }

    #[test]
    fn svg_folds_models_beyond_the_shown_max_into_other() {
        let rows: Vec<UsageRow> = (0..9)
            .map(|m| row(NOV_20, &format!("model-{m}"), None, 1_000 * (10 - m), 1))
            .collect();
        let usage = daily_by_model(&rows, NOV_20, NOV_20, None);
        assert_eq!(usage.models.len(), 9, "the table keeps all");
        let svg = svg(&usage, "USD");
        assert!(svg.contains(">model-5</text>"));
        assert!(!svg.contains(">model-6</text>"));
        assert!(svg.contains(">Other (3 models)</text>"));
        assert!(svg.contains("<title>Other (3 models), 2026-11-20: $0.009</title>"));
        assert_eq!(
            svg.matches("fill=\"#6B7280\"").count(),
            2,
            "segment and swatch"
        );
    }

    #[test]
    fn svg_labels_a_readable_subset_of_days() {
        let usage = daily_by_model(&[row(NOV_20, "a", None, 1, 1)], NOV_20, NOV_20 + 89, None);
        let svg = svg(&usage, "USD");
        let labels = svg.matches("font-size=\"11\">").count();
        assert_eq!(labels, 1, "one group of day labels");
        let group = svg.split("font-size=\"11\">").nth(1).unwrap();
        let group = group.split("</g>").next().unwrap();
        let count = group.matches("<text").count();
        assert!((2..=DAY_LABELS_MAX).contains(&count), "{count} labels");
        assert!(
            group.contains(">Nov 20</text>"),
            "the first day is labelled"
        );
    }

    #[test]
    fn legend_titles_long_names_in_full() {
        let long = "a-model-name-that-is-much-longer-than-the-legend";
        let usage = daily_by_model(&[row(NOV_20, long, None, 1, 1)], NOV_20, NOV_20, None);
        let svg = svg(&usage, "USD");
        assert!(svg.contains(&format!("<g><title>{long}</title>")));
        assert!(svg.contains(">a-model-name-that-is-much…</text>"));
    }

    #[test]
    fn svg_of_extreme_amounts_stays_in_the_plot() {
        let rows = [
            row(NOV_20, "huge", None, i64::MAX, 1),
            row(NOV_20, "more", None, i64::MAX, 1),
            row(NOV_20 + 1, "refund", None, i64::MIN, 1),
        ];
        let svg = svg(&daily_by_model(&rows, NOV_20, NOV_20 + 1, None), "USD");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert!(!svg.contains("=\"-"), "no negative coordinate: {svg}");
        assert!(
            svg.contains("height=\"220\" fill=\"#0072B2\""),
            "clipped at the top"
        );
        assert!(
            svg.contains(">$8000000000000.00</text>"),
            "the axis stops growing"
        );
    }

    fn arbitrary_rows() -> impl Strategy<Value = Vec<UsageRow>> {
        let row = (
            0i64..12,
            0usize..9,
            0usize..3,
            0i64..1_000_000_000_000,
            0u64..1_000,
        );
        proptest::collection::vec(row, 0..60).prop_map(|rows| {
            rows.into_iter()
                .map(|(day, model, key, micros, calls)| UsageRow {
                    day: NOV_20 - 1 + day,
                    model: format!("m{model}"),
                    key_id: [None, Some("k1".to_owned()), Some("k2".to_owned())][key].clone(),
                    amount: Amount::from_micros(micros),
                    calls,
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn cells_add_up_to_the_totals(rows in arbitrary_rows(), key in 0usize..3) {
            let key = [None, Some("k1"), Some("k2")][key];
            let usage = daily_by_model(&rows, NOV_20, NOV_20 + 9, key);
            let cells: i128 = usage.cells.iter().flatten().map(|a| i128::from(a.micros())).sum();
            let days: i128 = usage.day_totals.iter().map(|a| i128::from(a.micros())).sum();
            let models: i128 = usage.model_totals.iter().map(|a| i128::from(a.micros())).sum();
            let total = i128::from(usage.total.micros());
            prop_assert_eq!(cells, total);
            prop_assert_eq!(days, total);
            prop_assert_eq!(models, total);
            let kept = rows.iter().filter(|r| (NOV_20..=NOV_20 + 9).contains(&r.day))
                .filter(|r| key.is_none() || r.key_id.as_deref() == key);
            let expected: i128 = kept.map(|r| i128::from(r.amount.micros())).sum();
            prop_assert_eq!(total, expected);
            prop_assert!(usage.model_totals.windows(2).all(|pair| pair[0] >= pair[1]));
        }

        #[test]
        fn bars_fit_the_plot(rows in arbitrary_rows()) {
            let usage = daily_by_model(&rows, NOV_20, NOV_20 + 9, None);
            let series = chart_series(&usage);
            let axis = Axis::fitting(tallest_bar(&series, usage.days.len()));
            for day in 0..usage.days.len() {
                let heights = segment_heights(series.iter().map(|s| s.amounts[day]), axis.top());
                prop_assert!(heights.iter().all(|height| *height >= 0));
                prop_assert!(heights.iter().sum::<i64>() <= PLOT_HEIGHT);
            }
            let svg = svg(&usage, "USD");
            prop_assert!(!svg.contains("NaN") && !svg.contains("inf"));
            prop_assert!(!svg.contains("=\"-"), "no negative coordinate");
        }

        #[test]
        fn heights_grow_with_amounts(
            a in i64::MIN..=i64::MAX,
            b in i64::MIN..=i64::MAX,
            tallest in 1i64..=i64::MAX,
        ) {
            let (low, high) = (a.min(b), a.max(b));
            let top = Axis::fitting(tallest).top();
            let (low, high) = (
                scaled_height(Amount::from_micros(low), top),
                scaled_height(Amount::from_micros(high), top),
            );
            prop_assert!(0 <= low && low <= high && high <= PLOT_HEIGHT);
        }

        #[test]
        fn clipped_segments_stack_within_the_plot(
            amounts in proptest::collection::vec(i64::MIN..=i64::MAX, 0..8),
            tallest in 1i64..=i64::MAX,
        ) {
            let top = Axis::fitting(tallest).top();
            let heights = segment_heights(amounts.iter().map(|m| Amount::from_micros(*m)), top);
            prop_assert!(heights.iter().all(|height| *height >= 0));
            prop_assert!(heights.iter().sum::<i64>() <= PLOT_HEIGHT);
        }
    }

    #[test]
    fn csv_sorts_and_formats() {
        let rows = [
            row(NOV_20 + 1, "a", None, 1, 1),
            row(NOV_20, "b", Some("k1"), 12_500_000, 2),
            row(NOV_20, "a", Some("k2"), 375, 3),
            row(NOV_20, "a", None, -1_500_000, 4),
        ];
        let expected = "date,model,key_id,calls,amount,currency\r\n\
                        2026-11-20,a,,4,-1.50,USD\r\n\
                        2026-11-20,a,k2,3,0.000375,USD\r\n\
                        2026-11-20,b,k1,2,12.50,USD\r\n\
                        2026-11-21,a,,1,0.000001,USD\r\n";
        assert_eq!(csv(&rows, "USD"), expected);
        assert_eq!(
            csv(&[], "USD"),
            "date,model,key_id,calls,amount,currency\r\n"
        );
    }

    /// field → CSV text.
    #[test]
    fn csv_quotes_and_neutralises_text_fields() {
        let table = [
            ("plain", "plain"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\nlines", "\"two\nlines\""),
            ("cr\rhere", "\"cr\rhere\""),
            ("=SUM(A1:A9)", "'=SUM(A1:A9)"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@cmd", "'@cmd"),
            ("\tx", "'\tx"),
            ("\rx", "\"'\rx\""),
            (
                "=HYPERLINK(\"x\",\"y\")",
                "\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\"",
            ),
            ("a=b", "a=b"),
            ("", ""),
        ];
        for (field, expected) in table {
            assert_eq!(text_field(field), expected, "field {field:?}");
        }
        let rows = [row(NOV_20, "=cmd|' /C calc'!A0", Some("-k"), -2_000_000, 1)];
        let line = csv(&rows, "@USD").lines().nth(1).unwrap().to_owned();
        assert_eq!(line, "2026-11-20,'=cmd|' /C calc'!A0,'-k,1,-2.00,'@USD");
    }
}
