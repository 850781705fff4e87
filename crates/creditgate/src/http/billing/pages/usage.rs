//! Usage: spend by day and model as a chart and a table, filtered by period and API key,
//! and the same rows as CSV.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use creditgate_domain::member::Action;
use creditgate_domain::Timestamp;

use super::{chart, enter, internal, Ctx, Fields, DAY_MS};
use crate::http::api::Path;
use crate::http::billing::html::esc;
use crate::http::views::HoldTerms;
use crate::node::AppState;

/// Days the usage page shows by default, and at most.
const USAGE_DAYS_DEFAULT: i64 = 30;
const USAGE_DAYS_MAX: i64 = 366;
/// Usage groups read for one page, at most.
const USAGE_GROUPS_MAX: usize = 20_000;

/// What the usage page and its CSV show: the period and key asked for (or the defaults), and
/// the period's rows (every key's; the key filters them after).
struct Usage {
    days: i64,
    key: Option<String>,
    rows: Vec<chart::UsageRow>,
    first_day: i64,
    last_day: i64,
}

async fn read_usage(ctx: &Ctx, query: &Fields) -> Result<Usage, Response> {
    let days = usage_days(query);
    let key = usage_key(query);
    let now = ctx.state.now().unix_ms();
    let last_day = now.div_euclid(DAY_MS);
    let first_day = last_day - (days - 1);
    let groups = ctx
        .state
        .store()
        .usage_by_day(
            &ctx.org.id,
            Timestamp::from_unix_ms(first_day * DAY_MS),
            Timestamp::from_unix_ms((last_day + 1) * DAY_MS),
            USAGE_GROUPS_MAX,
        )
        .await
        .map_err(|error| internal(&ctx.state, error))?;
    let rows = groups
        .into_iter()
        .map(|group| {
            let terms = HoldTerms::decode(&group.reference);
            chart::UsageRow {
                day: group.day,
                model: terms.model.unwrap_or_else(|| "(other)".to_owned()),
                key_id: terms.key_id,
                amount: group.amount,
                calls: group.calls,
            }
        })
        .collect();
    Ok(Usage {
        days,
        key,
        rows,
        first_day,
        last_day,
    })
}

fn usage_days(query: &Fields) -> i64 {
    query
        .get("days")
        .and_then(|d| d.parse::<i64>().ok())
        .filter(|d| (1..=USAGE_DAYS_MAX).contains(d))
        .unwrap_or(USAGE_DAYS_DEFAULT)
}

fn usage_key(query: &Fields) -> Option<String> {
    query
        .get("key")
        .filter(|k| crate::ids::is_valid("key", k))
        .cloned()
}

pub(super) async fn usage_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<Fields>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::ViewUsage, None).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let Usage {
        days,
        key,
        rows,
        first_day,
        last_day,
    } = match read_usage(&ctx, &query).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let usage = chart::daily_by_model(&rows, first_day, last_day, key.as_deref());
    let currency = &state.config().currency;
    let svg = chart::svg(&usage, currency);
    let keys = state.store().keys(&org_id).await.unwrap_or_default();
    let key_options: String = keys
        .iter()
        .map(|k| {
            let selected = if key.as_deref() == Some(k.id.as_str()) {
                " selected"
            } else {
                ""
            };
            let name = if k.name.is_empty() {
                &k.prefix
            } else {
                &k.name
            };
            format!(
                "<option value=\"{}\"{selected}>{} ({}…)</option>",
                esc(&k.id),
                esc(name),
                esc(&k.prefix)
            )
        })
        .collect();
    let day_options: String = [7, 30, 90]
        .iter()
        .map(|d| {
            let selected = if *d == days { " selected" } else { "" };
            format!("<option value=\"{d}\"{selected}>Last {d} days</option>")
        })
        .collect();
    let table: String = usage
        .models
        .iter()
        .zip(&usage.model_totals)
        .map(|(model, total)| {
            format!(
                "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
                esc(model),
                esc(&ctx.money(*total))
            )
        })
        .collect();
    let csv_query = match &key {
        Some(key) => format!("?days={days}&key={}", esc(key)),
        None => format!("?days={days}"),
    };
    let body = format!(
        "<form method=\"get\" class=\"card\" aria-label=\"Filter\"><label for=\"days\">Period</label>\
         <select id=\"days\" name=\"days\">{day_options}</select>\
         <label for=\"key\">API key</label><select id=\"key\" name=\"key\"><option value=\"\">All keys</option>{key_options}</select>\
         <button type=\"submit\">Show</button></form>\
         <section class=\"card chart\" id=\"usage-chart\">{svg}</section>\
         <section class=\"card\"><h2>By model</h2><div class=\"table-wrap\"><table id=\"usage-table\"><thead><tr><th scope=\"col\">Model</th><th scope=\"col\" class=\"num\">Spend</th></tr></thead>\
         <tbody>{table}</tbody><tfoot><tr><th scope=\"row\">Total ({calls} calls)</th><td class=\"num\" id=\"usage-total\">{total}</td></tr></tfoot></table></div>\
         <p><a href=\"{base}/usage.csv{csv_query}\" download>Download CSV</a></p></section>",
        total = esc(&ctx.money(usage.total)),
        calls = usage.calls,
        base = ctx.base(),
    );
    ctx.page("/usage", "Usage", &body)
}

pub(super) async fn usage_csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<Fields>,
) -> Response {
    let ctx = match enter(&state, &headers, &org_id, Action::ViewUsage, None).await {
        Ok(ctx) => ctx,
        Err(response) => return response,
    };
    let Usage { key, rows, .. } = match read_usage(&ctx, &query).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let rows: Vec<chart::UsageRow> = rows
        .into_iter()
        .filter(|row| key.is_none() || row.key_id == key)
        .collect();
    let csv = chart::csv(&rows, &state.config().currency);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"usage-{org_id}.csv\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        csv,
    )
        .into_response()
}
