//! Where the chart's pieces go and in what colour: the geometry (in centipixels), the
//! palette, the series drawn, the y axis and the bars' heights. No text is produced here;
//! `svg.rs` draws what this places.

use creditgate_domain::Amount;

use super::{sum, DailyUsage, MODELS_SHOWN_MAX};

/// Centipixels (hundredths of a pixel) per pixel: every coordinate below is in centipixels.
pub(super) const CENTI: i64 = 100;
pub(super) const WIDTH: i64 = 720 * CENTI;
pub(super) const PLOT_LEFT: i64 = 84 * CENTI;
pub(super) const PLOT_RIGHT: i64 = 696 * CENTI;
pub(super) const PLOT_WIDTH: i64 = PLOT_RIGHT - PLOT_LEFT;
pub(super) const PLOT_TOP: i64 = 12 * CENTI;
pub(super) const PLOT_HEIGHT: i64 = 220 * CENTI;
pub(super) const PLOT_BOTTOM: i64 = PLOT_TOP + PLOT_HEIGHT;
pub(super) const DAY_LABEL_BASELINE: i64 = PLOT_BOTTOM + 18 * CENTI;
pub(super) const DAY_LABELS_MAX: usize = 8;
pub(super) const LEGEND_TOP: i64 = PLOT_BOTTOM + 36 * CENTI;
pub(super) const LEGEND_ROW: i64 = 22 * CENTI;
pub(super) const LEGEND_COLUMNS: usize = 3;
pub(super) const LEGEND_COLUMN_WIDTH: i64 = PLOT_WIDTH / 3;
pub(super) const LEGEND_SWATCH: i64 = 12 * CENTI;
/// Longest model name the legend shows whole; longer ones end in "…" (in full in a title).
pub(super) const LEGEND_NAME_CHARS_MAX: usize = 26;
/// The gap on each side of a bar, as a fraction (1/n) of its day's slot.
pub(super) const BAR_GAP_DIVISOR: i64 = 6;
/// Gridline intervals: 3 or 4, so 4 or 5 labels counting zero.
const GRIDLINE_INTERVALS_MIN: i64 = 3;
const GRIDLINE_INTERVALS_MAX: i64 = 4;
/// The tallest bar the axis grows to fit (micro-units); taller ones are clipped at the top.
/// With it, every axis top (at most 4 × 2·10¹⁸) fits an `i64`.
pub(super) const AXIS_FIT_MAX: i64 = 8_000_000_000_000_000_000;
/// What the axis fits when nothing is drawn: one currency unit.
const AXIS_FIT_EMPTY: i64 = 1_000_000;
/// Okabe–Ito, without yellow, darkest first.
const PALETTE: [&str; MODELS_SHOWN_MAX] = [
    "#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9",
];
const OTHER_COLOUR: &str = "#6B7280";
pub(super) const TEXT_COLOUR: &str = "#1A1A1A";
pub(super) const MUTED_COLOUR: &str = "#4A4F57";
pub(super) const GRID_COLOUR: &str = "#D9DCE1";
pub(super) const AXIS_COLOUR: &str = "#6B7280";

/// One coloured series of the chart: a model, or the models folded into "Other".
pub(super) struct Series {
    pub(super) name: String,
    pub(super) colour: &'static str,
    /// Per day.
    pub(super) amounts: Vec<Amount>,
}

/// The y axis: `intervals` gridline intervals of `step` micro-units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Axis {
    pub(super) step: i64,
    pub(super) intervals: i64,
}

impl Axis {
    /// The smallest 1/2/5 × 10ⁿ step that fits `tallest` micro-units in at most
    /// [`GRIDLINE_INTERVALS_MAX`] intervals.
    pub(super) fn fitting(tallest: i64) -> Axis {
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
    pub(super) fn top(self) -> i64 {
        self.step * self.intervals
    }
}

/// The series drawn: the first [`MODELS_SHOWN_MAX`] models, then "Other".
pub(super) fn chart_series(usage: &DailyUsage) -> Vec<Series> {
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
pub(super) fn tallest_bar(series: &[Series], days: usize) -> i64 {
    (0..days)
        .map(|day| sum(series.iter().map(|s| s.amounts[day].max_zero())).micros())
        .max()
        .unwrap_or(0)
}

/// The height of `amount` on an axis topped at `axis_top` micro-units (> 0), floored and
/// at most the plot's height; negative amounts have none.
pub(super) fn scaled_height(amount: Amount, axis_top: i64) -> i64 {
    let micros = i128::from(amount.micros().max(0));
    let height = micros * i128::from(PLOT_HEIGHT) / i128::from(axis_top);
    i64::try_from(height.min(i128::from(PLOT_HEIGHT))).expect("at most the plot height")
}

/// The heights of one bar's segments, bottom first, clipped so that they stack within the
/// plot.
pub(super) fn segment_heights(amounts: impl Iterator<Item = Amount>, axis_top: i64) -> Vec<i64> {
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
pub(super) fn slot(index: usize, days: usize) -> (i64, i64) {
    let at = |index: usize| {
        let index = i64::try_from(index).expect("at most DAYS_MAX days");
        let days = i64::try_from(days).expect("at most DAYS_MAX days");
        PLOT_LEFT + index * PLOT_WIDTH / days
    };
    (at(index), at(index + 1))
}
