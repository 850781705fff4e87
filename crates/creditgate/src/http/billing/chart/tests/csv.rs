//! Tests of the CSV: order, number formats, quoting and formula neutralisation.

use super::*;
use crate::http::billing::chart::csv::text_field;

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
