//! Tests of the usage chart: the shared fixtures, the dates and the aggregation here; the
//! SVG (layout included) in `svg.rs`, the CSV in `csv.rs`.

use proptest::prelude::*;

use super::dates::short_date;
use super::*;

mod csv;
mod svg;

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
}
