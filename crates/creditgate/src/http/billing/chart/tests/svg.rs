//! Tests of the chart's layout and SVG: round axis steps, coordinates, escaping, folding
//! into "Other", day labels, and (properties) bars that stay in the plot.

use proptest::prelude::*;

use super::*;
use crate::http::billing::chart::layout::{
    chart_series, scaled_height, segment_heights, tallest_bar, Axis, AXIS_FIT_MAX, DAY_LABELS_MAX,
    PLOT_HEIGHT,
};
use crate::http::billing::chart::svg::{px, truncate};

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

proptest! {
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
