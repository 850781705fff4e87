//! The figures as a table (stdout) or one JSON line, with the targets the SQLite figures are
//! held to.

use std::fmt::Write as _;
use std::time::Duration;

use super::workload::{Figure, Measured, Plan, Span, ORG_COUNT};

/// Every backend measured in one run; the first is SQLite, the one the targets apply to.
pub struct Summary {
    pub plan: Plan,
    pub backends: Vec<BackendReport>,
}

/// One backend's figures.
pub struct BackendReport {
    pub name: &'static str,
    /// Creating and funding the orgs.
    pub setup: Duration,
    /// In [`Figure::ALL`] order.
    pub figures: Vec<(Figure, Measured)>,
    pub invariants: Invariants,
}

/// The invariant check over everything the run wrote.
pub struct Invariants {
    pub violations: Vec<String>,
    pub transfers: usize,
    /// Loading the snapshot, and checking it.
    pub load: Duration,
    pub check: Duration,
}

/// A figure SQLite must reach.
struct Target {
    key: &'static str,
    label: &'static str,
    bound: Bound,
    /// The measured value: operations per second, or a ratio in hundredths.
    value: fn(&BackendReport) -> u64,
    ratio: bool,
}

enum Bound {
    AtLeast(u64),
    AtMost(u64),
}

const TARGETS: [Target; 5] = [
    Target {
        key: "single_per_s",
        label: "single durable debits/s",
        bound: Bound::AtLeast(50_000),
        value: |backend| backend.figure(Figure::Single).per_second(),
        ratio: false,
    },
    Target {
        key: "single_over_naive",
        label: "single durable / naive",
        bound: Bound::AtLeast(700),
        value: |backend| {
            ratio(
                backend.figure(Figure::Single),
                backend.figure(Figure::Naive),
            )
        },
        ratio: true,
    },
    Target {
        key: "batched_per_s",
        label: "batched debits/s",
        bound: Bound::AtLeast(300_000),
        value: |backend| backend.figure(Figure::Batched).per_second(),
        ratio: false,
    },
    Target {
        key: "hold_settle_over_debit",
        label: "hold+settle time / debit time",
        // Time per charge over time per debit is the debit rate over the charge rate.
        bound: Bound::AtMost(150),
        value: |backend| {
            ratio(
                backend.figure(Figure::Single),
                backend.figure(Figure::HoldSettle),
            )
        },
        ratio: true,
    },
    Target {
        key: "hot_over_many",
        label: "hot org / 10,000 orgs",
        bound: Bound::AtLeast(90),
        value: |backend| ratio(backend.figure(Figure::Hot), backend.figure(Figure::Single)),
        ratio: true,
    },
];

impl Target {
    fn met(&self, value: u64) -> bool {
        match self.bound {
            Bound::AtLeast(bound) => value >= bound,
            Bound::AtMost(bound) => value <= bound,
        }
    }

    fn show(&self, value: u64) -> String {
        if self.ratio {
            format!("{}×", hundredths(value))
        } else {
            group(value)
        }
    }

    fn show_bound(&self) -> String {
        match self.bound {
            Bound::AtLeast(bound) => format!("≥ {}", self.show(bound)),
            Bound::AtMost(bound) => format!("≤ {}", self.show(bound)),
        }
    }
}

impl BackendReport {
    pub fn figure(&self, figure: Figure) -> &Measured {
        self.figures
            .iter()
            .find_map(|(f, measured)| (*f == figure).then_some(measured))
            .expect("every figure is measured")
    }

    /// Bytes written per operation of `measured`, for a backend that writes in this process
    /// (PostgreSQL writes in its server's).
    fn written_per_operation(&self, measured: &Measured) -> Option<u64> {
        match self.name {
            "sqlite" => measured.written_per_operation(),
            _ => None,
        }
    }

    /// Operations refused or failed, over every figure (none are expected).
    pub fn problems(&self) -> u64 {
        self.figures
            .iter()
            .map(|(_, m)| m.rejected + m.failed)
            .sum()
    }
}

/// `a`'s rate over `b`'s, in hundredths.
fn ratio(a: &Measured, b: &Measured) -> u64 {
    let numerator = u128::from(a.acknowledged) * b.elapsed.as_micros() * 100;
    let denominator = (a.elapsed.as_micros() * u128::from(b.acknowledged)).max(1);
    u64::try_from(numerator / denominator).unwrap_or(u64::MAX)
}

impl Summary {
    /// A table: one row per figure, SQLite with its targets, the other backends beside.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\ncreditgate bench ledger: {}\n", self.describe_plan());
        let mut header = format!(
            "{:<34}{:>12}  {:<4}  {:>10}",
            "", "sqlite FULL", "", "target"
        );
        for backend in self.backends.iter().skip(1) {
            let _ = write!(header, "{:>12}", backend.name);
        }
        let _ = writeln!(out, "{header}");
        for row in self.rows() {
            let _ = writeln!(out, "{}", row.trim_end());
        }
        let misses: Vec<&str> = TARGETS
            .iter()
            .filter(|target| !target.met((target.value)(&self.backends[0])))
            .map(|target| target.label)
            .collect();
        let verdict = match misses.is_empty() {
            true => "all SQLite targets met".to_owned(),
            false => format!("SQLite misses: {}", misses.join("; ")),
        };
        let _ = writeln!(out, "\n{verdict}");
        for backend in &self.backends {
            for (figure, measured) in &backend.figures {
                if let Some(problem) = &measured.first_problem {
                    let _ = writeln!(
                        out,
                        "{} {}: first problem: {problem}",
                        backend.name,
                        figure.name()
                    );
                }
            }
            for violation in backend.invariants.violations.iter().take(10) {
                let _ = writeln!(out, "{} violation: {violation}", backend.name);
            }
        }
        out
    }

    fn describe_plan(&self) -> String {
        let span = match self.plan.span {
            Span::Duration(duration) => format!("{} s per figure", duration.as_secs()),
            Span::Operations(count) => format!("{} operations per figure", group(count)),
        };
        format!(
            "{} callers, {span}, {} orgs, {} debits per submit_many",
            self.plan.callers,
            group(u64::try_from(ORG_COUNT).expect("fits")),
            group(u64::try_from(self.plan.batch_len).expect("fits")),
        )
    }

    fn rows(&self) -> Vec<String> {
        let mut rows = Vec::new();
        for (index, target) in TARGETS.iter().enumerate() {
            if let Some((label, figure)) = rate_row_before(index) {
                rows.push(self.row(label, |b| group(b.figure(figure).per_second()), None));
            }
            let value = |b: &BackendReport| target.show((target.value)(b));
            rows.push(self.row(target.label, value, Some(target)));
        }
        let batch_rows = [
            ("avg writer batch, single", Figure::Single),
            ("avg writer batch, hot org", Figure::Hot),
            ("avg writer batch, hold+settle", Figure::HoldSettle),
            ("avg writer batch, batched", Figure::Batched),
            ("avg writer batch, batched hot org", Figure::BatchedHot),
        ];
        for (label, figure) in batch_rows {
            rows.push(self.row(label, |b| tenths(b.figure(figure).batch_len_tenths()), None));
        }
        // PostgreSQL writes in its own server process, so only SQLite's bytes are seen here.
        let written_rows = [
            ("KiB written per debit, single", Figure::Single),
            ("KiB written per debit, hot org", Figure::Hot),
            ("KiB written per charge, hold+settle", Figure::HoldSettle),
            ("KiB written per debit, batched", Figure::Batched),
            ("KiB written per debit, batched hot", Figure::BatchedHot),
        ];
        for (label, figure) in written_rows {
            rows.push(self.row(
                label,
                |b| match b.written_per_operation(b.figure(figure)) {
                    Some(bytes) => tenths(bytes * 10 / 1024),
                    None => "-".to_owned(),
                },
                None,
            ));
        }
        rows.push(self.row(
            "rejected + failed operations",
            |b| b.problems().to_string(),
            None,
        ));
        rows.push(self.row("setup: create + fund orgs (s)", |b| seconds(b.setup), None));
        rows.push(self.row(
            "transfers written",
            |b| group(usize_u64(b.invariants.transfers)),
            None,
        ));
        rows.push(self.row(
            "invariant load + check (s)",
            |b| {
                format!(
                    "{}+{}",
                    seconds(b.invariants.load),
                    seconds(b.invariants.check)
                )
            },
            None,
        ));
        rows.push(self.row(
            "invariants",
            |b| match b.invariants.violations.len() {
                0 => "OK".to_owned(),
                count => format!("{count} violated"),
            },
            None,
        ));
        rows
    }

    fn row(
        &self,
        label: &str,
        value: impl Fn(&BackendReport) -> String,
        target: Option<&Target>,
    ) -> String {
        let sqlite = &self.backends[0];
        let (mark, bound) = match target {
            Some(target) if target.met((target.value)(sqlite)) => ("PASS", target.show_bound()),
            Some(target) => ("MISS", target.show_bound()),
            None => ("", String::new()),
        };
        let mut row = format!("{label:<34}{:>12}  {mark:<4}  {bound:>10}", value(sqlite));
        for backend in self.backends.iter().skip(1) {
            let _ = write!(row, "{:>12}", value(backend));
        }
        row
    }

    /// One line of JSON: the plan, then per backend every figure, ratio and target.
    pub fn json(&self) -> String {
        let span = match self.plan.span {
            Span::Duration(duration) => format!("\"duration_s\":{}", duration.as_secs()),
            Span::Operations(count) => format!("\"operations\":{count}"),
        };
        let backends: Vec<String> = self
            .backends
            .iter()
            .enumerate()
            .map(|(index, backend)| backend.json(index == 0))
            .collect();
        format!(
            "{{\"bench\":\"ledger\",\"callers\":{},{span},\"orgs\":{ORG_COUNT},\"batch_len\":{},\"backends\":[{}]}}",
            self.plan.callers,
            self.plan.batch_len,
            backends.join(",")
        )
    }
}

/// The plain rate shown above a target row, for context.
fn rate_row_before(target_index: usize) -> Option<(&'static str, Figure)> {
    match target_index {
        1 => Some(("naive baseline debits/s", Figure::Naive)),
        3 => Some(("hold+settle charges/s", Figure::HoldSettle)),
        2 => Some(("batched debits/s, one hot org", Figure::BatchedHot)),
        4 => Some(("hot org debits/s", Figure::Hot)),
        _ => None,
    }
}

impl BackendReport {
    fn json(&self, with_targets: bool) -> String {
        let figures: Vec<String> = self
            .figures
            .iter()
            .map(|(figure, m)| {
                format!(
                    "\"{}\":{{\"per_s\":{},\"acknowledged\":{},\"elapsed_ms\":{},\"avg_batch\":{},\"rejected\":{},\"failed\":{},\"written_bytes_per_op\":{}}}",
                    figure.name(),
                    m.per_second(),
                    m.acknowledged,
                    m.elapsed.as_millis(),
                    tenths(m.batch_len_tenths()),
                    m.rejected,
                    m.failed,
                    self.written_per_operation(m)
                        .map_or_else(|| "null".to_owned(), |bytes| bytes.to_string())
                )
            })
            .collect();
        let ratios: Vec<String> = TARGETS
            .iter()
            .filter(|target| target.ratio)
            .map(|target| format!("\"{}\":{}", target.key, hundredths((target.value)(self))))
            .collect();
        let mut out = format!(
            "{{\"backend\":\"{}\",\"setup_ms\":{},\"figures\":{{{}}},\"ratios\":{{{}}}",
            self.name,
            self.setup.as_millis(),
            figures.join(","),
            ratios.join(",")
        );
        if with_targets {
            let marks: Vec<String> = TARGETS
                .iter()
                .map(|target| {
                    let met = target.met((target.value)(self));
                    format!(
                        "\"{}\":\"{}\"",
                        target.key,
                        if met { "pass" } else { "miss" }
                    )
                })
                .collect();
            let _ = write!(out, ",\"targets\":{{{}}}", marks.join(","));
        }
        let violations: Vec<String> = self
            .invariants
            .violations
            .iter()
            .map(|v| quote(v))
            .collect();
        let _ = write!(
            out,
            ",\"transfers\":{},\"invariants_ok\":{},\"violations\":[{}]}}",
            self.invariants.transfers,
            self.invariants.violations.is_empty(),
            violations.join(",")
        );
        out
    }
}

/// `1234567` → `"1,234,567"`.
pub fn group(value: u64) -> String {
    let digits = value.to_string();
    let first = match digits.len() % 3 {
        0 => 3,
        len => len,
    };
    let mut out = digits[..first].to_owned();
    for group in digits.as_bytes()[first..].chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(group).expect("ASCII digits"));
    }
    out
}

/// `871` → `"8.71"`.
fn hundredths(value: u64) -> String {
    format!("{}.{:02}", value / 100, value % 100)
}

/// `2563` → `"256.3"`.
pub fn tenths(value: u64) -> String {
    format!("{}.{}", value / 10, value % 10)
}

/// A duration in seconds with two decimals.
fn seconds(duration: Duration) -> String {
    let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    format!("{}.{:02}", ms / 1_000, ms % 1_000 / 10)
}

fn usize_u64(value: usize) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// A JSON string literal.
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        let table: &[(u64, &str)] = &[
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (52_301, "52,301"),
            (1_234_567, "1,234,567"),
        ];
        for (value, text) in table {
            assert_eq!(group(*value), *text);
        }
        assert_eq!(hundredths(871), "8.71");
        assert_eq!(hundredths(90), "0.90");
        assert_eq!(tenths(2_563), "256.3");
        assert_eq!(seconds(Duration::from_millis(1_234)), "1.23");
    }

    #[test]
    fn ratio_compares_rates_not_counts() {
        let measured = |acknowledged, elapsed_ms| Measured {
            acknowledged,
            elapsed: Duration::from_millis(elapsed_ms),
            ..Measured::default()
        };
        assert_eq!(ratio(&measured(300, 1_000), &measured(100, 1_000)), 300);
        assert_eq!(ratio(&measured(300, 2_000), &measured(100, 1_000)), 150);
        assert_eq!(ratio(&measured(0, 1_000), &measured(0, 0)), 0);
    }

    #[test]
    fn bounds_include_their_limit() {
        let hold_settle = &TARGETS[3];
        assert!(hold_settle.met(150) && !hold_settle.met(151));
        let single = &TARGETS[0];
        assert!(single.met(50_000) && !single.met(49_999));
        assert_eq!(hold_settle.show_bound(), "≤ 1.50×");
    }
}
