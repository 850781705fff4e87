//! Unit tests of the CLI's pure parts: time and cell rendering, table alignment, API error
//! wording and per-segment URL encoding.

use reqwest::{StatusCode, Url};
use serde_json::json;

use super::client::{api_failure, Client};
use super::view::{text, utc, Align, Table};
use super::Connection;

#[test]
fn utc_renders_calendar_time() {
    assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(1_764_000_000), "2025-11-24 16:00:00 UTC");
    assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
}

#[test]
fn tables_align_columns() {
    let mut table = Table::new(&[("ID", Align::Left), ("AMOUNT", Align::Right)]);
    table.row(vec!["org_a".into(), "5.00".into()]);
    table.row(vec!["org_bbbbbb".into(), "1250.50".into()]);
    assert_eq!(
        table.render(),
        "ID           AMOUNT\norg_a          5.00\norg_bbbbbb  1250.50\n"
    );
}

#[test]
fn cells_show_json_values() {
    assert_eq!(text(&json!(null)), "-");
    assert_eq!(text(&json!(["a", "b"])), "a, b");
    assert_eq!(text(&json!([])), "-");
    assert_eq!(text(&json!(true)), "yes");
    assert_eq!(text(&json!("a\u{1b}[2Jb")), "a?[2Jb");
}

#[test]
fn api_errors_name_code_and_param() {
    let base = Url::parse("http://127.0.0.1:1").unwrap();
    let body = json!({"error": {"type": "invalid_request_error", "code": "parameter_invalid",
        "message": "bad", "param": "amount"}, "request_id": "req_1"});
    let failure = api_failure(StatusCode::BAD_REQUEST, "", Some(&body), &base);
    assert_eq!(failure.exit_code(), 1);
    assert_eq!(
        failure.message(),
        "error: parameter_invalid: bad (param: amount)"
    );
    let body = json!({"error": {"type": "api_error", "code": "internal_error",
        "message": "An internal error occurred."}, "request_id": "req_2"});
    let failure = api_failure(StatusCode::INTERNAL_SERVER_ERROR, "", Some(&body), &base);
    assert_eq!(failure.exit_code(), 2);
    assert!(failure.message().contains("request id: req_2"));
    let failure = api_failure(StatusCode::BAD_GATEWAY, "<html>", None, &base);
    assert_eq!(failure.exit_code(), 2);
    assert!(failure
        .message()
        .starts_with("error: http_502: Bad Gateway"));
}

#[test]
fn paths_are_encoded_per_segment() {
    let connection = Connection {
        url: "http://127.0.0.1:8080/base/".into(),
        token: Some("t".into()),
        json: false,
    };
    let client = Client::new(&connection).unwrap();
    let url = |segments: &[&str], query: &[(&str, String)]| {
        client.url(segments, query).map(|u| u.to_string())
    };
    assert_eq!(
        url(
            &["v1", "prices", "vendor/model"],
            &[("model", "a b".into())]
        )
        .unwrap(),
        "http://127.0.0.1:8080/base/v1/prices/vendor%2Fmodel?model=a+b"
    );
    assert_eq!(
        url(&["v1", "orgs", "../keys"], &[]).unwrap(),
        "http://127.0.0.1:8080/base/v1/orgs/..%2Fkeys"
    );
    assert_eq!(
        url(&["v1", "orgs", "a?b#c"], &[]).unwrap(),
        "http://127.0.0.1:8080/base/v1/orgs/a%3Fb%23c"
    );
    assert!(url(&["v1", "orgs", ".."], &[]).is_err());
    assert!(url(&["v1", "orgs", ""], &[]).is_err());
}
