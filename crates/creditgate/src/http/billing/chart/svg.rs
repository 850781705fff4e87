//! The chart as SVG: [`svg`] and the pieces it draws (description, gridlines, bars,
//! legend, day labels, axes), at the places `layout.rs` computes.

use std::fmt::Write as _;

use creditgate_domain::notice::format_money;
use creditgate_domain::Amount;

use super::dates::{iso_date, short_date};
use super::layout::{
    chart_series, segment_heights, slot, tallest_bar, Axis, Series, AXIS_COLOUR, BAR_GAP_DIVISOR,
    CENTI, DAY_LABELS_MAX, DAY_LABEL_BASELINE, GRID_COLOUR, LEGEND_COLUMNS, LEGEND_COLUMN_WIDTH,
    LEGEND_NAME_CHARS_MAX, LEGEND_ROW, LEGEND_SWATCH, LEGEND_TOP, MUTED_COLOUR, PLOT_BOTTOM,
    PLOT_HEIGHT, PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_WIDTH, TEXT_COLOUR, WIDTH,
};
use super::DailyUsage;

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

/// `text` with `&`, `<`, `>`, `"` and `'` escaped, safe in SVG text and quoted attributes.
/// The chart is drawn with `write!` rather than a `maud` template (its markup is numbers
/// laid out in order), so it escapes its few texts itself.
pub(super) fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// Centipixels as a decimal number of pixels: 1234 → "12.34", 1250 → "12.5", 1200 → "12".
pub(super) fn px(centi: i64) -> String {
    let sign = if centi < 0 { "-" } else { "" };
    let (whole, fraction) = (centi.unsigned_abs() / 100, centi.unsigned_abs() % 100);
    match fraction {
        0 => format!("{sign}{whole}"),
        f if f % 10 == 0 => format!("{sign}{whole}.{}", f / 10),
        f => format!("{sign}{whole}.{f:02}"),
    }
}

/// `text` cut to `chars_max` characters, the last one "…" when cut.
pub(super) fn truncate(text: &str, chars_max: usize) -> String {
    if text.chars().count() <= chars_max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(chars_max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}
