//! Printing: the raw JSON with `--json`, else readable views built from aligned tables,
//! label/value fields and cells rendered from JSON values (control characters replaced).

use std::io::Write as _;

use serde_json::Value;

use super::client::{Answer, Client};

/// The raw JSON with `--json`, else the readable view.
pub(super) fn show(client: &Client, answer: &Answer, view: &str) {
    if client.json {
        out(&answer.text);
    } else {
        out(view);
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = stdout.write_all(b"\n");
    }
    let _ = stdout.flush();
}

/// Control characters replaced, so a value cannot steer the terminal.
pub(super) fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A JSON value as a cell: strings as they are, null as `-`, lists comma-separated.
pub(super) fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => clean(s),
        Value::Bool(true) => "yes".to_owned(),
        Value::Bool(false) => "no".to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        Value::Object(_) => clean(&value.to_string()),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub(super) fn time(value: &Value) -> String {
    match value.as_i64() {
        Some(seconds) => utc(seconds),
        None => text(value),
    }
}

pub(super) fn utc(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = creditgate_domain::time::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// Column alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Align {
    Left,
    Right,
}

/// A table of columns padded to their widest cell, two spaces apart.
pub(super) struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(super) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows.push(cells);
    }

    pub(super) fn render(&self) -> String {
        let header: Vec<String> = self.columns.iter().map(|(h, _)| (*h).to_owned()).collect();
        let aligns: Vec<Align> = self.columns.iter().map(|(_, a)| *a).collect();
        render_rows(std::iter::once(&header).chain(&self.rows), &aligns)
    }
}

/// Label/value pairs, one per line, values aligned.
pub(super) fn fields(pairs: &[(&str, String)]) -> String {
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|(label, value)| vec![(*label).to_owned(), value.clone()])
        .collect();
    render_rows(rows.iter(), &[Align::Left, Align::Left])
}

fn render_rows<'a>(
    rows: impl Iterator<Item = &'a Vec<String>> + Clone,
    aligns: &[Align],
) -> String {
    let mut widths = vec![0usize; aligns.len()];
    for row in rows.clone() {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut rendered = String::new();
    for row in rows {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index > 0 {
                line.push_str("  ");
            }
            let pad = widths[index].saturating_sub(cell.chars().count());
            let last = index + 1 == row.len();
            match aligns[index] {
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
                Align::Left => {
                    line.push_str(cell);
                    if !last {
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                }
            }
        }
        rendered.push_str(line.trim_end());
        rendered.push('\n');
    }
    rendered
}

pub(super) fn items(list: &Value) -> &[Value] {
    list["data"].as_array().map(Vec::as_slice).unwrap_or(&[])
}
