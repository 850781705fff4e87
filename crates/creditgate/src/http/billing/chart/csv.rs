//! The usage groups as CSV for a spreadsheet: RFC 4180 quoting, formula injection
//! neutralised.

use super::dates::iso_date;
use super::UsageRow;

/// `rows` as CSV for a spreadsheet: a `date,model,key_id,calls,amount,currency` header,
/// then one line per row by date, model and key; dates `YYYY-MM-DD`, amounts exact
/// decimals as [`Amount`](creditgate_domain::Amount) displays them, lines ending in
/// CRLF. Quoting follows RFC 4180; text fields starting with `=`, `+`, `-`, `@`, tab or CR
/// get a leading `'` so that a spreadsheet does not run them as formulas.
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

/// A CSV text field: neutralised against formulas, then quoted when needed.
pub(super) fn text_field(text: &str) -> String {
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
